"""Confidence-based sampling: MaskGIT-style decoding plus XDLM's refinement branch for k > 0.

Start from an all-[MASK] sequence. At step i of T:
  1. candidates: one token per position drawn from x_hat (``temperature`` > 0) or its argmax
     (``temperature`` = 0); confidence = log x_hat(candidate), plus optional annealed Gumbel noise
     ``confidence_noise * (1 - (i+1)/T) * g`` (MaskGIT's randomised confidence).
  2. absorb: among masked positions, write the ``n_absorb`` most confident candidates, where
     ``n_absorb`` follows the absorb schedule of the number of masks left (``cosine``:
     L cos(pi/2 (i+1)/T), MaskGIT's choice; ``linear``: L (1 - (i+1)/T)); all remaining masks are
     decoded at the last step.
  3. refine (only for k > 0): among positions that were already tokens, those whose candidate
     differs from the current token and is more probable than it are candidates for re-writing;
     the ``n_refine`` with the largest log-probability gain are re-written, with
     n_refine = round(fraction * #tokens) (``refine_schedule``: ``constant`` fraction =
     refine_fraction, or ``linear``: refine_fraction * (1 - i/T), from refine_fraction at the
     first step down to refine_fraction / T at the last).
With k = 0 nothing is ever refined (an MDLM has no model of token-to-token moves).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from xdlm_vision.core.conditioning import KnownTokens
from xdlm_vision.core.guidance import GuidanceSchedule, as_guidance
from xdlm_vision.core.posterior import categorical_rows
from xdlm_vision.core.process import TokenSpace
from xdlm_vision.core.rng import RandomSource
from xdlm_vision.core.samplers.base import ModelFn, SamplerStep, check_common, guided_model_call, transitions

ABSORB_SCHEDULES = ("cosine", "linear")
REFINE_SCHEDULES = ("constant", "linear")


def masks_left(step: int, num_steps: int, seq_len, kind: str):
    """Number of masked positions that should remain after ``step`` (0 after the last).

    ``seq_len``: an int, or a (B,) int64 tensor of free positions per row (editing), then (B,).
    """
    frac = (step + 1) / num_steps
    left = math.cos(0.5 * math.pi * frac) if kind == "cosine" else 1.0 - frac
    if isinstance(seq_len, torch.Tensor):
        if step + 1 >= num_steps:
            return torch.zeros_like(seq_len)
        return torch.floor(seq_len.double() * left + 1e-9).long()  # (B,)
    return 0 if step + 1 >= num_steps else math.floor(seq_len * left + 1e-9)


def _top_per_row(score: torch.Tensor, eligible: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Boolean (B, L): per row the ``counts[b]`` highest scores among eligible positions."""
    score = torch.where(eligible, score, torch.full_like(score, -math.inf))
    order = score.argsort(dim=-1, descending=True, stable=True)  # (B, L)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return (rank < counts[:, None]) & eligible


@torch.no_grad()
def confidence_sampler(
    model_fn: ModelFn,
    *,
    num_samples: int,
    seq_len: int,
    space: TokenSpace,
    num_steps: int,
    class_labels: torch.Tensor | None = None,
    cfg: float | GuidanceSchedule = 0.0,
    null_class: int | None = None,
    generator=None,
    device="cpu",
    temperature: float = 1.0,
    absorb_schedule: str = "cosine",
    refine_fraction: float = 0.05,
    refine_schedule: str = "linear",
    confidence_noise: float = 0.0,
    track_x0: bool = True,
    pass_time: bool = False,
    known: KnownTokens | None = None,
) -> Iterator[SamplerStep]:
    """Yield one :class:`SamplerStep` per step; see the module docstring for the rule.

    ``generator``: one torch.Generator or a list with one per sample (per-sample streams make the
    result independent of batch size). Other arguments as in ``ancestral_sampler``. ``known``:
    given tokens start at their ids, the absorb schedule counts each row's free positions only,
    and refinement never touches held positions (see :mod:`xdlm_vision.core.conditioning`).
    """
    guidance = as_guidance(cfg)
    check_common(num_samples, seq_len, num_steps, class_labels, space, null_class, guidance)
    if absorb_schedule not in ABSORB_SCHEDULES:
        raise ValueError(f"unknown absorb schedule {absorb_schedule!r}; choose one of {list(ABSORB_SCHEDULES)}")
    if refine_schedule not in REFINE_SCHEDULES:
        raise ValueError(f"unknown refine schedule {refine_schedule!r}; choose one of {list(REFINE_SCHEDULES)}")
    if temperature < 0 or not (0.0 <= refine_fraction <= 1.0) or confidence_noise < 0:
        raise ValueError("need temperature >= 0, 0 <= refine_fraction <= 1 and confidence_noise >= 0")
    if class_labels is not None:
        class_labels = class_labels.to(device)
    rng = RandomSource(generator, num_samples, device)
    mask = space.mask_id
    z = torch.full((num_samples, seq_len), mask, dtype=torch.long, device=device)  # (B, L)
    held = None
    free = None  # (B,) free positions per row when editing; None = all seq_len positions
    if known is not None:
        known.check(num_samples, seq_len, space)
        known = known.to(device)
        z = known.start(z)
        held = known.held
        free = (~known.keep).sum(-1)  # (B,)
    for i in range(num_steps):
        t, s = 1.0 - i / num_steps, 1.0 - (i + 1) / num_steps
        logits = guided_model_call(model_fn, z, class_labels, null_class, guidance.value(i, num_steps),
                                   t if pass_time else None).float()  # (B, L, N)
        u_draw = rng.uniform((seq_len,))  # (B, L)
        u_noise = rng.uniform((seq_len,))  # (B, L)
        logp = torch.log_softmax(logits, dim=-1)  # (B, L, N)
        if temperature == 0:
            cand = logp.argmax(-1)  # (B, L)
        else:
            flat = (logp / temperature).reshape(-1, space.num_tokens)
            rows = torch.arange(flat.shape[0], device=device)
            cand = categorical_rows(flat, rows, u_draw.reshape(-1)).reshape(z.shape)
        conf = logp.gather(-1, cand[..., None]).squeeze(-1)  # (B, L) log x_hat(candidate)
        score = conf
        if confidence_noise > 0:
            gumbel = -torch.log(-torch.log(u_noise.clamp(1e-300, 1 - 1e-16))).float()
            score = conf + confidence_noise * (1.0 - (i + 1) / num_steps) * gumbel

        is_mask = z == mask
        n_mask = is_mask.sum(-1)  # (B,)
        target_left = masks_left(i, num_steps, seq_len if free is None else free, absorb_schedule)
        n_absorb = (n_mask - target_left).clamp_min(0)
        n_absorb = torch.where((n_mask > 0) & (n_absorb == 0) & (i + 1 == num_steps), n_mask, n_absorb)
        absorb = _top_per_row(score, is_mask, n_absorb)  # (B, L)
        z_s = torch.where(absorb, cand, z)

        if space.k > 0 and refine_fraction > 0:
            frac = refine_fraction if refine_schedule == "constant" else refine_fraction * (1 - i / num_steps)
            current = logp.gather(-1, z.clamp_max(space.num_tokens - 1)[..., None]).squeeze(-1)  # (B, L)
            gain = conf - current
            placed = ~is_mask if held is None else ~is_mask & ~held  # (B, L) tokens it may re-write
            eligible = placed & (cand != z) & (gain > 0)
            n_refine = torch.round(frac * placed.sum(-1).double()).long()  # (B,)
            refine = _top_per_row(gain, eligible, n_refine)
            z_s = torch.where(refine, cand, z_s)

        created, refined, remasked = transitions(z, z_s, mask)
        x0 = logits.argmax(-1) if track_x0 else None
        yield SamplerStep(i, num_steps, t, max(s, 0.0), z, z_s, x0, created, refined, remasked)
        z = z_s
