"""Class-conditional DiT over token sequences (Peebles & Xie 2023, adapted to discrete tokens).

Token ids ``0..N`` (``N`` = [MASK]) are embedded with an ``N+1``-row table, a fixed sin-cos position
embedding is added (2-D for (h, w) grids, 1-D for sequences), and adaLN-Zero blocks are
conditioned on the class embedding (``C+1`` rows, the last one is the null class used for label
dropout and CFG), plus a timestep embedding when ``time_conditioning`` is on. The head maps to
``N`` logits per position; no mask column. There is no patchify step: every token is one position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.backbones.common import (
    TimestepEmbedder,
    check_tokens,
    resolve_labels,
    resolve_time,
    sincos_position_embedding,
)
from xdlm_vision.errors import UserError


@dataclass
class DiTConfig:
    """Architecture of a DiT; the vocabulary/grid/classes come from the data, the rest from a size."""

    num_tokens: int = 17  # N data tokens; input ids 0..N (N = [MASK]); head has N columns
    grid_shape: tuple[int, ...] = (8, 8)  # (h, w) token grid, or (L,) for 1-D sequences
    num_classes: int = 10  # C classes; id C is the null class; 0 = unconditional
    depth: int = 12  # number of transformer blocks
    width: int = 384  # hidden size
    heads: int = 6  # attention heads (width must divide evenly)
    mlp_ratio: float = 4.0  # MLP hidden size = mlp_ratio * width
    dropout: float = 0.0  # dropout on attention probabilities and MLP activations
    time_conditioning: bool = False  # add a timestep embedding to the conditioning vector


# (depth, width, heads) per size name; "small" is the XDLM paper's ImageNet model.
DIT_SIZES: dict[str, dict] = {
    "DiT-tiny": {"depth": 2, "width": 32, "heads": 2},  # tests
    "DiT-digits": {"depth": 4, "width": 128, "heads": 4},  # 8x8 digits on a 2-core CPU
    "DiT-S": {"depth": 12, "width": 384, "heads": 6},
    "DiT-B": {"depth": 12, "width": 768, "heads": 12},
    "DiT-L": {"depth": 24, "width": 1024, "heads": 16},
    "DiT-XL": {"depth": 28, "width": 1152, "heads": 16},
    "small": {"depth": 12, "width": 768, "heads": 12},
}
DEFAULT_DIT_SIZE = "DiT-S"


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation: x (B, L, D), shift/scale (B, D) -> (B, L, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    """Multi-head self-attention through ``F.scaled_dot_product_attention`` (flash/mem-efficient
    kernels on GPU, bf16-friendly)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        qkv = self.qkv(x).reshape(b, l, 3, self.heads, d // self.heads)  # (B, L, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, Dh)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, l, d))  # (B, L, D)


class DiTBlock(nn.Module):
    """Pre-norm transformer block with adaLN-Zero: the conditioning vector predicts shift, scale
    and a gate for both the attention and the MLP branch; the gates start at zero."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        from timm.layers import GELUTanh, Mlp

        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio), act_layer=GELUTanh,
                       drop=dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x (B, L, D), c (B, D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        x = x + gate_a[:, None] * self.attn(modulate(self.norm1(x), shift_a, scale_a))  # (B, L, D)
        x = x + gate_m[:, None] * self.mlp(modulate(self.norm2(x), shift_m, scale_m))  # (B, L, D)
        return x


class FinalLayer(nn.Module):
    """adaLN-modulated LayerNorm then a linear head to N logits."""

    def __init__(self, width: int, num_tokens: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.linear = nn.Linear(width, num_tokens)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)  # (B, D) each
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, L, N)


class DiT(nn.Module):
    """Token-grid DiT: forward(z (B, L) int64, class_labels (B,) | None, t (B,) | None) -> (B, L, N)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        if config.width % config.heads:
            raise UserError(f"DiT width={config.width} is not divisible by heads={config.heads}; "
                            "change the width or heads override")
        if config.depth < 1:
            raise UserError(f"DiT depth must be >= 1, got {config.depth}")
        self.config = config
        self.num_tokens = config.num_tokens
        self.num_classes = config.num_classes
        self.grid_shape = tuple(config.grid_shape)
        self.seq_len = math.prod(self.grid_shape)
        d = config.width

        self.token_embed = nn.Embedding(config.num_tokens + 1, d)  # row N = [MASK]
        self.class_embed = nn.Embedding(config.num_classes + 1, d)  # row C = null class
        self.time_embed = TimestepEmbedder(d) if config.time_conditioning else None
        self.register_buffer("pos_embed", sincos_position_embedding(self.grid_shape, d)[None],
                             persistent=False)  # (1, L, D), fixed
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.depth)
        )
        self.final = FinalLayer(d, config.num_tokens)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier linears, N(0, 0.02) embeddings, zero adaLN and zero head."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.class_embed.weight, std=0.02)
        if self.time_embed is not None:
            for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)  # logits start uniform
        nn.init.zeros_(self.final.linear.bias)

    def conditioning(self, batch: int, class_labels: torch.Tensor | None, t: torch.Tensor | None,
                     device: torch.device) -> torch.Tensor:
        """Conditioning vector (B, D): class embedding (+ time embedding when enabled)."""
        labels = resolve_labels(class_labels, batch, self.num_classes, device)  # (B,)
        c = self.class_embed(labels)  # (B, D)
        if self.time_embed is not None:
            c = c + self.time_embed(resolve_time(t, batch, device))  # (B, D)
        return c

    def forward(self, z: torch.Tensor, class_labels: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, L) ids in 0..N, class_labels (B,) in 0..C (None -> null), t (B,) -> logits (B, L, N)."""
        check_tokens(z, self.seq_len)
        c = self.conditioning(z.shape[0], class_labels, t, z.device)  # (B, D)
        x = self.token_embed(z)  # (B, L, D)
        x = x + self.pos_embed.to(x.dtype)  # (B, L, D)
        for block in self.blocks:
            x = block(x, c)  # (B, L, D)
        return self.final(x, c)  # (B, L, N)
