"""Sampling images: labels, seeds, options, the step stream of a batch, all images in batches.

- :func:`parse_classes`, :func:`sample_seeds`: the label and seed of every image. Image ``i`` uses
  seed ``seed + i`` and its own ``torch.Generator`` (:func:`xdlm_vision.core.seeded_generators`),
  so an image depends only on its seed and class — not on ``num`` or the batch size.
- :func:`sampler_steps` (one batch, a stream of :class:`~xdlm_vision.core.SamplerStep`) and
  :func:`generate` (all images, in batches) run the samplers on a loaded checkpoint
  (:class:`~xdlm_vision.checkpoints.LoadedModel`); conditional and null passes of classifier-free
  guidance share one forward (done by the core).
- :func:`decoder`, :func:`decode_tokens`: token grids to image tensors (saving them is
  :mod:`xdlm_vision.viz.images`).

CFG convention (docs/sampling.md): ``cfg = gamma`` with
``log x_hat = (1 + gamma) log_softmax(l_cond) - gamma log_softmax(l_null)``; gamma = 0 is plain
conditional sampling; LlamaGen/DiT's scale is ``s = 1 + gamma``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from xdlm_vision.checkpoints import LoadedModel
from xdlm_vision.core import SAMPLERS, GuidanceSchedule, KnownTokens, SamplerStep, renoise, seeded_generators
from xdlm_vision.errors import UserError

Decode = Callable[[torch.Tensor], torch.Tensor]
SAMPLER_CHOICES = ("ancestral", "confidence")  # the samplers offered by the CLI and the demo


# ---------------------------------------------------------------------------------------------
# labels and seeds


def sample_seeds(seed: int, num: int) -> list[int]:
    """Seeds of images 0..num-1: ``seed + i``."""
    return [int(seed) + i for i in range(num)]


def parse_classes(spec: str | int | Sequence[int], num: int, num_classes: int, seed: int = 0,
                  flag: str = "--class") -> list[int]:
    """Labels of ``num`` images from one id, a comma list (cycled) or ``random``.

    ``random`` draws image i's class from ``random.Random(seed + i)``, so — like the image — it
    depends only on that image's seed. Ids are checked against ``num_classes``.
    """
    if isinstance(spec, str) and spec.strip().lower() == "random":
        return [random.Random(s).randrange(num_classes) for s in sample_seeds(seed, num)]
    if isinstance(spec, int):
        ids = [spec]
    elif isinstance(spec, str):
        try:
            parts = spec.split(",")
            if any(p.strip() == "" for p in parts):
                raise UserError(f"{flag} {spec!r} has an empty item; give ids separated by single commas (e.g. 3,4)")
            ids = [int(p) for p in parts]
        except ValueError:
            raise UserError(f"{flag} must be a class id, a comma list of ids or 'random', got {spec!r}") from None
    else:
        ids = [int(v) for v in spec]
    if not ids:
        raise UserError(f"{flag} is empty; give a class id, a comma list or 'random'")
    bad = [c for c in ids if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"{flag} {bad[0]} is out of range: this checkpoint has {num_classes} classes (0..{num_classes - 1})")
    return [ids[i % len(ids)] for i in range(num)]


# ---------------------------------------------------------------------------------------------
# sampling


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample (everything except which images)."""

    steps: int = 8  # sampler steps T
    cfg: float = 0.0  # guidance gamma, XDLM convention (LlamaGen/DiT scale = 1 + gamma)
    cfg_schedule: str = "constant"  # constant | linear ramp gamma * (step + 1) / T
    sampler: str = "ancestral"  # key of xdlm_vision.core.SAMPLERS
    track_x0: bool = False  # also compute argmax x_hat per step (visualisation only)


def sampler_steps(lm: LoadedModel, labels: Sequence[int], seeds: Sequence[int],
                  opts: SamplingOptions, known: KnownTokens | None = None,
                  start: torch.Tensor | None = None, strength: float = 1.0) -> Iterator[SamplerStep]:
    """The step stream of one batch (len(labels) images; image i uses its own seeds[i] generator).

    Editing (docs/editing.md): ``known`` holds given tokens; with ``strength`` t < 1 the clean
    tokens ``start`` (B, L) are re-noised to time t with each image's own generator and the
    ancestral sampler runs from t to 0.
    """
    if opts.sampler not in SAMPLERS:
        raise UserError(f"unknown --sampler {opts.sampler!r}; choose one of {sorted(SAMPLERS)}")
    if len(labels) != len(seeds):
        raise ValueError("one seed per label is needed")
    generators = seeded_generators(seeds)
    extra = {} if known is None else {"known": known}
    if strength < 1.0:
        if opts.sampler != "ancestral":
            raise UserError("--strength below 1 re-noises the image and needs --sampler ancestral")
        z = renoise(start.to(lm.device), strength, lm.spec.space, lm.spec.schedule, known, generators)  # (B, L)
        extra.update(z_init=z, t_start=float(strength))
    kwargs = {
        "num_samples": len(labels),
        "seq_len": lm.seq_len,
        "space": lm.spec.space,
        "num_steps": opts.steps,
        "class_labels": torch.tensor(list(labels), dtype=torch.long, device=lm.device),
        "cfg": GuidanceSchedule(float(opts.cfg), opts.cfg_schedule),
        "null_class": lm.null_class,
        "generator": generators,
        "device": lm.device,
        "track_x0": opts.track_x0,
        "pass_time": lm.spec.time_conditioning,
    }
    if opts.sampler == "ancestral":
        kwargs["schedule"] = lm.spec.schedule
    return SAMPLERS[opts.sampler](lm.model_fn, **kwargs, **extra)


def batches(n: int, batch_size: int) -> list[range]:
    """Index ranges of consecutive batches covering 0..n-1."""
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def generate(
    lm: LoadedModel,
    labels: Sequence[int],
    seeds: Sequence[int],
    opts: SamplingOptions,
    batch_size: int = 64,
    watch: Callable[[Iterator[SamplerStep]], Iterator[SamplerStep]] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample every image; returns tokens (num, h, w) int64 on the CPU.

    ``watch`` wraps the step stream of the *first* batch (e.g. ``TrajectoryRecorder.watch``).
    """
    out = []
    parts = batches(len(labels), batch_size)
    bar = None
    if progress and len(parts) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(labels), desc="sampling", unit="img")
    for j, idx in enumerate(parts):
        steps = sampler_steps(lm, [labels[i] for i in idx], [seeds[i] for i in idx], opts)
        if watch is not None and j == 0:
            steps = watch(steps)
        last = None
        for last in steps:
            pass
        out.append(last.z_s.cpu())  # (b, L)
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    return torch.cat(out).reshape(len(labels), *lm.grid_shape)  # (num, h, w)


# ---------------------------------------------------------------------------------------------
# decoding


def decoder(tokenizer, device: torch.device | str = "cpu") -> Decode:
    """``decode(ids (B, h, w)) -> images (B, C, H, W)`` float32 in [-1, 1] on the CPU."""

    @torch.no_grad()
    def decode(ids: torch.Tensor) -> torch.Tensor:
        return tokenizer.decode(ids.to(device)).float().clamp(-1, 1).cpu()

    return decode


def decode_tokens(lm: LoadedModel, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Token grids (num, h, w) -> images (num, C, H, W) in [-1, 1], decoded in batches."""
    if lm.tokenizer is None:
        raise UserError("no tokenizer to decode with; pass --tokenizer-checkpoint")
    dec = decoder(lm.tokenizer, lm.device)
    return torch.cat([dec(tokens[i : i + batch_size]) for i in range(0, tokens.shape[0], batch_size)])
