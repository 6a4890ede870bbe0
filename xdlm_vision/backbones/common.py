"""Pieces shared by every backbone: input checks, conditioning embeddings, position embeddings.

Conditioning convention (docs/backbones.md): classes ``0..C-1``, the null class is id ``C``; with
``num_classes = 0`` the model is unconditional and every label is mapped to the single null row.
The timestep is ignored unless time conditioning is switched on (the paper feeds a zero timestep).
"""

from __future__ import annotations

import math
from dataclasses import fields

import torch
from torch import nn

from xdlm_vision.errors import UserError


def apply_overrides(config, overrides: dict, what: str, exclude: frozenset = frozenset()):
    """Return ``config`` with the fields in ``overrides`` replaced; unknown names -> UserError.

    ``config`` is a dataclass instance; ``what`` names the backbone in the message; ``exclude``
    are fields that may not be overridden (set from the data instead).
    """
    valid = sorted(f.name for f in fields(config) if f.init and f.name not in exclude)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise UserError(f"unknown {what} option(s) {unknown}; valid options: {valid}")
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def check_tokens(z: torch.Tensor, seq_len: int) -> None:
    """Shape/dtype check of the (B, L) token input (no value check: that would sync a GPU)."""
    if z.ndim != 2 or z.shape[1] != seq_len:
        raise UserError(f"backbone expects token ids of shape (B, {seq_len}), got {tuple(z.shape)}")
    if z.dtype not in (torch.int64, torch.int32):
        raise UserError(f"backbone expects integer token ids, got dtype {z.dtype}")


def resolve_labels(class_labels: torch.Tensor | None, batch: int, num_classes: int,
                   device: torch.device) -> torch.Tensor:
    """(B,) int64 labels with None -> null class ``C``; unconditional models use the null row only."""
    if class_labels is None or num_classes == 0:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)  # (B,)
    if class_labels.shape != (batch,):
        raise UserError(f"class_labels must have shape ({batch},), got {tuple(class_labels.shape)}")
    return class_labels.long()


def resolve_time(t: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    """(B,) float times; None -> zeros (the paper's zero timestep); a scalar is broadcast."""
    if t is None:
        return torch.zeros(batch, device=device)
    t = torch.as_tensor(t, device=device, dtype=torch.float32)
    return t.expand(batch) if t.ndim == 0 else t.reshape(batch)


def timestep_frequencies(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of scalar times: t (B,) -> (B, dim), [cos | sin] halves.

    ``t`` in [0, 1] is scaled by 1000 so the frequencies cover the range the usual
    integer-timestep embeddings were tuned for.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, dim)
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, dim): sinusoidal features followed by a two-layer SiLU MLP."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freqs = timestep_frequencies(t, self.frequency_dim)  # (B, F)
        return self.mlp(freqs.to(self.mlp[0].weight.dtype))  # (B, dim)


def sincos_1d(length: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 1-D sin-cos position embedding (L, dim): [sin | cos] halves, as in the Transformer."""
    half = dim // 2
    omega = 1.0 / temperature ** (torch.arange(half, dtype=torch.float64) / max(half, 1))  # (half,)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * omega[None]  # (L, half)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (L, 2*half)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(length, 1, dtype=emb.dtype)], dim=-1)  # (L, dim)
    return emb.float()


def sincos_position_embedding(grid_shape: tuple[int, ...], dim: int) -> torch.Tensor:
    """Fixed position embedding (L, dim) for a row-major grid: 2-D sin-cos for (h, w), 1-D for (L,).

    The 2-D table comes from timm's ``build_sincos2d_pos_embed`` (a quarter of the channels per
    sin/cos and axis, row-major (h, w) order matching the token flattening).
    """
    if len(grid_shape) == 1:
        return sincos_1d(grid_shape[0], dim)
    if len(grid_shape) == 2:
        if dim % 4:
            raise UserError(f"DiT width must be divisible by 4 for a 2-D position embedding, got {dim}")
        from timm.layers import build_sincos2d_pos_embed

        return build_sincos2d_pos_embed(list(grid_shape), dim=dim)  # (h*w, dim)
    raise UserError(f"grid_shape must be (h, w) or (L,), got {grid_shape}")


def check_grid_shape(grid_shape) -> tuple[int, ...]:
    """Normalise and validate grid_shape -> tuple of positive ints of length 1 or 2."""
    try:
        shape = tuple(int(s) for s in grid_shape)
    except TypeError as exc:
        raise UserError(f"grid_shape must be a tuple (h, w) or (L,), got {grid_shape!r}") from exc
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise UserError(f"grid_shape must be (h, w) or (L,) with positive sizes, got {grid_shape!r}")
    return shape


def check_vocab(num_tokens: int, num_classes: int) -> None:
    if num_tokens < 2:
        raise UserError(f"num_tokens must be >= 2, got {num_tokens}")
    if num_classes < 0:
        raise UserError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}")
