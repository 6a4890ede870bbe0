"""Classifier-free guidance on logits, in the XDLM paper's convention.

    log x_hat = (1 + gamma) log_softmax(l_cond) - gamma log_softmax(l_null)

gamma = 0 is plain conditional sampling. In the ``u + s (c - u)`` convention of LlamaGen/DiT the
scale is s = 1 + gamma (so the paper's "CFG 2.0" is LlamaGen's scale 3.0). The result is returned
as unnormalised logits; every consumer applies softmax / log-softmax itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CFG_SCHEDULES = ("constant", "linear")


@dataclass(frozen=True)
class GuidanceSchedule:
    """gamma per sampling step.

    ``constant``: gamma at every step. ``linear``: a ramp gamma * progress with
    progress = (step + 1) / num_steps, weak guidance while most tokens are still noise and full
    guidance at the end (MUSE-style).
    """

    gamma: float = 0.0  # guidance strength in the XDLM convention (s = 1 + gamma)
    kind: str = "constant"  # "constant" or "linear"

    def __post_init__(self) -> None:
        if not math.isfinite(self.gamma) or self.gamma < 0:
            raise ValueError(f"CFG gamma must be a finite number >= 0, got {self.gamma}")
        if self.kind not in CFG_SCHEDULES:
            raise ValueError(f"unknown CFG schedule {self.kind!r}; choose one of {list(CFG_SCHEDULES)}")

    def value(self, step: int, num_steps: int) -> float:
        if self.kind == "constant":
            return self.gamma
        return self.gamma * (step + 1) / num_steps

    @property
    def enabled(self) -> bool:
        return self.gamma > 0


def as_guidance(cfg: float | GuidanceSchedule | None) -> GuidanceSchedule:
    if cfg is None:
        return GuidanceSchedule(0.0)
    if isinstance(cfg, GuidanceSchedule):
        return cfg
    return GuidanceSchedule(float(cfg))


def guided_logits(cond: torch.Tensor, null: torch.Tensor, gamma: float) -> torch.Tensor:
    """(1 + gamma) log_softmax(cond) - gamma log_softmax(null); cond, null (B, L, N) -> (B, L, N) float32."""
    if gamma == 0:
        return cond
    lc = torch.log_softmax(cond.float(), dim=-1)  # (B, L, N)
    ln = torch.log_softmax(null.float(), dim=-1)  # (B, L, N)
    return lc.mul_(1.0 + gamma).sub_(ln.mul_(gamma))
