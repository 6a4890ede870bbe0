"""Shared sampling helpers: checkpoint -> model callable, per-sample seeds, batching, decoding, saving.

Used by ``xdlm-vision sample``, the Gradio demo and the FID sampler. The pieces:

- :func:`load_for_sampling` turns a checkpoint directory (or the packaged digits checkpoint when
  none is given) into a :class:`SamplingModel`: the backbone wrapped as a ``model_fn``, the token
  space (trained ``k`` unless overridden), classes, grid and the tokenizer that decodes it.
- :func:`parse_classes`, :func:`sample_seeds`: the label and seed of every image. Image ``i`` uses
  seed ``seed + i`` and its own ``torch.Generator`` (:func:`xdlm_vision.core.seeded_generators`),
  so an image depends only on its seed and class — not on ``num`` or the batch size.
- :func:`sampler_steps` (one batch, a stream of :class:`~xdlm_vision.core.SamplerStep`) and
  :func:`generate` (all images, in batches) run the samplers; conditional and null passes of
  classifier-free guidance share one forward (done by the core).
- :func:`decoder`, :func:`decode_tokens`, :func:`save_grid`, :func:`save_images`: token grids to
  images and PNG files (atomic writes).

CFG convention (DESIGN.md §3): ``cfg = gamma`` with
``log x_hat = (1 + gamma) log_softmax(l_cond) - gamma log_softmax(l_null)``; gamma = 0 is plain
conditional sampling; LlamaGen/DiT's scale is ``s = 1 + gamma``.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from xdlm_vision.core import SAMPLERS, GuidanceSchedule, SamplerStep, TokenSpace, seeded_generators
from xdlm_vision.errors import UserError

PACKAGED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "digits_default"
MAX_CFG = 20.0  # the demo's upper bound on gamma (the CLI accepts any finite gamma >= 0)

ModelFn = Callable[..., torch.Tensor]
Decode = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# devices and the model callable


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:1`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but CUDA is not available; use --device cpu or auto")
    return device


def make_model_fn(model: nn.Module, device: torch.device, autocast: bool | None = None) -> ModelFn:
    """Wrap a backbone as ``model_fn(z (B, L), labels (B,) | None, t (B,) | None) -> logits (B, L, N)``.

    On CUDA the forward runs under bf16 autocast (``autocast=None`` means "on CUDA only"); the
    logits are returned in float32 for the sampler's arithmetic.
    """
    use_amp = device.type == "cuda" if autocast is None else autocast

    @torch.no_grad()
    def model_fn(z: torch.Tensor, labels: torch.Tensor | None, t: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            return model(z, labels, t).float()  # (B, L, N)

    return model_fn


# ---------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class SamplingModel:
    """A checkpoint ready to sample from."""

    model: nn.Module  # backbone in eval mode on ``device``
    model_fn: ModelFn  # see make_model_fn
    space: TokenSpace  # N data tokens and the k used for sampling
    trained_k: float  # k the model was trained with (space.k differs only with an override)
    schedule: str  # alpha_t schedule name (linear | cosine)
    pass_time: bool  # the backbone is time-conditioned
    num_classes: int  # C; the null class is id C
    class_names: list[str]  # C names
    grid_shape: tuple[int, ...]  # token grid (h, w)
    tokenizer: object | None  # ImageTokenizer decoding the grid, or None if it cannot be built
    device: torch.device
    path: Path  # checkpoint directory
    step: int  # training step of the checkpoint
    ema: bool  # EMA weights loaded
    meta: dict = field(default_factory=dict)  # config.json

    @property
    def null_class(self) -> int:
        return self.num_classes

    @property
    def seq_len(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def mask_id(self) -> int:
        return self.space.mask_id


def one_line(message: str, limit: int = 400) -> str:
    """Join a multi-line message into one line of at most ``limit`` characters."""
    text = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def packaged_checkpoint() -> Path:
    """The small digits checkpoint shipped inside the package (EMA weights + config.json)."""
    return PACKAGED_CHECKPOINT


def open_tokenizer_from_spec(
    spec: dict, num_tokens: int, device: torch.device, tokenizer_checkpoint: str | Path | None = None
):
    """Build the checkpoint's tokenizer; UserError if its codebook does not match ``num_tokens``.

    Accepts the tokenizer factory's specs (``pixel``, ``llamagen``, ``diffusers``).
    ``tokenizer_checkpoint`` (``--tokenizer-checkpoint``) replaces the recorded weights path.
    """
    from xdlm_vision.tokenizers import load_tokenizer

    spec = dict(spec or {})
    if spec.get("kind") in ("llamagen", "diffusers"):
        recorded = spec.get("checkpoint") or spec.get("path")
        if tokenizer_checkpoint is None and not (recorded and Path(recorded).exists()):
            raise UserError(
                f"this checkpoint decodes with a {spec['kind']} VQ tokenizer whose weights are not at "
                f"{recorded!r}; pass them with --tokenizer-checkpoint PATH"
            )
    elif not spec.get("kind"):
        raise UserError("the checkpoint's config.json records no tokenizer; it cannot be decoded")
    if tokenizer_checkpoint is not None and not Path(tokenizer_checkpoint).exists():
        raise UserError(f"--tokenizer-checkpoint {tokenizer_checkpoint}: no such file or directory")
    tok = load_tokenizer(spec, device=device, checkpoint=tokenizer_checkpoint)
    if int(tok.codebook_size) != int(num_tokens):
        raise UserError(
            f"tokenizer/codebook size mismatch: the model predicts {num_tokens} tokens but the tokenizer "
            f"has {tok.codebook_size} codes; pass the tokenizer the model was trained with "
            f"(--tokenizer-checkpoint)"
        )
    return tok


def load_for_sampling(
    checkpoint: str | Path | None = None,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
    k: float | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    load_tokenizer: bool = True,
    flag: str = "--checkpoint",
) -> SamplingModel:
    """Load ``checkpoint`` (a step dir, a run dir, or None for the packaged digits checkpoint).

    ``k`` overrides the trained mixing ratio for sampling experiments (``--k``); the default is
    the trained one. Missing/corrupt files and mismatched tokenizers raise UserError.
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    path = Path(checkpoint) if checkpoint is not None else packaged_checkpoint()
    from xdlm_vision.training.checkpoint import is_weights_only, load_checkpoint

    if checkpoint is None and not is_weights_only(path):
        raise UserError(f"the packaged digits checkpoint is missing from {path}; pass --checkpoint DIR")
    try:
        loaded = load_checkpoint(path, ema=ema, device=device, flag=flag)
    except UserError as exc:  # keep whatever the loader said to one line
        raise UserError(one_line(str(exc))) from None
    cfg = loaded.config
    trained_k = float(cfg.diffusion.k)
    if k is not None and not (math.isfinite(k) and 0.0 <= k <= 1.0):
        raise UserError(f"--k must be within [0, 1], got {k}")
    space = TokenSpace(int(loaded.num_tokens), trained_k if k is None else float(k))
    tok = open_tokenizer_from_spec(loaded.tokenizer_spec, loaded.num_tokens, device, tokenizer_checkpoint) \
        if load_tokenizer else None
    return SamplingModel(
        model=loaded.model, model_fn=make_model_fn(loaded.model, device), space=space, trained_k=trained_k,
        schedule=str(cfg.diffusion.schedule), pass_time=bool(cfg.model.time_conditioning),
        num_classes=int(loaded.num_classes), class_names=list(loaded.class_names),
        grid_shape=tuple(loaded.grid_shape), tokenizer=tok, device=device, path=Path(loaded.path),
        step=int(loaded.step), ema=bool(loaded.ema), meta=dict(loaded.meta),
    )


# ---------------------------------------------------------------------------------------------
# labels, seeds and argument checks


def sample_seeds(seed: int, num: int) -> list[int]:
    """Seeds of images 0..num-1: ``seed + i``."""
    return [int(seed) + i for i in range(num)]


def parse_classes(spec: str | int | Sequence[int], num: int, num_classes: int, seed: int = 0,
                  flag: str = "--class", class_names: Sequence[str] | None = None) -> list[int]:
    """Labels of ``num`` images from one id, a comma list (cycled) or ``random``.

    ``random`` draws image i's class from ``random.Random(seed + i)``, so — like the image — it
    depends only on that image's seed. Ids are checked against ``num_classes``. With
    ``class_names`` a list entry may also be a class name (``Sneaker``; see
    xdlm_vision/data/class_names.py).
    """
    if isinstance(spec, str) and spec.strip().lower() == "random":
        return [random.Random(s).randrange(num_classes) for s in sample_seeds(seed, num)]
    if isinstance(spec, int):
        ids = [spec]
    elif isinstance(spec, str):
        from xdlm_vision.data.class_names import resolve_class

        try:
            ids = [resolve_class(p, class_names, flag) for p in spec.split(",") if p.strip() != ""]
        except UserError:
            if class_names:
                raise
            raise UserError(f"{flag} must be a class id, a comma list of ids or 'random', got {spec!r}") from None
    else:
        ids = [int(v) for v in spec]
    if not ids:
        raise UserError(f"{flag} is empty; give a class id, a comma list or 'random'")
    bad = [c for c in ids if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"{flag} {bad[0]} is out of range: this checkpoint has {num_classes} classes (0..{num_classes - 1})")
    return [ids[i % len(ids)] for i in range(num)]


def check_sampling_args(steps: int, cfg: float, num: int = 1, batch_size: int = 1,
                        max_cfg: float | None = None) -> None:
    """UserError naming the flag for steps < 1, NaN/negative/too large CFG, num or batch < 1."""
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if not math.isfinite(cfg) or cfg < 0:
        raise UserError(f"--cfg must be a finite number >= 0 (XDLM gamma; LlamaGen/DiT scale = 1 + gamma), got {cfg}")
    if max_cfg is not None and cfg > max_cfg:
        raise UserError(f"--cfg must be <= {max_cfg}, got {cfg}")
    if num < 1:
        raise UserError(f"--num must be >= 1, got {num}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")


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


def sampler_steps(sm: SamplingModel, labels: Sequence[int], seeds: Sequence[int],
                  opts: SamplingOptions) -> Iterator[SamplerStep]:
    """The step stream of one batch (len(labels) images; image i uses its own seeds[i] generator)."""
    if opts.sampler not in SAMPLERS:
        raise UserError(f"unknown --sampler {opts.sampler!r}; choose one of {sorted(SAMPLERS)}")
    if len(labels) != len(seeds):
        raise ValueError("one seed per label is needed")
    kwargs = {
        "num_samples": len(labels),
        "seq_len": sm.seq_len,
        "space": sm.space,
        "num_steps": opts.steps,
        "class_labels": torch.tensor(list(labels), dtype=torch.long, device=sm.device),
        "cfg": GuidanceSchedule(float(opts.cfg), opts.cfg_schedule),
        "null_class": sm.null_class,
        "generator": seeded_generators(seeds),
        "device": sm.device,
        "track_x0": opts.track_x0,
        "pass_time": sm.pass_time,
    }
    if opts.sampler == "ancestral":
        kwargs["schedule"] = sm.schedule
    return SAMPLERS[opts.sampler](sm.model_fn, **kwargs)


def batches(n: int, batch_size: int) -> list[range]:
    """Index ranges of consecutive batches covering 0..n-1."""
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def generate(
    sm: SamplingModel,
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
        steps = sampler_steps(sm, [labels[i] for i in idx], [seeds[i] for i in idx], opts)
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
    return torch.cat(out).reshape(len(labels), *sm.grid_shape)  # (num, h, w)


# ---------------------------------------------------------------------------------------------
# decoding and saving


def decoder(tokenizer, device: torch.device | str = "cpu") -> Decode:
    """``decode(ids (B, h, w)) -> images (B, C, H, W)`` float32 in [-1, 1] on the CPU."""

    @torch.no_grad()
    def decode(ids: torch.Tensor) -> torch.Tensor:
        return tokenizer.decode(ids.to(device)).float().clamp(-1, 1).cpu()

    return decode


def decode_tokens(sm: SamplingModel, tokens: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Token grids (num, h, w) -> images (num, C, H, W) in [-1, 1], decoded in batches."""
    if sm.tokenizer is None:
        raise UserError("no tokenizer to decode with; pass --tokenizer-checkpoint")
    dec = decoder(sm.tokenizer, sm.device)
    return torch.cat([dec(tokens[i : i + batch_size]) for i in range(0, tokens.shape[0], batch_size)])


def save_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None, scale: int | None = None) -> Path:
    """PNG grid of (B, C, H, W) images in [-1, 1] (small images are upscaled, nearest)."""
    from xdlm_vision.viz import image_grid, save_png

    return save_png(image_grid(images, ncol=ncol, scale=scale), path)


def safe_name(text: str) -> str:
    """A class name reduced to [A-Za-z0-9_-] for file names."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "class"


def save_images(images: torch.Tensor, directory: str | Path, labels: Sequence[int], seeds: Sequence[int],
                class_names: Sequence[str] | None = None, scale: int = 1) -> list[Path]:
    """One PNG per image named ``{index:04d}_class{label}[_{name}]_seed{seed}.png``."""
    from PIL import Image

    from xdlm_vision.viz import save_png
    from xdlm_vision.viz.render import to_uint8, upscale

    directory = Path(directory)
    arrays = upscale(to_uint8(images), scale)
    paths = []
    for i, (arr, label, seed) in enumerate(zip(arrays, labels, seeds)):
        name = safe_name(class_names[label]) if class_names and label < len(class_names) else str(label)
        name = "" if name == str(label) else f"_{name}"
        paths.append(save_png(Image.fromarray(arr), directory / f"{i:04d}_class{label}{name}_seed{seed}.png"))
    return paths
