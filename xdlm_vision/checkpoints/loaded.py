"""The one :class:`LoadedModel`: a checkpoint's backbone with everything needed to use it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdlm_vision.build import DiffusionSpec, ModelFn, build_model, diffusion_spec, make_model_fn
from xdlm_vision.checkpoints.files import (
    load_weights,
    read_checkpoint_config,
    resolve_checkpoint_dir,
)
from xdlm_vision.checkpoints.packaged import PACKAGED, resolve_packaged
from xdlm_vision.config import Config, config_from_dict
from xdlm_vision.data.meta import DataMeta
from xdlm_vision.errors import UserError

PACKAGED_CHECKPOINT = PACKAGED["digits"]


@dataclass
class LoadedModel:
    """A trained backbone ready for sampling/evaluation, with everything needed to use it.

    The one object every consumer (sample, eval, sample-text, the demo) works from. ``spec`` is the
    diffusion spec built once by :func:`xdlm_vision.build.diffusion_spec` (with the ``k`` override
    of the caller, if any); ``tokenizer`` is filled by :func:`xdlm_vision.sampling.load_for_sampling`.
    """

    model: nn.Module  # backbone in eval mode on ``device``
    model_fn: ModelFn  # xdlm_vision.build.make_model_fn(model, device)
    config: Config  # the run's config
    spec: DiffusionSpec  # token space (k used here), schedule, time conditioning
    data: DataMeta  # vocabulary, grid, classes, tokenizer spec
    trained_k: float  # k the model was trained with (spec.k differs only with an override)
    device: torch.device
    step: int  # optimizer step of the checkpoint
    ema: bool  # True if the EMA weights were loaded
    path: Path  # the step directory
    record: dict  # the parsed config.json
    tokenizer: Any = None  # decoder of the token grid (sampling only), or None

    @property
    def space(self):
        return self.spec.space

    @property
    def schedule(self) -> str:
        return self.spec.schedule_name

    @property
    def mask_id(self) -> int:
        return self.spec.space.mask_id

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    @property
    def null_class(self) -> int:
        return self.data.num_classes

    @property
    def class_names(self) -> list[str]:
        return list(self.data.class_names)

    @property
    def num_tokens(self) -> int:
        return self.data.num_tokens

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(self.data.grid_shape)

    @property
    def seq_len(self) -> int:
        return math.prod(self.data.grid_shape)

    @property
    def tokenizer_spec(self) -> dict:
        return dict(self.record.get("tokenizer", self.data.tokenizer_spec))

    @property
    def is_text(self) -> bool:
        return is_text_checkpoint(self.record)


def is_text_checkpoint(record: dict) -> bool:
    """True for a checkpoint's config.json (or its ``tokenizer`` spec) from a text run."""
    spec = record.get("tokenizer", record)
    return isinstance(spec, dict) and spec.get("kind") == "text"


def packaged_checkpoint() -> Path:
    """The small digits checkpoint shipped inside the package (EMA weights + config.json)."""
    return PACKAGED_CHECKPOINT


def load_checkpoint(
    path: str | Path | None, ema: bool = True, device: str | torch.device = "cpu", k: float | None = None,
    flag: str = "--checkpoint",
) -> LoadedModel:
    """Rebuild the backbone of a checkpoint and load its EMA (default) or raw weights.

    ``path`` may be a step directory, a run directory or its ``checkpoints/`` folder (the latest
    checkpoint is used); None is the packaged digits checkpoint and ``packaged:NAME`` another
    packaged one (:mod:`xdlm_vision.checkpoints.packaged`). ``k`` overrides the trained
    mixing ratio (``--k``, checked by the command). Missing or corrupt files raise UserError
    naming ``flag``.
    """
    path = resolve_packaged(path, flag)
    device = torch.device(device)
    ckpt = resolve_checkpoint_dir(path, flag)
    record = read_checkpoint_config(ckpt, flag)
    try:
        cfg = config_from_dict(record["config"])
        data = DataMeta.from_dict(record["data"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{flag} {ckpt}: config.json lacks {exc}") from None
    weights = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    if not weights.is_file():
        raise UserError(f"{flag} {ckpt} has no {weights.name}; this checkpoint only supports "
                        f"{'--no-ema' if ema else '--ema'}")
    model = build_model(cfg, data)
    load_weights(model, weights, flag)
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(
        model=model, model_fn=make_model_fn(model, device), config=cfg, spec=diffusion_spec(cfg, data.num_tokens, k),
        data=data, trained_k=float(cfg.diffusion.k), device=device, step=int(record.get("step", 0)), ema=ema,
        path=ckpt, record=record,
    )
