"""Learning-rate schedule as a pure function of the optimizer step (nothing to save for resume).

Linear warm-up from 0 to ``lr`` over ``warmup_steps``, then constant or cosine decay to
``min_lr_ratio * lr`` at ``total_steps``. The trainer writes the value into every param group
before each optimizer step, so the schedule does not depend on the number of processes.
"""

from __future__ import annotations

import math

from xdlm_vision.config import OptimConfig


def lr_at(step: int, optim: OptimConfig, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of a ``total_steps`` run."""
    if optim.warmup_steps > 0 and step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.lr_schedule == "constant":
        return optim.lr
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    floor = optim.min_lr_ratio * optim.lr
    return floor + (optim.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
