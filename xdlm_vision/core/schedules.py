"""Noise schedules alpha_t (probability that a token is still clean at time t in [0, 1]).

A schedule is an object with ``alpha(t)`` and ``alpha_prime(t)`` (d alpha / dt), both taking and
returning tensors of the same shape. ``alpha(0) = 1`` (clean data) and ``alpha(1) = 0`` (the
stationary prior pi). New schedules are a class plus one entry in ``SCHEDULES``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearSchedule:
    """alpha_t = 1 - t (MDLM's and the XDLM paper's default)."""

    name: str = "linear"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - t

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.ones_like(t)


@dataclass(frozen=True)
class CosineSchedule:
    """alpha_t = cos(pi t / 2); alpha'_t = -(pi/2) sin(pi t / 2). Masks fewer tokens early on."""

    name: str = "cosine"

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        # clamp: cos(pi/2) is 6e-17 in float64, not 0; the prior must be reached exactly at t = 1
        return torch.cos(0.5 * math.pi * t).clamp_min(0.0) * (t < 1)

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule}


def get_schedule(name: str | LinearSchedule | CosineSchedule = "linear"):
    """Schedule by name ("linear", "cosine"); a schedule object passes through unchanged."""
    if not isinstance(name, str):
        return name
    try:
        return SCHEDULES[name]()
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
