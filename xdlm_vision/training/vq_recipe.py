"""The VQ tokenizer's training recipe: settings (with their checks), the loss, the learning-rate
schedule, the data order and dead-code restarts. :mod:`xdlm_vision.training.vq_trainer` runs it.

Loss per batch (LlamaGen's VQ objective without its perceptual and adversarial terms), with
``z`` the L2-normalised encoder latents and ``e`` the L2-normalised nearest code rows:

    L = mean((x_hat - x)^2) + codebook_weight * mean((e - sg[z])^2) + commitment * mean((sg[e] - z)^2)

and the decoder sees the straight-through ``z + sg[e - z]``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.llamagen_config import LlamaGenVQConfig
from xdlm_vision.tokenizers.llamagen_vq import VQModel


@dataclass
class VQTrainSettings:
    """Architecture and optimisation of a Fashion-MNIST VQ tokenizer (defaults: the shipped recipe)."""

    base_channels: int = 16  # width of the 32x32 level (the costly one on a CPU)
    ch_mult: tuple[int, ...] = (1, 2, 4)  # three levels, widths 16/32/64: 32x32 -> 16x16 -> 8x8 tokens
    encoder_res_blocks: int = 1  # ResnetBlocks per encoder level
    decoder_res_blocks: int = 2  # ResnetBlocks per decoder level
    z_channels: int = 64  # encoder output / decoder input width
    norm_groups: int = 8  # GroupNorm groups (every width must be divisible by it)
    codebook_size: int = 512  # N codes
    codebook_dim: int = 8  # code dimension (L2-normalised)
    steps: int = 2000  # optimizer steps (64,000 images, about one epoch)
    batch_size: int = 32  # images per step
    lr: float = 2e-3  # Adam peak learning rate
    warmup_steps: int = 50  # linear warm-up
    min_lr_ratio: float = 0.05  # cosine floor as a share of lr
    commitment: float = 0.25  # beta of the commitment term
    codebook_weight: float = 1.0  # weight of the codebook term
    restart_every: int = 50  # dead-code restart period in steps (0 = never)
    seed: int = 0  # init, data order and restarts
    log_every: int = 25
    ckpt_every: int = 500
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        for name in ("steps", "batch_size", "codebook_size", "codebook_dim", "log_every", "ckpt_every",
                     "base_channels", "z_channels", "norm_groups"):
            if getattr(self, name) < 1:
                raise UserError(f"tokenizer setting {name} must be >= 1, got {getattr(self, name)}")
        for name in ("encoder_res_blocks", "decoder_res_blocks", "warmup_steps", "restart_every", "seed",
                     "keep_checkpoints"):
            if getattr(self, name) < 0:
                raise UserError(f"tokenizer setting {name} must be >= 0, got {getattr(self, name)}")
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise UserError(f"tokenizer setting ch_mult must be a non-empty list of widths >= 1, got {list(self.ch_mult)}")
        if not (self.lr > 0 and self.commitment >= 0 and self.codebook_weight >= 0 and 0 <= self.min_lr_ratio <= 1):
            raise UserError("tokenizer settings need lr > 0, commitment >= 0, codebook_weight >= 0 and "
                            f"0 <= min_lr_ratio <= 1; got {self.lr}, {self.commitment}, {self.codebook_weight}, "
                            f"{self.min_lr_ratio}")

    def vq_config(self) -> LlamaGenVQConfig:
        """The LlamaGen architecture these settings describe (1 channel in and out)."""
        return LlamaGenVQConfig(
            base_channels=self.base_channels, encoder_ch_mult=self.ch_mult, decoder_ch_mult=self.ch_mult,
            encoder_res_blocks=self.encoder_res_blocks, decoder_res_blocks=self.decoder_res_blocks,
            z_channels=self.z_channels, codebook_size=self.codebook_size, codebook_dim=self.codebook_dim,
            codebook_l2_norm=True, codebook_show_usage=False, in_channels=1, out_channels=1,
            norm_groups=self.norm_groups,
        )


def settings_from(values: dict, where: str = "tokenizer.train") -> VQTrainSettings:
    """``{"steps": 2000, ...}`` -> VQTrainSettings after checking every key and value type;
    UserError naming ``where`` (``tokenizer.train`` in a run config, or the command line)."""
    fields = {f.name: f for f in dataclasses.fields(VQTrainSettings)}
    for key, value in values.items():
        if key not in fields:
            raise UserError(f"{where} {key!r}: unknown key; choose from {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, type(default)) and not isinstance(value, bool)
        if not ok:
            raise UserError(f"{where} {key} expects {type(default).__name__}, got {value!r}")
    return VQTrainSettings(**values)


class VQLosses(NamedTuple):
    """One forward pass of the VQ objective."""

    total: torch.Tensor  # () weighted sum
    recon: torch.Tensor  # () mean squared error in [-1, 1] units
    codebook: torch.Tensor  # () mean((e - sg[z])^2)
    commitment: torch.Tensor  # () mean((sg[e] - z)^2), before the beta weight
    indices: torch.Tensor  # (B, h, w) chosen codes
    latents: torch.Tensor  # (B*h*w, D) normalised latents (detached), for restarts
    recon_images: torch.Tensor  # (B, C, H, W) decoder output


def vq_losses(model: VQModel, images: torch.Tensor, commitment: float = 0.25,
              codebook_weight: float = 1.0) -> VQLosses:
    """images (B, C, H, W) in [-1, 1] -> :class:`VQLosses` with the straight-through estimator."""
    latent = model.quant_conv(model.encoder(images)).float()  # (B, D, h, w)
    z = latent.permute(0, 2, 3, 1)  # (B, h, w, D)
    if model.quantize.l2_norm:
        z = F.normalize(z, p=2, dim=-1)
    emb = model.quantize.codebook()  # (N, D), differentiable w.r.t. the embedding
    flat = z.reshape(-1, z.shape[-1])  # (BHW, D)
    with torch.no_grad():
        dist = (flat**2).sum(1, keepdim=True) + (emb**2).sum(1) - 2 * flat @ emb.t()  # (BHW, N)
        idx = dist.argmin(dim=1)  # (BHW,)
    e = emb[idx]  # (BHW, D)
    codebook_loss = (e - flat.detach()).pow(2).mean()
    commit_loss = (e.detach() - flat).pow(2).mean()
    z_st = flat + (e - flat).detach()  # (BHW, D) straight-through
    quant = z_st.view(z.shape).permute(0, 3, 1, 2)  # (B, D, h, w)
    recon_images = model.decode(quant)  # (B, C, H, W)
    recon = (recon_images.float() - images).pow(2).mean()
    total = recon + codebook_weight * codebook_loss + commitment * commit_loss
    return VQLosses(total, recon, codebook_loss, commit_loss, idx.view(z.shape[:3]), flat.detach(), recon_images)


def lr_at_step(step: int, s: VQTrainSettings) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr`` at ``s.steps``."""
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    progress = min(1.0, (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps))
    floor = s.min_lr_ratio * s.lr
    return floor + (s.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> torch.Tensor:
    """Example ids of a step: positions step*B .. (step+1)*B of the endless stream of per-epoch
    permutations (epoch e shuffled with seed (seed, e)). (B,) int64."""
    start = step * batch_size
    parts, pos = [], start
    while pos < start + batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        take = min(n - offset, start + batch_size - pos)
        parts.append(perm[offset: offset + take])
        pos += take
    return torch.cat(parts)


@torch.no_grad()
def restart_dead_codes(model: VQModel, usage: torch.Tensor, latents: torch.Tensor, generator: torch.Generator) -> int:
    """Move every code with ``usage == 0`` onto a random latent of ``latents`` (BHW, D) plus a little
    noise; returns the number of restarted codes. ``usage`` (N,) counts picks since the last check."""
    dead = torch.nonzero(usage == 0).flatten()  # (K,)
    if dead.numel() == 0 or latents.shape[0] == 0:
        return 0
    pick = torch.randint(latents.shape[0], (dead.numel(),), generator=generator)  # (K,)
    noise = 0.01 * torch.randn(dead.numel(), latents.shape[1], generator=generator)  # (K, D)
    new = latents.cpu()[pick] + noise  # (K, D)
    if model.quantize.l2_norm:
        new = F.normalize(new, dim=-1)
    weight = model.quantize.embedding.weight
    weight[dead.to(weight.device)] = new.to(weight.device, weight.dtype)
    return int(dead.numel())


__all__ = ["VQLosses", "VQTrainSettings", "batch_indices", "lr_at_step", "restart_dead_codes", "settings_from",
           "vq_losses"]
