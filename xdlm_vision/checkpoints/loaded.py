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
    verify_checkpoint,
)
from xdlm_vision.checkpoints.packaged import PACKAGED, resolve_packaged
from xdlm_vision.config import Config, config_from_dict
from xdlm_vision.data.meta import DataMeta
from xdlm_vision.errors import UserError
from xdlm_vision.official import is_official_file, load_official

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
    naming ``flag``. An official XDLM file (``.ckpt``, state dict, EMA dict, safetensors export)
    is read by :mod:`xdlm_vision.official` and loads with its official process (docs/official.md).
    """
    path = resolve_packaged(path, flag)
    if is_official_file(path):  # the XDLM authors' released files (docs/official.md)
        om, record = load_official(path, ema=ema, flag=flag)
        cfg, data = _config_and_data(record, path, flag)
        return _loaded(om.model, cfg, data, record, Path(path), ema, device, k, int(record.get("step", 0)))
    ckpt = resolve_checkpoint_dir(path, flag)
    record = anchor_tokenizer_paths(read_checkpoint_config(ckpt, flag), ckpt)
    cfg, data = _config_and_data(record, ckpt, flag)
    step = verify_checkpoint(ckpt, record, flag=flag, weights=("ema.safetensors" if ema else "model.safetensors",))
    weights = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    if not weights.is_file():
        raise UserError(f"{flag} {ckpt} has no {weights.name}; this checkpoint only supports "
                        f"{'--no-ema' if ema else '--ema'}")
    model = build_model(cfg, data)
    load_weights(model, weights, flag)
    return _loaded(model, cfg, data, record, ckpt, ema, device, k, step)


def anchor_tokenizer_paths(record: dict, ckpt: Path) -> dict:
    """A tokenizer weights path recorded relative (a packaged checkpoint ships its VQ weights
    beside config.json) is read relative to the checkpoint directory; absolute paths are kept.
    Covers the tokenizer specs and the config's ``tokenizer.path`` (of VQ tokenizers only)."""

    def anchored(value):
        if isinstance(value, str) and value and not Path(value).is_absolute():
            return str((ckpt / value).resolve())
        return value

    def anchor(spec, key_of=(("llamagen", "checkpoint"), ("diffusers", "path"))):
        if not isinstance(spec, dict):
            return spec
        spec = {key: anchor(value) if key == "inner" else value for key, value in spec.items()}
        key = dict(key_of).get(spec.get("kind"))  # VQ weights files only
        if key:
            spec[key] = anchored(spec.get(key))
        return spec

    record = dict(record)
    if "tokenizer" in record:
        record["tokenizer"] = anchor(record["tokenizer"])
    if isinstance(record.get("data"), dict) and "tokenizer_spec" in record["data"]:
        record["data"] = {**record["data"], "tokenizer_spec": anchor(record["data"]["tokenizer_spec"])}
    if isinstance(record.get("config"), dict) and isinstance(record["config"].get("tokenizer"), dict):
        tok = record["config"]["tokenizer"]
        record["config"] = {**record["config"],
                            "tokenizer": anchor(tok, key_of=(("llamagen", "path"), ("diffusers", "path")))}
    return record


def _config_and_data(record: dict, where: str | Path, flag: str) -> tuple[Config, DataMeta]:
    try:
        return config_from_dict(record["config"]), DataMeta.from_dict(record["data"])
    except KeyError as exc:
        raise UserError(f"{flag} {where}: config.json lacks {exc}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{flag} {where}: config.json has a malformed entry ({exc.__class__.__name__}: "
                        f"{' '.join(str(exc).split())[:200]})") from None


def _loaded(model: nn.Module, cfg: Config, data: DataMeta, record: dict, path: Path, ema: bool,
            device: str | torch.device, k: float | None, step: int) -> LoadedModel:
    """The LoadedModel of weights already in ``model``; the diffusion spec is built from ``cfg``
    (for an official model: its N' tokens, k' and the loglinear schedule)."""
    device = torch.device(device)
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(
        model=model, model_fn=make_model_fn(model, device), config=cfg, spec=diffusion_spec(cfg, data.num_tokens, k),
        data=data, trained_k=float(cfg.diffusion.k), device=device, step=step, ema=ema,
        path=path, record=record,
    )
