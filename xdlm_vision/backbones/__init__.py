"""Backbones: networks mapping token ids (B, L) (+ class labels, + optional time) to logits (B, L, N).

Public API::

    build_backbone(kind, *, num_tokens, grid_shape, num_classes, size=None,
                   time_conditioning=False, **overrides) -> nn.Module
    backbone_names() -> {kind: [size names]}
    count_parameters(model) -> int

A new backbone is a new file with a config dataclass, a size table and a module class, plus one
entry in ``BACKBONES``. Every built module has ``.num_tokens``, ``.seq_len``, ``.num_classes``,
``.grid_shape`` and ``.config`` (a dataclass; ``dataclasses.asdict`` gives its JSON form) and
``forward(z, class_labels=None, t=None) -> logits (B, L, N)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from xdlm_vision.backbones.common import apply_overrides, check_grid_shape, check_vocab
from xdlm_vision.backbones.dit import DEFAULT_DIT_SIZE, DIT_SIZES, DiT, DiTConfig
from xdlm_vision.backbones.official_dit import (
    DEFAULT_OFFICIAL_DIT_SIZE,
    OFFICIAL_DIT_SIZES,
    OfficialDiTBackbone,
    OfficialDiTConfig,
)
from xdlm_vision.backbones.official_unet import (
    DEFAULT_OFFICIAL_UNET_SIZE,
    OFFICIAL_UNET_SIZES,
    OfficialUNetBackbone,
    OfficialUNetConfig,
)
from xdlm_vision.backbones.unet import DEFAULT_UNET_SIZE, UNET_SIZES, UNet, UNetConfig
from xdlm_vision.errors import UserError

TUPLE_FIELDS = ("grid_shape", "ch_mult", "attn_resolutions")  # YAML gives lists; configs hold tuples
FIXED_FIELDS = frozenset({"num_tokens", "grid_shape", "num_classes", "time_conditioning"})  # not overrides


@dataclass(frozen=True)
class BackboneSpec:
    """Registry entry: config class, size table, default size and the module constructor."""

    config_cls: type
    sizes: dict[str, dict]
    default_size: str
    build: Callable[[object], nn.Module]


BACKBONES: dict[str, BackboneSpec] = {
    "dit": BackboneSpec(DiTConfig, DIT_SIZES, DEFAULT_DIT_SIZE, DiT),
    "unet": BackboneSpec(UNetConfig, UNET_SIZES, DEFAULT_UNET_SIZE, UNet),
    # the XDLM authors' networks, for their released weights (docs/official.md)
    "official_dit": BackboneSpec(OfficialDiTConfig, OFFICIAL_DIT_SIZES, DEFAULT_OFFICIAL_DIT_SIZE,
                                 OfficialDiTBackbone),
    "official_unet": BackboneSpec(OfficialUNetConfig, OFFICIAL_UNET_SIZES, DEFAULT_OFFICIAL_UNET_SIZE,
                                  OfficialUNetBackbone),
}


def backbone_names() -> dict[str, list[str]]:
    """Backbone kind -> its size names."""
    return {kind: list(spec.sizes) for kind, spec in BACKBONES.items()}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (buffers such as fixed position tables excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resolve_config(kind: str, *, num_tokens: int, grid_shape: tuple[int, ...], num_classes: int,
                   size: str | None = None, time_conditioning: bool = False, **overrides):
    """The config dataclass that ``build_backbone`` would build, without building the module."""
    if kind not in BACKBONES:
        raise UserError(f"unknown backbone {kind!r}; choose one of {sorted(BACKBONES)}")
    spec = BACKBONES[kind]
    size = spec.default_size if size is None else size
    if size not in spec.sizes:
        raise UserError(f"unknown {kind} size {size!r}; choose one of {list(spec.sizes)}")
    check_vocab(int(num_tokens), int(num_classes))
    config = spec.config_cls(num_tokens=int(num_tokens), grid_shape=check_grid_shape(grid_shape),
                             num_classes=int(num_classes), time_conditioning=bool(time_conditioning))
    clash = sorted(FIXED_FIELDS & set(overrides))
    if clash:
        raise UserError(f"{clash} are set from the data/flags, not as {kind} size overrides")
    config = apply_overrides(config, dict(spec.sizes[size]), kind, FIXED_FIELDS)
    config = apply_overrides(config, overrides, kind, FIXED_FIELDS)
    for name in TUPLE_FIELDS:
        if hasattr(config, name):
            setattr(config, name, tuple(int(v) for v in getattr(config, name)))
    return config


def build_backbone(kind: str, *, num_tokens: int, grid_shape: tuple[int, ...], num_classes: int,
                   size: str | None = None, time_conditioning: bool = False, **overrides) -> nn.Module:
    """Build a backbone of ``kind`` ("dit" | "unet") at a named size with field overrides.

    num_tokens: N data tokens (inputs 0..N, N = [MASK]; N output columns).
    grid_shape: (h, w) token grid (row-major, L = h*w) or (L,) for sequences; for the U-Net the
        PixelTokenizer grid (H, W*channels).
    num_classes: C (null class = C; 0 = unconditional).
    size: a name from ``backbone_names()[kind]`` (None -> "DiT-S" / "unet-cifar").
    overrides: config fields, e.g. depth/width/heads/mlp_ratio/dropout for the DiT or
        channels/ch/ch_mult/num_res_blocks/attn_resolutions/heads/dropout/output for the U-Net.
    Unknown kinds, sizes or override names raise ``UserError`` listing the valid ones.
    """
    config = resolve_config(kind, num_tokens=num_tokens, grid_shape=grid_shape, num_classes=num_classes,
                            size=size, time_conditioning=time_conditioning, **overrides)
    return BACKBONES[kind].build(config)


__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "DiT",
    "DiTConfig",
    "OfficialDiTBackbone",
    "OfficialDiTConfig",
    "OfficialUNetBackbone",
    "OfficialUNetConfig",
    "UNet",
    "UNetConfig",
    "backbone_names",
    "build_backbone",
    "count_parameters",
    "resolve_config",
]
