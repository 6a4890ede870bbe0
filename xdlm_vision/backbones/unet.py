"""Class-conditional U-Net over pixel tokens (DDPM-style, as the XDLM paper uses for CIFAR-10).

Input: pixel-token ids (B, L) flattened from the PixelTokenizer grid (H, W*C), i.e. in (h, w, c)
order; ids ``0..N`` with ``N`` = [MASK]. Each channel has its own ``N+1``-row embedding table;
the C embeddings of a pixel are concatenated and a 3x3 convolution maps them to feature maps
(B, ch, H, W). Conditioning: class embedding (``C+1`` rows, null class = ``C``) added to the
timestep embedding when time conditioning is on (otherwise the class embedding alone), injected
into every residual block. Residual blocks use GroupNorm + SiLU; self-attention (through
``F.scaled_dot_product_attention``) runs at the feature resolutions listed in
``attn_resolutions`` (compared with the feature-map height) and always in the middle block.

Output (``output="logistic"``, the paper's choice): per pixel and channel a mean and a log-scale of
a logistic; the logits over the N levels are the log CDF masses of the level bins, the edge bins
taking the tails (see ``discretized_logistic.py``). ``output="logits"`` gives plain per-level
logits (C*N output channels) instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.backbones.common import TimestepEmbedder, check_tokens, resolve_labels, resolve_time
from xdlm_vision.backbones.discretized_logistic import discretized_logistic_logits
from xdlm_vision.errors import UserError

OUTPUT_KINDS = ("logistic", "logits")


@dataclass
class UNetConfig:
    """Architecture of the pixel-token U-Net; vocabulary/grid/classes come from the data."""

    num_tokens: int = 256  # N intensity levels; input ids 0..N (N = [MASK])
    grid_shape: tuple[int, ...] = (32, 96)  # PixelTokenizer grid (H, W*C)
    num_classes: int = 10  # C classes; id C is the null class; 0 = unconditional
    channels: int = 3  # colour channels per pixel (the grid's last axis is W*channels)
    token_embed_dim: int = 32  # embedding size of one channel's token
    ch: int = 128  # base feature channels
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per resolution level
    num_res_blocks: int = 2  # residual blocks per level (the decoder uses one more)
    attn_resolutions: tuple[int, ...] = (16,)  # feature heights with self-attention
    heads: int = 1  # attention heads (ch * mult must divide evenly)
    dropout: float = 0.1  # dropout inside residual blocks
    norm_groups: int = 32  # GroupNorm groups (reduced to a divisor of the channel count)
    output: str = "logistic"  # "logistic" (discretised logistic) or "logits" (plain per-level)
    time_conditioning: bool = False  # add a timestep embedding to the class embedding


UNET_SIZES: dict[str, dict] = {
    "unet-tiny": {  # tests
        "channels": 1, "token_embed_dim": 8, "ch": 16, "ch_mult": (1, 2), "num_res_blocks": 1,
        "attn_resolutions": (2,), "norm_groups": 4, "dropout": 0.0,
    },
    "unet-digits": {  # 8x8x1, 17 levels; ~1 M parameters for a 2-core CPU
        "channels": 1, "token_embed_dim": 16, "ch": 32, "ch_mult": (1, 2), "num_res_blocks": 2,
        "attn_resolutions": (4,), "dropout": 0.1,
    },
    "unet-cifar": {  # 32x32x3, 256 levels; the DDPM CIFAR-10 network
        "channels": 3, "token_embed_dim": 32, "ch": 128, "ch_mult": (1, 2, 2, 2), "num_res_blocks": 2,
        "attn_resolutions": (16,), "dropout": 0.1,
    },
}
DEFAULT_UNET_SIZE = "unet-cifar"


def group_count(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` that is <= ``max_groups`` (GroupNorm needs one)."""
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, conditioning added in between; zero-initialised last conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(group_count(c_in, groups), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(group_count(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # x (B, Cin, H, W), emb (B, E)
        h = self.conv1(F.silu(self.norm1(x)))  # (B, Cout, H, W)
        h = h + self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, Cout, H, W)
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))  # (B, Cout, H, W)
        return self.skip(x) + h


class AttnBlock(nn.Module):
    """Spatial self-attention over the H*W positions; zero-initialised output projection."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        if channels % heads:
            raise UserError(f"U-Net attention: {channels} channels not divisible by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(group_count(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # (B, 3, H, Dh, P)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, P, Dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, P, Dh)
        out = out.transpose(-1, -2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # (B, C, H/2, W/2)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))  # (B, C, 2H, 2W)


class UNetStage(nn.Module):
    """One residual block, optionally followed by attention."""

    def __init__(self, res: ResBlock, attn: AttnBlock | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


def check_unet_grid(config: UNetConfig) -> tuple[int, int]:
    """Validate the (H, W*C) grid against channels and the number of down-sampling levels -> (H, W)."""
    if len(config.grid_shape) != 2:
        raise UserError(f"the U-Net needs a 2-D pixel grid (H, W*channels), got grid_shape={config.grid_shape}")
    height, wc = config.grid_shape
    if wc % config.channels:
        raise UserError(f"U-Net grid width {wc} is not a multiple of channels={config.channels}; "
                        "set the channels override to the image's colour channels")
    width = wc // config.channels
    factor = 2 ** (len(config.ch_mult) - 1)
    if height % factor or width % factor:
        raise UserError(f"U-Net with ch_mult={tuple(config.ch_mult)} needs H and W divisible by {factor}, "
                        f"got {height}x{width}; use fewer ch_mult levels")
    if config.output not in OUTPUT_KINDS:
        raise UserError(f"U-Net output must be one of {list(OUTPUT_KINDS)}, got {config.output!r}")
    return height, width


class UNet(nn.Module):
    """Pixel-token U-Net: forward(z (B, L), class_labels (B,) | None, t (B,) | None) -> logits (B, L, N)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.height, self.width = check_unet_grid(config)
        self.num_tokens = config.num_tokens
        self.num_classes = config.num_classes
        self.grid_shape = tuple(config.grid_shape)
        self.channels = config.channels
        self.seq_len = self.height * self.width * self.channels
        n, cfg, groups = config.num_tokens, config, config.norm_groups
        emb_dim = 4 * cfg.ch

        # one (N+1)-row table per colour channel, stored as a single table with offsets
        self.token_embed = nn.Embedding(cfg.channels * (n + 1), cfg.token_embed_dim)
        self.register_buffer("channel_offset", torch.arange(cfg.channels) * (n + 1), persistent=False)
        self.class_embed = nn.Embedding(cfg.num_classes + 1, emb_dim)  # row C = null class
        self.time_embed = TimestepEmbedder(emb_dim, frequency_dim=cfg.ch) if cfg.time_conditioning else None
        self.conv_in = nn.Conv2d(cfg.channels * cfg.token_embed_dim, cfg.ch, 3, padding=1)

        # encoder: remember the channel count of every skip tensor
        self.down = nn.ModuleList()
        skip_channels, c, res = [cfg.ch], cfg.ch, self.height
        for level, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                attn = AttnBlock(cfg.ch * mult, cfg.heads, groups) if res in cfg.attn_resolutions else None
                self.down.append(UNetStage(ResBlock(c, cfg.ch * mult, emb_dim, cfg.dropout, groups), attn))
                c = cfg.ch * mult
                skip_channels.append(c)
            if level != len(cfg.ch_mult) - 1:
                self.down.append(Downsample(c))
                skip_channels.append(c)
                res //= 2

        self.mid = nn.ModuleList([
            UNetStage(ResBlock(c, c, emb_dim, cfg.dropout, groups), AttnBlock(c, cfg.heads, groups)),
            UNetStage(ResBlock(c, c, emb_dim, cfg.dropout, groups), None),
        ])

        # decoder: one more block per level, each consuming one skip tensor
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                c_skip = skip_channels.pop()
                attn = AttnBlock(cfg.ch * mult, cfg.heads, groups) if res in cfg.attn_resolutions else None
                self.up.append(UNetStage(ResBlock(c + c_skip, cfg.ch * mult, emb_dim, cfg.dropout, groups), attn))
                c = cfg.ch * mult
            if level != 0:
                self.up.append(Upsample(c))
                res *= 2

        out_per_channel = 2 if cfg.output == "logistic" else n
        self.norm_out = nn.GroupNorm(group_count(c, groups), c)
        self.conv_out = nn.Conv2d(c, cfg.channels * out_per_channel, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # starts at mean 0, scale 1 (or uniform logits)
        nn.init.zeros_(self.conv_out.bias)
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.class_embed.weight, std=0.02)

    def embed_tokens(self, z: torch.Tensor) -> torch.Tensor:
        """ids (B, L) in (h, w, c) order -> feature maps (B, C*E, H, W)."""
        b = z.shape[0]
        ids = z.reshape(b, self.height, self.width, self.channels) + self.channel_offset  # (B, H, W, C)
        emb = self.token_embed(ids)  # (B, H, W, C, E)
        return emb.reshape(b, self.height, self.width, -1).permute(0, 3, 1, 2)  # (B, C*E, H, W)

    def conditioning(self, batch: int, class_labels: torch.Tensor | None, t: torch.Tensor | None,
                     device: torch.device) -> torch.Tensor:
        """(B, 4*ch): class embedding (+ time embedding when enabled)."""
        emb = self.class_embed(resolve_labels(class_labels, batch, self.num_classes, device))  # (B, E)
        if self.time_embed is not None:
            emb = emb + self.time_embed(resolve_time(t, batch, device))  # (B, E)
        return emb

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Final feature maps (B, ch, H, W) -> logits (B, L, N) in (h, w, c) order."""
        b, n, c = h.shape[0], self.num_tokens, self.channels
        out = self.conv_out(F.silu(self.norm_out(h)))  # (B, C*P, H, W)
        if self.config.output == "logistic":
            mean = out[:, :c].permute(0, 2, 3, 1)  # (B, H, W, C)
            log_scale = out[:, c:].permute(0, 2, 3, 1)  # (B, H, W, C)
            logits = discretized_logistic_logits(mean, log_scale, n)  # (B, H, W, C, N)
        else:
            logits = out.reshape(b, c, n, self.height, self.width).permute(0, 3, 4, 1, 2)  # (B, H, W, C, N)
        return logits.reshape(b, self.seq_len, n)  # (B, L, N)

    def forward(self, z: torch.Tensor, class_labels: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, L) ids in 0..N, class_labels (B,) in 0..C (None -> null), t (B,) -> logits (B, L, N)."""
        check_tokens(z, self.seq_len)
        emb = self.conditioning(z.shape[0], class_labels, t, z.device)  # (B, E)
        h = self.conv_in(self.embed_tokens(z))  # (B, ch, H, W)
        skips = [h]
        for module in self.down:
            h = module(h, emb) if isinstance(module, UNetStage) else module(h)
            skips.append(h)
        for module in self.mid:
            h = module(h, emb)
        for module in self.up:
            if isinstance(module, UNetStage):
                h = module(torch.cat([h, skips.pop()], dim=1), emb)  # (B, c + c_skip, H', W')
            else:
                h = module(h)
        return self.head(h)  # (B, L, N)
