"""Training: config-driven accelerate loop, EMA, checkpoints and resume.

Public API::

    train(cfg, out_dir, resume=False) -> TrainResult        # xdlm_vision.training.trainer
    load_checkpoint(path, ema=True, device="cpu") -> LoadedModel
    latest_checkpoint(out_dir) -> Path | None

Heavy modules are imported on first use, so ``import xdlm_vision.training`` stays light.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "train": "xdlm_vision.training.trainer",
    "TrainResult": "xdlm_vision.training.trainer",
    "TrainingDiverged": "xdlm_vision.training.trainer",
    "load_checkpoint": "xdlm_vision.training.checkpoint",
    "LoadedModel": "xdlm_vision.training.checkpoint",
    "latest_checkpoint": "xdlm_vision.training.checkpoint",
    "resolve_checkpoint_dir": "xdlm_vision.training.checkpoint",
    "EMA": "xdlm_vision.training.ema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xdlm_vision.training' has no attribute {name!r}")


__all__ = ["EMA", "LoadedModel", "TrainResult", "TrainingDiverged", "latest_checkpoint", "load_checkpoint",
           "resolve_checkpoint_dir", "train"]
