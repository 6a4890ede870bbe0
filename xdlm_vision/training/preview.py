"""The sample grid a run writes now and then: one row per class, drawn from the EMA weights.

Sampling is :func:`xdlm_vision.sampling.generate` (sample i uses seed ``sampling.seed + i``),
the PNG is :func:`xdlm_vision.viz.save_grid`: the same code and the same upscale rule as
``xdlm-vision sample``. A run over VQ codes whose tokenizer weights are unknown gets no grid; the
reason is returned so that the trainer can log it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xdlm_vision.build import make_model_fn
from xdlm_vision.checkpoints import LoadedModel
from xdlm_vision.config import Config
from xdlm_vision.core import DiffusionSpec
from xdlm_vision.data.meta import DataMeta
from xdlm_vision.errors import UserError
from xdlm_vision.sampling import SamplingOptions, decode_tokens, generate, sample_seeds
from xdlm_vision.tokenizers import load_tokenizer
from xdlm_vision.viz import save_grid


@dataclass
class Preview:
    path: Path | None  # the PNG written, or None
    skipped: str = ""  # why no PNG was written


def grid_classes(cfg: Config, num_classes: int) -> list[int]:
    """Classes shown in the sample grid: ``sampling.classes`` or up to 10 evenly spaced ones."""
    if cfg.sampling.classes:
        bad = [c for c in cfg.sampling.classes if c >= num_classes]
        if bad:
            raise UserError(f"sampling.classes {bad} out of range for {num_classes} classes")
        return list(cfg.sampling.classes)
    count = min(num_classes, 10)
    return [int(i * num_classes / count) for i in range(count)]


@torch.no_grad()
def save_preview(model: nn.Module, cfg: Config, data: DataMeta, spec: DiffusionSpec, path: Path) -> Preview:
    """Sample ``sampling.per_class`` images of each grid class with ``model`` (the EMA weights) and
    save them as one PNG, one row per class."""
    if data.tokenizer_spec.get("kind") == "text" or data.num_classes == 0:
        return Preview(None, "this run has no image classes to show (a text run)")
    device = next(model.parameters()).device
    try:
        tokenizer = load_tokenizer(data.tokenizer_spec, device=device)
    except (UserError, KeyError, OSError) as exc:  # e.g. VQ codes whose weights were never given
        return Preview(None, f"cannot open the tokenizer ({exc}); set tokenizer.path=...")
    lm = LoadedModel(model=model, model_fn=make_model_fn(model, device), config=cfg, spec=spec, data=data,
                     trained_k=spec.k, device=device, step=0, ema=True, path=path.parent, record={},
                     tokenizer=tokenizer)
    labels = [c for c in grid_classes(cfg, data.num_classes) for _ in range(cfg.sampling.per_class)]
    opts = SamplingOptions(steps=cfg.sampling.num_steps, cfg=cfg.sampling.cfg, sampler="ancestral")
    was_training = model.training
    model.eval()
    try:
        tokens = generate(lm, labels, sample_seeds(cfg.sampling.seed, len(labels)), opts, batch_size=len(labels))
    finally:
        model.train(was_training)
    images = decode_tokens(lm, tokens, batch_size=len(labels))  # (B, C, H, W) in [-1, 1]
    return Preview(save_grid(images, path, ncol=cfg.sampling.per_class))
