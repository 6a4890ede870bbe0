"""Checkpoints that ship inside the package, and their short names.

Every packaged checkpoint is a sampling-only directory (``config.json`` + ``ema.safetensors``)
under ``xdlm_vision/assets/``. Wherever a checkpoint path is accepted (``--checkpoint``,
``sample --compare``, the demo) the short form ``packaged:NAME`` names one of them:

============  ==============================  ===================================================
name          directory                       what it is
============  ==============================  ===================================================
digits        ``assets/digits_default``       DiT-digits, k = 0.1 (XDLM), 800 steps — the default
digits-mdlm   ``assets/digits_mdlm``          the same recipe with k = 0 (MDLM), for comparisons
fashion       ``assets/fashion``              Fashion-MNIST over 8x8 VQ codes (k = 0.1, DiT depth 6,
                                              float16 weights) with its VQ tokenizer beside it
fashion-mdlm  ``assets/fashion_mdlm``         the same recipe and seed with k = 0 (MDLM), decoding
                                              through the tokenizer of ``assets/fashion``
============  ==============================  ===================================================

How they were trained is in docs/sampling.md (digits), docs/fashion.md (fashion) and
docs/k_tradeoff.md (fashion-mdlm, the k = 0 model of the study's longer budget).
"""

from __future__ import annotations

from pathlib import Path

from xdlm_vision.errors import UserError

ASSETS = Path(__file__).resolve().parents[1] / "assets"
PREFIX = "packaged:"
PACKAGED = {  # short name -> directory under xdlm_vision/assets/
    "digits": ASSETS / "digits_default",
    "digits-mdlm": ASSETS / "digits_mdlm",
    "fashion": ASSETS / "fashion",
    "fashion-mdlm": ASSETS / "fashion_mdlm",
}
DEFAULT = "digits"  # what a missing --checkpoint means


def packaged_names() -> list[str]:
    """Short names of the packaged checkpoints whose files are present, default first."""
    return [name for name, path in PACKAGED.items() if (path / "config.json").is_file()]


def packaged_path(name: str, flag: str = "--checkpoint") -> Path:
    """The directory of packaged checkpoint ``name``; UserError naming ``flag`` if unknown/missing."""
    if name not in PACKAGED:
        raise UserError(f"{flag} {PREFIX}{name}: no such packaged checkpoint; choose one of "
                        f"{', '.join(PREFIX + n for n in PACKAGED)}")
    path = PACKAGED[name]
    if not (path / "config.json").is_file():
        raise UserError(f"{flag} {PREFIX}{name}: its files are missing from {path}; pass --checkpoint DIR")
    return path


def resolve_packaged(path: str | Path | None, flag: str = "--checkpoint") -> str | Path:
    """``None`` -> the default packaged checkpoint; ``packaged:NAME`` -> its directory; else unchanged."""
    if path is None:
        return packaged_path(DEFAULT, flag)
    if isinstance(path, str) and path.startswith(PREFIX):
        return packaged_path(path[len(PREFIX):], flag)
    return path


__all__ = ["DEFAULT", "PACKAGED", "PREFIX", "packaged_names", "packaged_path", "resolve_packaged"]
