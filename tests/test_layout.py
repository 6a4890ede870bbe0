"""Package layout guards: nothing in the repo shadows other distributions, base import is light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(code: str) -> subprocess.CompletedProcess:
    # cwd = repo root: exactly what `python -m pytest` from the root puts first on sys.path
    return subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_tokenizers_does_not_resolve_into_repo():
    res = _run("import tokenizers, os; print(os.path.realpath(tokenizers.__file__ or ''))")
    if res.returncode == 0:
        location = Path(res.stdout.strip())
        assert REPO not in location.parents, f"`import tokenizers` resolved into this repo: {location}"
    else:  # HuggingFace tokenizers not installed: the import must fail, not find a folder of ours
        assert "ModuleNotFoundError" in res.stderr, res.stderr
    assert not (REPO / "tokenizers").exists()


def test_base_import_needs_no_optional_dependencies():
    code = (
        "import sys, xdlm_vision, xdlm_vision.core, xdlm_vision.cli\n"
        "heavy = [m for m in ('gradio', 'transformers', 'torch_fidelity', 'diffusers') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "", f"base import pulled in optional packages: {res.stdout.strip()}"


def test_cli_help_lists_commands_and_exits_zero():
    res = subprocess.run([sys.executable, "-m", "xdlm_vision", "--help"], check=False, cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "xdlm-vision" in res.stdout
