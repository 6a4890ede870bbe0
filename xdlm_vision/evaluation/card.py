"""The protocol card written into ``metrics.json``: everything that decides an FID number.

FID moves by whole points with the reference set, the number of samples, how labels are drawn,
the resize, the sampler and the guidance convention. The card records all of them next to the
numbers, plus the software versions and the git commit, so a figure can be reproduced or
rejected for a mismatched protocol.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

CFG_CONVENTION = (
    "XDLM: log x_hat = (1 + gamma) * log_softmax(l_cond) - gamma * log_softmax(l_null); "
    "gamma = 0 is plain conditional sampling; LlamaGen/DiT scale s = 1 + gamma"
)


def git_commit(start: str | Path | None = None) -> dict[str, Any] | None:
    """{"commit": sha, "dirty": bool} of the checkout holding the package, or None outside git."""
    where = Path(start) if start is not None else Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=30, check=False)
        return {"commit": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def toolkit_versions() -> dict[str, str | None]:
    """Versions of the packages that change the numbers."""
    import numpy
    import torch

    from xdlm_vision import __version__

    versions: dict[str, str | None] = {
        "xdlm_vision": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }
    for name in ("torch_fidelity", "scipy", "accelerate"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional
            versions[name] = None
    return versions
