"""The XDLM authors' CIFAR-10 U-Net, rebuilt module for module for strict loading of their weights.

- :class:`OfficialUNet`: the official interface, ``forward(ids (B, 3 H W), sigma (B,), labels (B,))
  -> logits (B, 3 H W, V)`` with ids flattened channel-major ``(c, h, w)`` and ``V = 259`` (256
  levels, [MASK] = 256, special ids 257, 258).
- :class:`OfficialUNetBackbone`: the same module tree presented as an xdlm-vision backbone over the
  official-process token space (N' = 258 data states, mask 258) and our pixel-token grid
  ``(H, W * 3)`` flattened ``(h, w, c)``; positions and ids are permuted in and out.

Architecture (``docs/official.md``): no embedding table — each id x enters as the real number
``2 x / V - 1`` through a 3x3 convolution; a timestep branch (sinusoid of 1000 sigma, two linear
layers) plus a class table with C + 2 rows (label C uses row C + 1) added to it; residual blocks
and channel attention with GroupNorm(min(ch/4, 32), eps 1e-6), 1x1 "NiN" layers stored as
(in, out) matrices, outputs scaled by 1/sqrt(2); downsampling pads right/bottom and convolves with
stride 2; the head predicts per colour a mean offset and a log-scale and returns the log mass of a
logistic on V equal bins of [-1, 1] without tail mass (not normalised).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.backbones.common import check_tokens, resolve_labels
from xdlm_vision.backbones.official_dit import OfficialVocab, official_ids, official_sigma, our_columns
from xdlm_vision.errors import UserError

SQRT2 = math.sqrt(2.0)


@dataclass
class OfficialUNetConfig(OfficialVocab):
    """Official U-Net architecture; ``num_tokens`` = N' = levels + 2 (official V = N' + 1)."""

    num_tokens: int = 258  # N' data states of the official process (256 levels + 2 special ids)
    grid_shape: tuple[int, ...] = (32, 96)  # our pixel grid (H, W * channels)
    num_classes: int = 10  # C; label C (null) uses table row C + 1
    ch: int = 128  # base channels (also the sinusoid width; the time vector is 4 ch)
    num_res_blocks: int = 2  # residual blocks per scale on the way down (one more on the way up)
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # channel multiplier per scale
    scale_count_to_put_attn: int = 1  # the scale whose blocks are followed by attention
    channels: int = 3  # colour channels
    dropout: float = 0.1  # dropout inside residual blocks in training; no effect in eval
    skip_rescale: bool = True  # divide residual sums by sqrt(2)
    time_scale_factor: float = 1000.0  # sigma is multiplied by this before the sinusoid
    time_conditioning: bool = False  # official XDLM feeds sigma = 0; True feeds -log alpha_t


OFFICIAL_UNET_SIZES: dict[str, dict] = {
    "cifar": {"ch": 128, "num_res_blocks": 2, "ch_mult": (1, 2, 2, 2), "scale_count_to_put_attn": 1},
    "tiny": {"ch": 4, "num_res_blocks": 1, "ch_mult": (1, 2), "scale_count_to_put_attn": 1},
}
DEFAULT_OFFICIAL_UNET_SIZE = "cifar"


def _groups(ch: int) -> int:
    return min(ch // 4, 32)


class NiN(nn.Module):
    """1x1 layer stored as W (in, out) and b (out,), applied over channels."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.zeros(in_ch, out_ch))
        self.b = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.einsum("bhwi,io->bhwo", x.permute(0, 2, 3, 1), self.W) + self.b  # (B, H, W, out)
        return y.permute(0, 3, 1, 2)  # (B, out, H, W)


class AttnBlock(nn.Module):
    """Self-attention over the H*W positions with NiN q/k/v/out; residual scaled by 1/sqrt(2)."""

    def __init__(self, ch: int, skip_rescale: bool) -> None:
        super().__init__()
        self.skip_rescale = skip_rescale
        self.GroupNorm_0 = nn.GroupNorm(_groups(ch), ch, eps=1e-6)
        self.NIN_0 = NiN(ch, ch)
        self.NIN_1 = NiN(ch, ch)
        self.NIN_2 = NiN(ch, ch)
        self.NIN_3 = NiN(ch, ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(hn), self.NIN_1(hn), self.NIN_2(hn)  # (B, C, H, W)
        att = torch.einsum("bchw,bcij->bhwij", q, k) * (c ** -0.5)  # (B, H, W, H, W)
        att = torch.softmax(att.reshape(b, h, w, h * w), dim=-1).reshape(b, h, w, h, w)
        out = self.NIN_3(torch.einsum("bhwij,bcij->bchw", att, v))  # (B, C, H, W)
        return (x + out) / SQRT2 if self.skip_rescale else x + out


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, + dense(silu(temb)), GroupNorm-SiLU-dropout-conv; NiN skip if widths differ."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, dropout: float, skip_rescale: bool) -> None:
        super().__init__()
        self.skip_rescale = skip_rescale
        self.groupnorm0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6)
        self.conv0 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.dense0 = nn.Linear(temb_dim, out_ch)
        self.groupnorm1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=1e-6)
        self.dropout0 = nn.Dropout(dropout)
        self.conv1 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.nin = NiN(in_ch, out_ch) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.groupnorm0(x)))  # (B, out, H, W)
        h = h + self.dense0(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout0(F.silu(self.groupnorm1(h))))
        skip = self.nin(x) if self.nin is not None else x
        return (skip + h) / SQRT2 if self.skip_rescale else skip + h


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x upsampling, then a 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, (2 * x.shape[2], 2 * x.shape[3]), mode="nearest"))


class ClassTable(nn.Module):
    """C + 2 rows of width 4 ch; the null label C is looked up in row C + 1 (row C is unused)."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 2, dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        rows = torch.where(labels == self.num_classes, labels + 1, labels)  # (B,)
        return self.embedding_table(rows)  # (B, dim)


def sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """[sin | cos] features of t (B,) with log-spaced frequencies over half - 1 -> (B, dim)."""
    half = dim // 2
    step = math.log(max_period) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=t.device) * -step)  # (half,)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # (B, dim)


class OfficialUNet(nn.Module):
    """The official U-Net with the official interface (channel-major ids over V)."""

    def __init__(self, config: OfficialUNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        if len(cfg.grid_shape) != 2 or cfg.grid_shape[1] % cfg.channels:
            raise UserError(f"official U-Net grid must be (H, W*{cfg.channels}), got {cfg.grid_shape}")
        if cfg.ch < 4 or cfg.ch % 2:
            raise UserError(f"official U-Net ch must be an even number >= 4, got {cfg.ch}")
        self.num_classes = int(cfg.num_classes)
        self.grid_shape = tuple(cfg.grid_shape)
        self.image_hw = (cfg.grid_shape[0], cfg.grid_shape[1] // cfg.channels)
        self.seq_len = math.prod(self.grid_shape)
        ch, tdim = cfg.ch, 4 * cfg.ch
        drop, skip = cfg.dropout, cfg.skip_rescale
        # registration order = official named_parameters() order (EMA shadow_params order)
        self.temb_modules = nn.ModuleList([nn.Linear(ch, tdim), nn.Linear(tdim, tdim)])
        self.input_conv = nn.Conv2d(cfg.channels, ch, 3, padding=1)
        widths, in_ch, down = [ch], ch, []
        for scale, mult in enumerate(cfg.ch_mult):
            for _ in range(cfg.num_res_blocks):
                down.append(ResBlock(in_ch, ch * mult, tdim, drop, skip))
                in_ch = ch * mult
                if scale == cfg.scale_count_to_put_attn:
                    down.append(AttnBlock(in_ch, skip))
                widths.append(in_ch)
            if scale != len(cfg.ch_mult) - 1:
                down.append(Downsample(in_ch))
                widths.append(in_ch)
        self.downsampling_modules = nn.ModuleList(down)
        self.middle_modules = nn.ModuleList(
            [ResBlock(in_ch, in_ch, tdim, drop, skip), AttnBlock(in_ch, skip), ResBlock(in_ch, in_ch, tdim, drop, skip)]
        )
        up = []
        for scale in reversed(range(len(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                out_ch = ch * cfg.ch_mult[scale]
                up.append(ResBlock(in_ch + widths.pop(), out_ch, tdim, drop, skip))
                in_ch = out_ch
                if scale == cfg.scale_count_to_put_attn:
                    up.append(AttnBlock(in_ch, skip))
            if scale != 0:
                up.append(Upsample(in_ch))
        self.upsampling_modules = nn.ModuleList(up)
        self.output_modules = nn.ModuleList(
            [nn.GroupNorm(_groups(in_ch), in_ch, eps=1e-6), nn.Conv2d(in_ch, 2 * cfg.channels, 3, padding=1)]
        )
        self.cond_map = ClassTable(cfg.num_classes, tdim)

    def _bin_edges(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.config.vocab_size
        width = 2.0 / s
        centres = torch.linspace(-1.0 + width / 2, 1.0 - width / 2, s, device=device)  # (S,)
        return centres - width / 2, centres + width / 2

    def official_forward(self, ids: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """ids (B, 3 H W) channel-major in 0..V-1, sigma (B,), labels (B,) in 0..C -> (B, 3 H W, V)."""
        cfg = self.config
        b = ids.shape[0]
        hh, ww = self.image_hw
        x = ids.reshape(b, cfg.channels, hh, ww).float()  # (B, 3, H, W)
        x = 2.0 * (x / cfg.vocab_size) - 1.0  # ids as reals in [-1, 1); the mask sits just above white
        temb = self.temb_modules[0](sinusoid(sigma * cfg.time_scale_factor, cfg.ch))  # (B, 4ch)
        temb = self.temb_modules[1](F.silu(temb)) + self.cond_map(labels)  # (B, 4ch)

        h = self.input_conv(x)
        skips = [h]
        mods = iter(self.downsampling_modules)
        for scale in range(len(cfg.ch_mult)):
            for _ in range(cfg.num_res_blocks):
                h = next(mods)(h, temb)
                if scale == cfg.scale_count_to_put_attn:
                    h = next(mods)(h)
                skips.append(h)
            if scale != len(cfg.ch_mult) - 1:
                h = next(mods)(h)
                skips.append(h)
        h = self.middle_modules[0](h, temb)
        h = self.middle_modules[1](h)
        h = self.middle_modules[2](h, temb)
        mods = iter(self.upsampling_modules)
        for scale in reversed(range(len(cfg.ch_mult))):
            for _ in range(cfg.num_res_blocks + 1):
                h = next(mods)(torch.cat([h, skips.pop()], dim=1), temb)
                if scale == cfg.scale_count_to_put_attn:
                    h = next(mods)(h)
            if scale != 0:
                h = next(mods)(h)
        h = self.output_modules[1](F.silu(self.output_modules[0](h)))  # (B, 6, H, W)
        return self._logistic(h.float(), x)

    def _logistic(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Bin log-masses log(CDF(r) - CDF(l) + 1e-6 CDF(r)) over V bins -> (B, 3 H W, V)."""
        c = self.config.channels
        loc = torch.tanh(h[:, :c] + x)[..., None]  # (B, 3, H, W, 1)
        inv_scale = torch.exp(2.0 - h[:, c:])[..., None]  # (B, 3, H, W, 1)
        left, right = self._bin_edges(h.device)  # (S,)
        log_cdf_l = F.logsigmoid((left - loc) * inv_scale)  # (B, 3, H, W, S)
        log_cdf_r = F.logsigmoid((right - loc) * inv_scale)
        logits = log_cdf_r + torch.log1p(-torch.exp(log_cdf_l - log_cdf_r) + 1e-6)
        return logits.reshape(h.shape[0], -1, logits.shape[-1])  # (B, 3 H W, S)

    def forward(self, ids: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.official_forward(ids, sigma, labels)


class OfficialUNetBackbone(OfficialUNet):
    """:class:`OfficialUNet` as an xdlm-vision backbone over the official-process token space.

    z (B, H * W * 3) in our (h, w, c) order with ids 0..N' (N' = mask) -> logits (B, L, N') in the
    same order; sigma as in :class:`~xdlm_vision.backbones.official_dit.OfficialDiTBackbone`.
    """

    def __init__(self, config: OfficialUNetConfig) -> None:
        super().__init__(config)
        self.num_tokens = int(config.num_tokens)
        self.register_buffer("columns", torch.tensor(our_columns(config.num_codes)), persistent=False)
        hh, ww = self.image_hw
        # position p of the channel-major (c, h, w) sequence reads our (h, w, c) position order[p]
        hwc = torch.arange(self.seq_len).reshape(hh, ww, config.channels)
        self.register_buffer("to_official", hwc.permute(2, 0, 1).reshape(-1), persistent=False)
        self.register_buffer("from_official", torch.argsort(self.to_official), persistent=False)

    def forward(self, z: torch.Tensor, class_labels: torch.Tensor | None = None,
                t: torch.Tensor | None = None) -> torch.Tensor:
        check_tokens(z, self.seq_len)
        b = z.shape[0]
        labels = resolve_labels(class_labels, b, self.num_classes, z.device)
        sigma = official_sigma(self.config.time_conditioning, t, b, z.device)  # (B,)
        ids = official_ids(z.long(), self.config.num_codes).index_select(1, self.to_official)  # (B, L) (c, h, w)
        logits = self.official_forward(ids, sigma, labels)  # (B, L, V)
        return logits.index_select(1, self.from_official).index_select(-1, self.columns)  # (B, L, N')
