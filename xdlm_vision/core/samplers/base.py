"""What every sampler shares: the per-step state it yields, the guided model call, ``sample``.

Samplers are generator functions. Each step yields a :class:`SamplerStep`; ``sample(steps)``
drains a sampler and returns the final tokens. The CLI, the FID sampler, the trajectory
visualiser and the Gradio demo all consume the same stream.

A model callable has the signature ``model_fn(z (B, L) int64, class_labels (B,) int64 | None)
-> logits (B, L, N)``; pass ``pass_time=True`` to a sampler to call ``model_fn(z, labels, t)`` with
t (B,) for time-conditioned backbones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from xdlm_vision.core.guidance import GuidanceSchedule, guided_logits

ModelFn = Callable[..., torch.Tensor]


@dataclass
class SamplerStep:
    """State after one sampling step (all tensors (B, L))."""

    step: int  # 0-based step index
    num_steps: int
    t: float  # time before the step (1 at the start)
    s: float  # time after the step (0 after the last)
    z_t: torch.Tensor  # tokens before the step (mask id = N)
    z_s: torch.Tensor  # tokens after the step
    x0_argmax: torch.Tensor | None  # argmax of x_hat (the model's current guess of the clean data)
    created: torch.Tensor  # bool: mask -> token
    refined: torch.Tensor  # bool: token -> a different token
    remasked: torch.Tensor  # bool: token -> mask

    @property
    def counts(self) -> dict[str, int]:
        """Totals over the batch of the three transitions of this step."""
        return {
            "created": int(self.created.sum()),
            "refined": int(self.refined.sum()),
            "remasked": int(self.remasked.sum()),
        }

    @property
    def is_last(self) -> bool:
        return self.step == self.num_steps - 1


def transitions(z_t: torch.Tensor, z_s: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(created, refined, remasked) boolean masks of a step z_t -> z_s."""
    was_mask, is_mask = z_t == mask_id, z_s == mask_id
    created = was_mask & ~is_mask
    remasked = ~was_mask & is_mask
    refined = ~was_mask & ~is_mask & (z_t != z_s)
    return created, refined, remasked


def sample(steps: Iterator[SamplerStep]) -> torch.Tensor:
    """Run a sampler to the end; returns the final tokens (B, L)."""
    last = None
    for last in steps:
        pass
    if last is None:
        raise ValueError("the sampler produced no step (num_steps must be >= 1)")
    return last.z_s


def check_common(num_samples: int, seq_len: int, num_steps: int, class_labels, space, null_class, guidance) -> None:
    if num_steps < 1:
        raise ValueError(f"number of sampling steps must be >= 1, got {num_steps}")
    if num_samples < 1 or seq_len < 1:
        raise ValueError(f"need num_samples >= 1 and seq_len >= 1, got {num_samples}, {seq_len}")
    if class_labels is not None and class_labels.shape != (num_samples,):
        raise ValueError(f"class_labels must have shape ({num_samples},), got {tuple(class_labels.shape)}")
    if guidance.enabled and null_class is None:
        raise ValueError("classifier-free guidance needs the null class id (null_class)")


def guided_model_call(
    model_fn: ModelFn,
    z: torch.Tensor,
    class_labels: torch.Tensor | None,
    null_class: int | None,
    gamma: float,
    t: float | None = None,
) -> torch.Tensor:
    """Logits for z, guided with strength gamma; conditional and null passes in one forward."""
    b = z.shape[0]
    time = None if t is None else torch.full((b,), float(t), device=z.device)
    if gamma == 0 or class_labels is None:
        args = (z, class_labels) if time is None else (z, class_labels, time)
        return model_fn(*args)
    null = torch.full_like(class_labels, int(null_class))
    zz = torch.cat([z, z])  # (2B, L)
    labels = torch.cat([class_labels, null])  # (2B,)
    args = (zz, labels) if time is None else (zz, labels, torch.cat([time, time]))
    out = model_fn(*args)  # (2B, L, N)
    return guided_logits(out[:b], out[b:], gamma)


def time_grid(num_steps: int, t_start: float = 1.0) -> list[tuple[float, float]]:
    """Uniform grid from t = t_start (default 1) to 0: [(t_i, s_i)] with s of the last step exactly 0.

    ``t_start < 1`` runs only the end of the reverse process (partial re-noising, see
    :mod:`xdlm_vision.core.conditioning`); with ``t_start = 1`` the grid is 1 - i / T exactly.
    """
    if not (0.0 < t_start <= 1.0):
        raise ValueError(f"t_start must lie in (0, 1], got {t_start}")

    def at(j: int) -> float:
        return 1.0 - j / num_steps if t_start == 1.0 else t_start * (1.0 - j / num_steps)

    return [(at(i), at(i + 1) if i + 1 < num_steps else 0.0) for i in range(num_steps)]


__all__ = ["GuidanceSchedule", "SamplerStep", "guided_model_call", "sample", "time_grid", "transitions"]
