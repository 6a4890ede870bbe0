"""Training: the accelerate loop, its validation and preview grids, EMA, LR schedule, data order.

- :mod:`trainer`     ``train(cfg, out_dir, resume=False) -> TrainResult`` (the loop only)
- :mod:`validation`  validation NELBO in bits per token (sharded, all-reduced)
- :mod:`preview`     the periodic sample grid (uses :mod:`xdlm_vision.sampling` and :mod:`xdlm_vision.viz`)
- :mod:`ema`, :mod:`lr`, :mod:`order`, :mod:`metrics`, :mod:`rng_state`  the loop's parts

Loading checkpoints is :mod:`xdlm_vision.checkpoints`. Heavy modules are imported on first use,
so ``import xdlm_vision.training`` stays light.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "train": "xdlm_vision.training.trainer",
    "TrainResult": "xdlm_vision.training.trainer",
    "EMA": "xdlm_vision.training.ema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xdlm_vision.training' has no attribute {name!r}")


__all__ = ["EMA", "TrainResult", "train"]
