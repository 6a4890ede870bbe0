"""The LlamaGen VQ-VAE architecture (Sun et al. 2024, "Autoregressive Model Beats Diffusion").

Written from the published architecture description so that module names match LlamaGen's
``vq_ds16_c2i.pt`` state dict exactly (``encoder.conv_blocks.{i}.res.{j}.conv1.weight``, ...);
the reference listing is tests/data/llamagen_vq16_state_dict.tsv. Facts this file follows:

- GroupNorm (32 groups, eps 1e-6) + SiLU before every conv; ResnetBlock with a 1x1
  ``nin_shortcut`` when the width changes; single-head AttnBlock with 1x1 q/k/v/proj_out convs.
- Encoder: conv_in, one level per ``ch_mult`` entry (res blocks, attention after each res block at
  the lowest resolution only, stride-2 conv with (0, 1, 0, 1) zero padding between levels),
  mid = [res, attn, res], GroupNorm + SiLU + conv_out to ``z_channels``.
- Decoder mirrors it from the lowest resolution up (nearest 2x upsample + conv between levels).
- Quantiser: with ``codebook_l2_norm`` both latents and codebook rows are L2-normalised and the
  nearest row (squared distance) is picked; decoding looks up the **normalised** rows.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.tokenizers.llamagen_config import LlamaGenVQConfig

USAGE_BUFFER_SIZE = 65536  # length of LlamaGen's quantize.codebook_used buffer (unused here)


def _norm(channels: int, cfg: LlamaGenVQConfig) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.norm_groups, channels, eps=cfg.norm_eps, affine=True)


class ResnetBlock(nn.Module):
    """x + conv(silu(norm(conv(silu(norm(x)))))), with a 1x1 shortcut when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch, cfg)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = _norm(out_ch, cfg)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if in_ch != out_ch:
            self.nin_shortcut = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, out, H, W)
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)  # (B, out, H, W)
        return x + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with 1x1 conv projections and a residual."""

    def __init__(self, ch: int, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.norm = _norm(ch, cfg)
        self.q = nn.Conv2d(ch, ch, 1)
        self.k = nn.Conv2d(ch, ch, 1)
        self.v = nn.Conv2d(ch, ch, 1)
        self.proj_out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        q = self.q(hn).reshape(b, c, h * w).transpose(1, 2)  # (B, HW, C)
        k = self.k(hn).reshape(b, c, h * w)  # (B, C, HW)
        v = self.v(hn).reshape(b, c, h * w)  # (B, C, HW)
        attn = torch.softmax(torch.bmm(q, k) * c**-0.5, dim=2)  # (B, HW_q, HW_k)
        out = torch.bmm(v, attn.transpose(1, 2)).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero padding one pixel on the right and bottom."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    """Nearest-neighbour 2x upsample (in float32) followed by a 3x3 conv."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype)  # (B, C, 2H, 2W)
        return self.conv(up)


class _Level(nn.Module):
    """One resolution level: ``res`` blocks, optional ``attn`` blocks, optional resampler.

    The resampler is registered as ``downsample`` or ``upsample`` (the names in the state dict).
    """

    def __init__(self, in_ch: int, out_ch: int, n_res: int, attn: bool, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.res = nn.ModuleList(ResnetBlock(in_ch if j == 0 else out_ch, out_ch, cfg) for j in range(n_res))
        self.attn = nn.ModuleList(AttnBlock(out_ch, cfg) for _ in range(n_res if attn else 0))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for j, block in enumerate(self.res):
            h = block(h)
            if len(self.attn):
                h = self.attn[j](h)
        if hasattr(self, "downsample"):
            h = self.downsample(h)
        if hasattr(self, "upsample"):
            h = self.upsample(h)
        return h


def _mid(ch: int, cfg: LlamaGenVQConfig) -> nn.ModuleList:
    return nn.ModuleList([ResnetBlock(ch, ch, cfg), AttnBlock(ch, cfg), ResnetBlock(ch, ch, cfg)])


class Encoder(nn.Module):
    """images (B, 3, H, W) -> latents (B, z_channels, H/d, W/d), d = 2 ** (levels - 1)."""

    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        mults, ch = cfg.encoder_ch_mult, cfg.base_channels
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)
        self.conv_blocks = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(mults):
            last = i == len(mults) - 1
            level = _Level(block_in, ch * m, cfg.encoder_res_blocks, attn=last, cfg=cfg)
            block_in = ch * m
            if not last:
                level.downsample = Downsample(block_in)
            self.conv_blocks.append(level)
        self.mid = _mid(block_in, cfg)
        self.norm_out = _norm(block_in, cfg)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)  # (B, ch, H, W)
        for level in self.conv_blocks:
            h = level(h)  # (B, ch*m, H/2^i, W/2^i)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, z, h, w)


class Decoder(nn.Module):
    """latents (B, z_channels, h, w) -> images (B, 3, h*d, w*d), not clamped."""

    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        mults, ch = cfg.decoder_ch_mult, cfg.base_channels
        block_in = ch * mults[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _mid(block_in, cfg)
        self.conv_blocks = nn.ModuleList()
        for i, m in enumerate(reversed(mults)):  # lowest resolution first
            last = i == len(mults) - 1
            level = _Level(block_in, ch * m, cfg.decoder_res_blocks, attn=i == 0, cfg=cfg)
            block_in = ch * m
            if not last:
                level.upsample = Upsample(block_in)
            self.conv_blocks.append(level)
        self.norm_out = _norm(block_in, cfg)
        self.conv_out = nn.Conv2d(block_in, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)  # (B, ch*m_last, h, w)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, H, W)


class Quantized(NamedTuple):
    """Result of nearest-code lookup."""

    quant: torch.Tensor  # (B, D, h, w) straight-through code vectors (normalised rows if l2-norm)
    indices: torch.Tensor  # (B, h, w) int64 code ids


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup (cosine when ``codebook_l2_norm``)."""

    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.l2_norm = cfg.codebook_l2_norm
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        if self.l2_norm:
            with torch.no_grad():
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        if cfg.codebook_show_usage:
            # kept only so LlamaGen state dicts load with strict=True
            self.register_buffer("codebook_used", torch.zeros(USAGE_BUFFER_SIZE))

    def codebook(self) -> torch.Tensor:
        """The rows lookups use: L2-normalised when ``l2_norm`` is on.  (N, D)"""
        w = self.embedding.weight.float()  # (N, D)
        return F.normalize(w, p=2, dim=-1) if self.l2_norm else w

    def forward(self, z: torch.Tensor) -> Quantized:
        """z (B, D, h, w) -> nearest codes."""
        z = z.float().permute(0, 2, 3, 1)  # (B, h, w, D)
        if self.l2_norm:
            z = F.normalize(z, p=2, dim=-1)
        emb = self.codebook()  # (N, D)
        flat = z.reshape(-1, z.shape[-1])  # (BHW, D)
        dist = (flat**2).sum(1, keepdim=True) + (emb**2).sum(1) - 2 * flat @ emb.t()  # (BHW, N)
        idx = dist.argmin(dim=1)  # (BHW,)
        z_q = emb[idx].view(z.shape)  # (B, h, w, D)
        z_q = z + (z_q - z).detach()  # straight-through, as in training
        return Quantized(z_q.permute(0, 3, 1, 2).contiguous(), idx.view(z.shape[:3]))

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, h, w) -> code vectors (B, D, h, w) from the (normalised) codebook."""
        return self.codebook()[indices].permute(0, 3, 1, 2).contiguous()  # (B, D, h, w)


class VQEncoding(NamedTuple):
    """Everything ``VQModel.encode`` computes."""

    indices: torch.Tensor  # (B, h, w) int64
    quant: torch.Tensor  # (B, D, h, w)
    latent: torch.Tensor  # (B, D, h, w) pre-quantisation (after quant_conv)


class VQModel(nn.Module):
    """LlamaGen VQ-VAE: encoder, quant_conv, quantize, post_quant_conv, decoder."""

    def __init__(self, cfg: LlamaGenVQConfig) -> None:
        super().__init__()
        self.config = cfg
        # construction order matches LlamaGen's, so the same seed gives the same random init
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_dim, cfg.z_channels, 1)

    def encode(self, images: torch.Tensor) -> VQEncoding:
        """images (B, 3, H, W) in [-1, 1] -> codes; H and W must be multiples of the downsample."""
        latent = self.quant_conv(self.encoder(images))  # (B, D, h, w)
        q = self.quantize(latent)
        return VQEncoding(q.indices, q.quant, latent)

    def decode(self, quant: torch.Tensor) -> torch.Tensor:
        """quant (B, D, h, w) -> images (B, 3, H, W), raw decoder output (not clamped)."""
        return self.decoder(self.post_quant_conv(quant))

    def decode_code(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, h, w) -> images (B, 3, H, W) through the normalised codebook rows."""
        quant = self.quantize.lookup(indices)  # (B, D, h, w)
        return self.decode(quant.to(self.post_quant_conv.weight.dtype))
