"""Ancestral sampling with the XDLM posterior (any k), uniform time grid from t = 1 to 0."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from xdlm_vision.core.conditioning import KnownTokens
from xdlm_vision.core.guidance import GuidanceSchedule, as_guidance
from xdlm_vision.core.posterior import posterior_step
from xdlm_vision.core.process import TokenSpace, sample_prior
from xdlm_vision.core.samplers.base import (
    ModelFn,
    SamplerStep,
    check_common,
    guided_model_call,
    time_grid,
    transitions,
)
from xdlm_vision.core.schedules import get_schedule


@torch.no_grad()
def ancestral_sampler(
    model_fn: ModelFn,
    *,
    num_samples: int,
    seq_len: int,
    space: TokenSpace,
    num_steps: int,
    class_labels: torch.Tensor | None = None,
    cfg: float | GuidanceSchedule = 0.0,
    null_class: int | None = None,
    schedule="linear",
    generator=None,
    device="cpu",
    z_init: torch.Tensor | None = None,
    track_x0: bool = True,
    pass_time: bool = False,
    known: KnownTokens | None = None,
    t_start: float = 1.0,
) -> Iterator[SamplerStep]:
    """Yield one :class:`SamplerStep` per step of z_1 ~ pi -> ... -> z_0.

    Step i goes from t_i = 1 - i/T to s_i = 1 - (i+1)/T with alpha_s = 1 at the last step, so the
    result holds no mask. ``generator``: one torch.Generator, or a list with one per sample for
    batch-size-independent samples (see :mod:`xdlm_vision.core.rng`). ``cfg``: gamma in the XDLM
    convention (see :mod:`xdlm_vision.core.guidance`) or a GuidanceSchedule. ``track_x0=False``
    skips the argmax of x_hat (only needed for visualisation).

    Editing (:mod:`xdlm_vision.core.conditioning`): ``known`` holds tokens at given ids (its
    ``revise`` part starts at them but moves freely); ``t_start < 1`` runs the reverse process from
    time ``t_start`` and needs ``z_init`` (e.g. from ``renoise``), the grid then spans t_start -> 0.
    """
    guidance = as_guidance(cfg)
    check_common(num_samples, seq_len, num_steps, class_labels, space, null_class, guidance)
    sched = get_schedule(schedule)
    if class_labels is not None:
        class_labels = class_labels.to(device)
    grid = time_grid(num_steps, t_start)
    if known is not None:
        known.check(num_samples, seq_len, space)
        known = known.to(device)
    if z_init is None:
        if t_start != 1.0:
            raise ValueError("a sampler started at t_start < 1 needs z_init (the re-noised tokens)")
        z = sample_prior((num_samples, seq_len), space, generator, device)  # (B, L)
    else:
        z = z_init.to(device)
    if known is not None:
        z = known.start(z)  # (B, L) given ids in place, revisable ones included
    for i, (t, s) in enumerate(grid):
        alpha_t = float(sched.alpha(torch.tensor(t, dtype=torch.float64)))
        alpha_s = 1.0 if s == 0.0 else float(sched.alpha(torch.tensor(s, dtype=torch.float64)))
        gamma = guidance.value(i, num_steps)
        logits = guided_model_call(model_fn, z, class_labels, null_class, gamma, t if pass_time else None)
        z_s = posterior_step(logits, z, alpha_t, alpha_s, space, generator).z_s  # (B, L)
        if known is not None:
            z_s = known.hold(z_s)
        created, refined, remasked = transitions(z, z_s, space.mask_id)
        x0 = logits.argmax(-1) if track_x0 else None
        yield SamplerStep(i, num_steps, t, s, z, z_s, x0, created, refined, remasked)
        z = z_s
