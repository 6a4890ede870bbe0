"""The package's layering (docs/architecture.md): imports point one way and never form a cycle.

* the ``layers`` contract in pyproject.toml ``[tool.importlinter]`` is checked with ``lint-imports``;
* a cycle detector over the module import graph (grimp, every import including those inside
  functions) finds any strongly connected component of two or more modules.

Both checks are also run on a copy of the package with one bad import added, so these tests can
be seen to fail when the rule is broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="pip install 'xdlm-vision[dev]' installs import-linter")


def lint_imports(src_root: Path) -> subprocess.CompletedProcess:
    """Run ``lint-imports`` with the repository's contract on the package found under ``src_root``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src_root), os.environ.get("PYTHONPATH", "")])}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], check=False,
                          cwd=src_root, env=env, capture_output=True, text=True, timeout=300)


def import_cycles(src_root: Path) -> list[list[str]]:
    """Strongly connected components (>= 2 modules, or a module importing itself) of the import graph."""
    code = f"""
import sys
sys.path.insert(0, {str(src_root)!r})
import grimp
g = grimp.build_graph("xdlm_vision")
adj = {{m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}}
index, low, stack, on, comps = {{}}, {{}}, [], set(), []
def visit(v):
    index[v] = low[v] = len(index); stack.append(v); on.add(v)
    for w in adj[v]:
        if w not in index:
            visit(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v:
                break
        if len(comp) > 1 or v in adj[v]:
            comps.append(sorted(comp))
sys.setrecursionlimit(10000)
for m in sorted(adj):
    if m not in index:
        visit(m)
for comp in comps:
    print(" ".join(comp))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def package_copy(tmp_path: Path, module: str, extra_import: str) -> Path:
    """A copy of xdlm_vision under tmp_path with ``extra_import`` appended to ``module`` (a .py path)."""
    shutil.copytree(ROOT / "xdlm_vision", tmp_path / "xdlm_vision",
                    ignore=shutil.ignore_patterns("__pycache__", "assets", "configs"))
    target = tmp_path / "xdlm_vision" / module
    target.write_text(target.read_text() + f"\n\ndef _added_for_the_test():\n    {extra_import}\n")
    return tmp_path


def test_layers_contract_is_kept():
    res = lint_imports(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 kept, 0 broken" in res.stdout


def test_no_import_cycles():
    assert import_cycles(ROOT) == []


def test_contract_fails_on_an_upward_import(tmp_path):
    """core importing training (even inside a function) breaks the contract."""
    src = package_copy(tmp_path, "core/loss.py", "import xdlm_vision.training.trainer  # noqa")
    res = lint_imports(src)
    assert res.returncode != 0 and "BROKEN" in res.stdout
    assert "xdlm_vision.core.loss" in res.stdout and "xdlm_vision.training" in res.stdout


def test_cycle_detector_finds_a_cycle(tmp_path):
    """checkpoints importing sampling (which imports checkpoints) is reported as a cycle."""
    src = package_copy(tmp_path, "checkpoints/loaded.py", "import xdlm_vision.sampling.model  # noqa")
    cycles = import_cycles(src)
    assert any("xdlm_vision.checkpoints.loaded" in comp and "xdlm_vision.sampling.model" in comp
               for comp in cycles), cycles
