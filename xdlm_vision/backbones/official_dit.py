"""The XDLM authors' DiT, rebuilt module for module so their released weights load with strict=True.

Two classes:

- :class:`OfficialDiT`: the official network with the official interface,
  ``forward(ids (B, L) in 0..V-1, sigma (B,), labels (B,) in 0..C) -> logits (B, L, V)``, where
  ``V = N + 3`` (codes ``0..N-1``, [MASK] = ``N``, two special ids ``N+1``, ``N+2``). Its parameter
  names, shapes and order are the official ones (``named_parameters()`` order = the order of the
  EMA ``shadow_params`` list).
- :class:`OfficialDiTBackbone`: the same module tree (same state-dict keys) presented as an
  ordinary xdlm-vision backbone over the *official process* token space of ``docs/official.md``:
  ``N' = N + 2`` data states (the codes, then the two special ids) and the mask at id ``N'``.
  ``forward(z (B, L) in 0..N', class_labels, t) -> logits (B, L, N')`` permutes the ids into the
  official layout, runs the official network and drops/reorders the logit columns.

Architecture (see ``docs/official.md`` for the differences from :mod:`xdlm_vision.backbones.dit`):
a bare ``(V, D)`` embedding table, no absolute positions but 1-D rotary embeddings (half-split,
base 10^4) on q and k; the conditioning vector has its own width ``cond_dim`` and is
``silu(sigma_map(sigma) + y_embedder(label))``; pre-norm adaLN blocks with bias-free LayerNorms
that keep a learned weight, bias-free attention projections and a biased tanh-GELU MLP; a
LayerNorm + adaLN (shift, scale) + biased linear head with V columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.backbones.common import check_tokens, resolve_labels, resolve_time
from xdlm_vision.errors import UserError

SIGMA_FREQUENCIES = 256  # width of the sinusoidal sigma features (fixed in the official code)
LOGLINEAR_EPS = 1e-3  # official schedule alpha_t = 1 - (1 - eps) t


class OfficialVocab:
    """The official vocabulary of a config whose ``num_tokens`` is N' = N + 2 (codes + 2 special ids)."""

    num_tokens: int

    @property
    def vocab_size(self) -> int:
        """V = N' + 1 = N + 3: rows of the official embedding and columns of its head."""
        return self.num_tokens + 1

    @property
    def num_codes(self) -> int:
        """N: the codes; also the official mask id."""
        return self.num_tokens - 2


def official_sigma(time_conditioning: bool, t: torch.Tensor | None, batch: int, device) -> torch.Tensor:
    """sigma fed to an official backbone: 0 (official XDLM), or -log alpha_t of the log-linear schedule."""
    if not time_conditioning:
        return torch.zeros(batch, device=device)
    tt = resolve_time(t, batch, device).double()  # (B,)
    return -torch.log1p(-(1.0 - LOGLINEAR_EPS) * tt).float()


@dataclass
class OfficialDiTConfig(OfficialVocab):
    """Official DiT architecture. ``num_tokens`` is N' = N + 2 (official vocabulary V = N' + 1)."""

    num_tokens: int = 16386  # N' data states of the official process (N codes + 2 special ids)
    grid_shape: tuple[int, ...] = (16, 16)  # token grid, flattened row-major (1-D rotary positions)
    num_classes: int = 1000  # C; label C is the null class (row C of y_embedder)
    hidden_size: int = 768  # D
    n_blocks: int = 12  # transformer blocks
    n_heads: int = 12  # attention heads (D must divide evenly)
    cond_dim: int = 128  # width of the conditioning vector c (differs from D)
    mlp_ratio: int = 4  # MLP hidden size = mlp_ratio * D
    dropout: float = 0.1  # residual dropout in training (the official default); no effect in eval
    time_conditioning: bool = False  # official XDLM feeds sigma = 0; True feeds sigma = -log alpha_t


# "small" is the released ImageNet model (117,695,619 parameters); "tiny" the test fixture.
OFFICIAL_DIT_SIZES: dict[str, dict] = {
    "small": {"hidden_size": 768, "n_blocks": 12, "n_heads": 12, "cond_dim": 128},
    "tiny": {"hidden_size": 32, "n_blocks": 2, "n_heads": 4, "cond_dim": 16},
}
DEFAULT_OFFICIAL_DIT_SIZE = "small"


class BiasFreeLayerNorm(nn.Module):
    """LayerNorm without bias, computed in float32, times a learned weight (official ``LayerNorm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = F.layer_norm(x.float(), [self.dim])  # (B, L, D) float32
        return y * self.weight[None, None, :]


class SigmaEmbedder(nn.Module):
    """sigma (B,) -> (B, cond): [cos | sin] features (max period 1e4, sigma not rescaled) + MLP."""

    def __init__(self, cond_dim: int, frequency_dim: int = SIGMA_FREQUENCIES) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]  # (B, half)
        feats = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, F)
        return self.mlp(feats)  # (B, cond)


class LabelTable(nn.Module):
    """Class embedding with C + 1 rows (row C = null class); the official ``y_embedder``."""

    def __init__(self, num_classes: int, cond_dim: int) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + 1, cond_dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.embedding_table(labels)  # (B, cond)


class VocabEmbedding(nn.Module):
    """A bare (V, D) parameter indexed by the ids (official ``vocab_embed``)."""

    def __init__(self, vocab_size: int, dim: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(vocab_size, dim))
        nn.init.kaiming_uniform_(self.embedding, a=math.sqrt(5))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embedding[ids]  # (B, L, D)


class Rotary(nn.Module):
    """1-D rotary tables over positions 0..L-1 (base 10^4); ``inv_freq`` is a saved buffer."""

    def __init__(self, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))  # (Dh/2,)
        self.register_buffer("inv_freq", inv_freq)

    def forward(self, seq_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(seq_len, device=device, dtype=self.inv_freq.dtype)  # (L,)
        freqs = torch.outer(pos, self.inv_freq)  # (L, Dh/2)
        return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split (NeoX) rotation of x (B, L, H, Dh) by cos/sin (L, Dh/2), in float32."""
    half = x.shape[-1] // 2
    x1, x2 = x.float()[..., :half], x.float()[..., half:]  # (B, L, H, Dh/2)
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1).to(x.dtype)


class OfficialBlock(nn.Module):
    """Pre-norm adaLN block: x + gate * attn(mod(norm1 x)), then x + gate * mlp(mod(norm2 x))."""

    def __init__(self, dim: int, n_heads: int, cond_dim: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = BiasFreeLayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.dropout1 = nn.Dropout(dropout)
        self.norm2 = BiasFreeLayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim)
        )
        self.dropout2 = nn.Dropout(dropout)
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)

    def forward(self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor], c: torch.Tensor) -> torch.Tensor:
        b, l, d = x.shape
        mods = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)  # 6 x (B, 1, D)
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
        h = self.norm1(x) * (1 + scale_a) + shift_a  # (B, L, D)
        qkv = self.attn_qkv(h).reshape(b, l, 3, self.n_heads, d // self.n_heads)  # (B, L, 3, H, Dh)
        q = apply_rotary(qkv[:, :, 0], *rotary)  # (B, L, H, Dh)
        k = apply_rotary(qkv[:, :, 1], *rotary)
        v = qkv[:, :, 2]
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, H, L, Dh)
        att = att.transpose(1, 2).reshape(b, l, d)  # (B, L, D)
        x = x + gate_a * self.dropout1(self.attn_out(att))
        h = self.norm2(x) * (1 + scale_m) + shift_m
        return x + gate_m * self.dropout2(self.mlp(h))  # (B, L, D)


class OfficialFinalLayer(nn.Module):
    """norm_final -> adaLN (shift, scale) -> linear to V logits (with bias)."""

    def __init__(self, dim: int, cond_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.norm_final = BiasFreeLayerNorm(dim)
        self.linear = nn.Linear(dim, vocab_size)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)  # 2 x (B, 1, D)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)  # (B, L, V)


class OfficialDiT(nn.Module):
    """The official DiT with the official interface (ids over V = N + 3, V logit columns)."""

    def __init__(self, config: OfficialDiTConfig) -> None:
        super().__init__()
        if config.hidden_size % config.n_heads or (config.hidden_size // config.n_heads) % 2:
            raise UserError(f"hidden_size {config.hidden_size} must split into {config.n_heads} heads "
                            "of even size")
        self.config = config
        self.num_classes = int(config.num_classes)
        self.grid_shape = tuple(config.grid_shape)
        self.seq_len = math.prod(self.grid_shape)
        d, cond = config.hidden_size, config.cond_dim
        # registration order = official named_parameters() order = EMA shadow_params order
        self.vocab_embed = VocabEmbedding(config.vocab_size, d)
        self.sigma_map = SigmaEmbedder(cond)
        self.y_embedder = LabelTable(config.num_classes, cond)
        self.rotary_emb = Rotary(d // config.n_heads)
        self.blocks = nn.ModuleList(
            OfficialBlock(d, config.n_heads, cond, config.mlp_ratio, config.dropout) for _ in range(config.n_blocks)
        )
        self.output_layer = OfficialFinalLayer(d, cond, config.vocab_size)

    def official_forward(self, ids: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ids (B, L) int64 in 0..V-1, sigma (B,), labels (B,) in 0..C -> logits (B, L, V) float32."""
        x = self.vocab_embed(ids)  # (B, L, D)
        c = F.silu(self.sigma_map(sigma) + self.y_embedder(labels))  # (B, cond)
        rotary = self.rotary_emb(ids.shape[1], ids.device)
        for block in self.blocks:
            x = block(x, rotary, c)
        return self.output_layer(x, c).float()  # (B, L, V)

    def forward(self, ids: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.official_forward(ids, sigma, labels)


def official_ids(z: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Our official-process ids -> official ids: codes stay, N -> N+1, N+1 -> N+2, mask N+2 -> N."""
    n = num_codes
    out = torch.where(z >= n, z + 1, z)  # (B, L): N -> N+1, N+1 -> N+2
    return torch.where(z == n + 2, torch.full_like(z, n), out)


def our_columns(num_codes: int) -> list[int]:
    """Official logit columns in the order of our N' = N + 2 data states (the mask column dropped)."""
    return list(range(num_codes)) + [num_codes + 1, num_codes + 2]


class OfficialDiTBackbone(OfficialDiT):
    """:class:`OfficialDiT` as an xdlm-vision backbone over the official-process token space.

    ``num_tokens`` = N' = N + 2 (mask id N'), so the core's XDLM process with
    ``k' = k1 (N + 2) / (N + 3)`` is exactly the official one (``docs/official.md``). Time: sigma = 0
    unless ``time_conditioning``, then sigma = -log alpha_t of the official log-linear schedule.
    """

    def __init__(self, config: OfficialDiTConfig) -> None:
        super().__init__(config)
        self.num_tokens = int(config.num_tokens)
        self.register_buffer("columns", torch.tensor(our_columns(config.num_codes)), persistent=False)

    def forward(self, z: torch.Tensor, class_labels: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, L) ids in 0..N' (N' = mask), labels (B,) or None (null), t (B,) -> (B, L, N')."""
        check_tokens(z, self.seq_len)
        b = z.shape[0]
        labels = resolve_labels(class_labels, b, self.num_classes, z.device)  # (B,)
        sigma = official_sigma(self.config.time_conditioning, t, b, z.device)  # (B,)
        logits = self.official_forward(official_ids(z.long(), self.config.num_codes), sigma, labels)  # (B, L, V)
        return logits.index_select(-1, self.columns)  # (B, L, N')
