"""The training objective on one batch: draw t and z_t, run the model, return the NELBO per token.

:class:`DiffusionSpec` bundles what the objective and the samplers need besides the model (the
token space, the alpha_t schedule, whether the backbone sees t); run configs become one in
:func:`xdlm_vision.build.diffusion_spec`. :func:`batch_nelbo` is the one per-batch estimator used by
the trainer, its validation and ``eval nelbo`` (docs/math.md gives the bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from xdlm_vision.core.loss import nelbo
from xdlm_vision.core.process import TokenSpace, corrupt
from xdlm_vision.core.timesteps import sample_times


@dataclass(frozen=True)
class DiffusionSpec:
    """The noise process of a model: token space, alpha_t schedule, time conditioning."""

    space: TokenSpace  # N data tokens (mask id N) and the mixing ratio k
    schedule: Any  # alpha_t schedule object (xdlm_vision.core.get_schedule)
    time_conditioning: bool  # the backbone receives t (else None)

    @property
    def k(self) -> float:
        return float(self.space.k)

    @property
    def num_tokens(self) -> int:
        return int(self.space.num_tokens)

    @property
    def schedule_name(self) -> str:
        return str(self.schedule.name)

    def with_k(self, k: float | None) -> DiffusionSpec:
        """The same spec with another k (sampling/evaluation experiments); None keeps it."""
        return self if k is None else replace(self, space=TokenSpace(self.space.num_tokens, float(k)))


def batch_nelbo(
    model_fn: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    labels: torch.Tensor | None,
    spec: DiffusionSpec,
    generator: torch.Generator,
) -> torch.Tensor:
    """NELBO per token (B, L) in nats of one batch, for one draw of t and z_t.

    x0 (B, L) int64 clean tokens; labels (B,) int64 (null class allowed) or None;
    model_fn(z_t (B, L), labels, t (B,) | None) -> logits (B, L, N) (an ``nn.Module`` backbone
    works as it is). t is antithetic over the batch and z_t ~ q(z_t | x0), both drawn from
    ``generator`` (a CPU generator: the draw does not depend on the device). Logits in bf16 go
    into the loss as they are: it upcasts chunk by chunk.
    """
    t = sample_times(x0.shape[0], generator=generator).to(x0.device)  # (B,)
    z_t = corrupt(x0, t, spec.space, spec.schedule, generator=generator)  # (B, L)
    logits = model_fn(z_t, labels, t if spec.time_conditioning else None)  # (B, L, N)
    return nelbo(logits, x0, z_t, t, spec.space, spec.schedule)  # (B, L)
