"""Editing an image with a trained model: inpaint, outpaint, re-generate a region, variations.

The pipeline (docs/editing.md):

1. :func:`prepare_edit`: the input image is fitted to the model's image size and tokenized; the
   mask (white = regenerate) becomes a keep-mask over token cells (a cell is regenerated if any of
   its pixels is white); ``--outpaint SIDE:N`` instead builds a model-sized window holding the
   input's last ``w - N`` columns (rows) next to N new ones.
2. :func:`edit_steps`: the sampler's step stream for one batch, conditioned on the known tokens
   (:class:`~xdlm_vision.core.KnownTokens`): held cells never change; ``revise_border`` cells around
   the region may be revised (k > 0 only); with ``strength`` t < 1 the region starts from the input
   re-noised to time t instead of from the prior, any class may be requested (class swap).
   Outpainting streams are mapped onto the extended canvas.
3. :func:`run_edit`: all images in batches, with the fraction of held tokens left unchanged (1.0
   by construction; measured, not assumed).

Image i uses seed ``seed + i``; with the whole image masked and strength 1 an edit is exactly
``xdlm-vision sample`` with the same seeds and classes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from PIL import Image

from xdlm_vision.checkpoints import LoadedModel
from xdlm_vision.core import KnownTokens, SamplerStep, border
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.edit_inputs import Outpaint, cells_from_pixels, image_tensor, mask_tensor
from xdlm_vision.sampling.generate import SamplingOptions, batches, sampler_steps


@dataclass(frozen=True)
class EditOptions:
    """How to edit (on top of :class:`SamplingOptions`)."""

    strength: float = 1.0  # 1: region from the prior; t in (0, 1): from the input re-noised to t; 0: no change
    revise_border: int = 0  # pixels around the region whose tokens may be revised (k > 0 only)


@dataclass
class EditJob:
    """A prepared edit: what the sampler sees (one model-sized grid) and how to show the result."""

    ids: torch.Tensor  # (h, w) int64 window tokens (input tokens, or the shifted window when outpainting)
    keep: torch.Tensor  # (h, w) bool: given cells
    revise: torch.Tensor  # (h, w) bool: given cells that may be revised (subset of keep)
    input_ids: torch.Tensor  # (h, w) int64 tokens of the fitted input image
    input_image: torch.Tensor  # (1, C, H, W) fitted input in [-1, 1]
    outpaint: Outpaint | None = None

    @property
    def region(self) -> torch.Tensor:
        """(h', w') bool: the generated cells on the result's canvas (outline drawn around them)."""
        if self.outpaint is None:
            return ~self.keep
        return self.outpaint.canvas_region(tuple(self.input_ids.shape), 1)[0]

    @property
    def canvas_shape(self) -> tuple[int, int]:
        return tuple(self.region.shape)


def model_image_size(lm: LoadedModel) -> tuple[int, int, int]:
    """(channels, height, width) of the model's images, read off its tokenizer's decoder."""
    if lm.tokenizer is None:
        raise UserError("editing needs the model's tokenizer; pass --tokenizer-checkpoint")
    probe = lm.tokenizer.decode(torch.zeros(1, *lm.grid_shape, dtype=torch.long, device=lm.device))
    return int(probe.shape[1]), int(probe.shape[2]), int(probe.shape[3])


def cell_pixels(lm: LoadedModel, height: int) -> int:
    """Pixels per token cell along the height (1 for pixel tokens, the downsample factor for VQ)."""
    return max(1, height // int(lm.grid_shape[0]))


def prepare_edit(lm: LoadedModel, image: Image.Image, mask: Image.Image | None = None,
                 outpaint: Outpaint | None = None, revise_border: int = 0) -> EditJob:
    """Tokenize the fitted input and turn the mask (or the outpaint side) into the keep-mask.

    ``mask``: any image of the input's size, white (> 127) = regenerate. Exactly one of ``mask`` and
    ``outpaint`` must be given. ``revise_border``: pixels; converted to whole token cells (rounded up).
    """
    if (mask is None) == (outpaint is None):
        raise UserError("give exactly one of --mask (the region to regenerate) and --outpaint SIDE:N")
    if len(lm.grid_shape) != 2:
        raise UserError("editing needs an image model (a 2-D token grid); this checkpoint is a sequence model")
    channels, height, width = model_image_size(lm)
    pixels = image_tensor(image, height, width, channels).to(lm.device)  # (1, C, H, W)
    with torch.no_grad():
        ids = lm.tokenizer.encode(pixels)[0].long().cpu()  # (h, w)
    if tuple(ids.shape) != tuple(lm.grid_shape):
        raise UserError(f"the tokenizer gives a {tuple(ids.shape)} grid for {width}x{height} images but the "
                        f"model expects {tuple(lm.grid_shape)}")
    if outpaint is not None:
        outpaint.check(tuple(lm.grid_shape))
        window, keep = outpaint.window(ids[None])
        window, keep = window[0], keep[0]
    else:
        region = cells_from_pixels(mask_tensor(mask, image.size, height, width), tuple(lm.grid_shape))  # (h, w)
        if not region.any():
            raise UserError("--mask selects no token cell: nothing to regenerate (white = regenerate)")
        window, keep = ids, ~region
    if revise_border < 0:
        raise UserError(f"--revise-border must be >= 0 pixels, got {revise_border}")
    cells = math.ceil(revise_border / cell_pixels(lm, height)) if revise_border else 0
    if cells and lm.spec.space.k == 0:
        raise UserError("--revise-border needs a model with k > 0: a k = 0 (MDLM) model never revises a placed token")
    revise = border(keep.reshape(1, -1), tuple(lm.grid_shape), cells).reshape(keep.shape)  # (h, w)
    return EditJob(window, keep, revise, ids, pixels.cpu(), outpaint)


def _to_canvas(step: SamplerStep, job: EditJob, grid: tuple[int, int]) -> SamplerStep:
    """Outpainting: the window's step placed on the extended canvas (original cells unchanged)."""
    op = job.outpaint
    b = step.z_s.shape[0]

    def canvas(x: torch.Tensor, fill) -> torch.Tensor:
        base = job.input_ids[None].expand(b, *grid).to(x.device) if fill is None else \
            torch.full((b, *grid), fill, dtype=x.dtype, device=x.device)
        return op.canvas(base, x.reshape(b, *grid)).reshape(b, -1)

    return replace(step, z_t=canvas(step.z_t, None), z_s=canvas(step.z_s, None),
                   x0_argmax=None if step.x0_argmax is None else canvas(step.x0_argmax, None),
                   created=canvas(step.created, False), refined=canvas(step.refined, False),
                   remasked=canvas(step.remasked, False))


def edit_steps(lm: LoadedModel, job: EditJob, labels: Sequence[int], seeds: Sequence[int],
               opts: SamplingOptions, edit: EditOptions) -> Iterator[SamplerStep]:
    """Step stream of one batch of edits (one image per label/seed) on the model's grid (the window)."""
    if not (math.isfinite(edit.strength) and 0.0 < edit.strength <= 1.0):
        raise UserError(f"--strength must lie in (0, 1] here (0 returns the input unchanged), got {edit.strength}")
    b = len(labels)
    flat = job.ids.reshape(1, -1).expand(b, -1)  # (B, L)
    known = KnownTokens(flat.clone(), job.keep.reshape(1, -1).expand(b, -1).clone(),
                        job.revise.reshape(1, -1).expand(b, -1).clone() if job.revise.any() else None)
    return sampler_steps(lm, labels, seeds, opts, known=known, start=flat, strength=edit.strength)


def canvas_steps(job: EditJob, steps: Iterator[SamplerStep]) -> Iterator[SamplerStep]:
    """The steps as shown on the result's canvas (outpainting: window placed next to the input)."""
    if job.outpaint is None:
        yield from steps
        return
    grid = tuple(job.ids.shape)
    for step in steps:
        yield _to_canvas(step, job, grid)


@dataclass
class EditResult:
    """Edited token grids and how faithful the held part stayed."""

    tokens: torch.Tensor  # (num, h', w') int64 on the result canvas
    held_unchanged: float  # fraction of held cells equal to their given ids after the edit (1.0 expected)
    num_held: int  # held cells per image


def run_edit(lm: LoadedModel, job: EditJob, labels: Sequence[int], seeds: Sequence[int], opts: SamplingOptions,
             edit: EditOptions, batch_size: int = 64,
             watch: Callable[[Iterator[SamplerStep]], Iterator[SamplerStep]] | None = None) -> EditResult:
    """Edit ``len(labels)`` times (image i: class labels[i], seed seeds[i]).

    ``watch`` wraps the canvas step stream of the first batch (e.g. a trajectory recorder).
    """
    held = job.keep & ~job.revise  # (h, w)
    if edit.strength == 0.0:  # nothing is re-noised: the input comes back as it is
        if job.outpaint is not None:
            raise UserError("--strength 0 leaves nothing to generate; outpainting needs --strength > 0")
        return EditResult(job.input_ids[None].repeat(len(labels), 1, 1), 1.0, int(held.sum()))
    windows = []
    for j, idx in enumerate(batches(len(labels), batch_size)):
        raw = edit_steps(lm, job, [labels[i] for i in idx], [seeds[i] for i in idx], opts, edit)
        final = []

        def keep_last(stream, final=final):
            for step in stream:
                final[:] = [step.z_s]
                yield step

        shown = canvas_steps(job, keep_last(raw))
        if watch is not None and j == 0:
            shown = watch(shown)
        for _ in shown:
            pass
        windows.append(final[0].cpu())  # (b, L) on the model's grid
    window = torch.cat(windows).reshape(len(labels), *job.ids.shape)  # (num, h, w)
    same = window[:, held] == job.ids[held]  # (num, n_held)
    frac = float(same.float().mean()) if same.numel() else 1.0
    tokens = window if job.outpaint is None else job.outpaint.canvas(
        job.input_ids[None].expand(len(labels), -1, -1), window)  # (num, h', w')
    return EditResult(tokens, frac, int(held.sum()))


__all__ = ["EditJob", "EditOptions", "EditResult", "canvas_steps", "edit_steps", "model_image_size", "prepare_edit",
           "run_edit"]
