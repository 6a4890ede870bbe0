"""Noise schedules alpha_t (probability that a token is still clean at time t in [0, 1]).

A schedule is an object with ``alpha(t)`` and ``alpha_prime(t)`` (d alpha / dt), both taking and
returning tensors of the same shape. ``alpha(0) = 1`` (clean data) and ``alpha(1) = 0`` (the
stationary prior pi), except ``loglinear``, the schedule of the XDLM authors' released models,
which stops at ``alpha(1) = 1e-3`` (see ``docs/official.md``). New schedules are a class plus one
entry in ``SCHEDULES``.
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


@dataclass(frozen=True)
class LogLinearSchedule:
    """alpha_t = 1 - (1 - eps) t with eps = 1e-3: the released XDLM / MDLM models' "log-linear"
    noise (sigma_t = -log alpha_t is log-linear in 1 - t). alpha(1) = eps, not 0."""

    name: str = "loglinear"
    eps: float = 1e-3

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def alpha_prime(self, t: torch.Tensor) -> torch.Tensor:
        return torch.full_like(t, -(1.0 - self.eps))


SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule, "loglinear": LogLinearSchedule}


def get_schedule(name: str | LinearSchedule | CosineSchedule | LogLinearSchedule = "linear"):
    """Schedule by name ("linear", "cosine", "loglinear"); a schedule object passes through unchanged."""
    if not isinstance(name, str):
        return name
    try:
        return SCHEDULES[name]()
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}") from None
