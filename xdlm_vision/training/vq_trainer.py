"""Training a small LlamaGen-architecture VQ-VAE on Fashion-MNIST (``xdlm-vision train-tokenizer``).

The model is :class:`~xdlm_vision.tokenizers.llamagen_vq.VQModel` itself (same modules, same
state-dict names), so the weights load through the tokenizer path every other command uses
(``--tokenizer OUT/tokenizer.json --tokenizer-checkpoint OUT/tokenizer.safetensors``).

Loss per batch (LlamaGen's VQ objective without its perceptual and adversarial terms), with
``z`` the L2-normalised encoder latents and ``e`` the L2-normalised nearest code rows:

    L = mean((x_hat - x)^2) + codebook_weight * mean((e - sg[z])^2) + commitment * mean((sg[e] - z)^2)

and the decoder sees the straight-through ``z + sg[e - z]``. Codes no batch has picked for
``restart_every`` steps are restarted on random latents of the current batch (dead-code restarts),
so the codebook stays in use. Everything a step does depends only on (seed, step) and the saved
state, so ``--resume`` from a checkpoint reaches the same weights as an uninterrupted run.

Layout of ``OUT``::

    checkpoints/step_XXXXXXX/{model.safetensors, train_state.pt}   resumable state
    tokenizer.safetensors, tokenizer.json                          final weights + architecture
    report.json, reconstructions.png                               test-split evaluation
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from xdlm_vision.data.fashion_entry import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS
from xdlm_vision.errors import UserError
from xdlm_vision.io import (
    append_line,
    atomic_path,
    replace_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from xdlm_vision.tokenizers.llamagen_config import LlamaGenVQConfig
from xdlm_vision.tokenizers.llamagen_vq import VQModel

__all__ = ["TOKENIZER_CONFIG", "TOKENIZER_WEIGHTS", "VQTrainSettings", "train_vq_tokenizer"]
REPORT = "report.json"
RECON_PNG = "reconstructions.png"
CHECKPOINTS = "checkpoints"


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
    steps: int = 600  # optimizer steps (19,200 images, a third of an epoch)
    batch_size: int = 32  # images per step
    lr: float = 2e-3  # Adam peak learning rate
    warmup_steps: int = 50  # linear warm-up
    min_lr_ratio: float = 0.05  # cosine floor as a share of lr
    commitment: float = 0.25  # beta of the commitment term
    codebook_weight: float = 1.0  # weight of the codebook term
    restart_every: int = 50  # dead-code restart period in steps (0 = never)
    seed: int = 0  # init, data order and restarts
    log_every: int = 25
    ckpt_every: int = 250
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


@dataclass
class VQTrainResult:
    out: Path
    step: int
    wall_seconds: float  # this invocation
    images_per_second: float  # training throughput of this invocation
    report: dict = field(default_factory=dict)  # test-split evaluation (see evaluate_tokenizer)


# ---------------------------------------------------------------------------------------------
# checkpoints


def _step_dir(out: Path, step: int) -> Path:
    return out / CHECKPOINTS / f"step_{step:07d}"


def latest_vq_checkpoint(out: Path) -> Path | None:
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [p for p in root.glob("step_*") if (p / "train_state.pt").is_file() and (p / "model.safetensors").is_file()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def _save_checkpoint(out: Path, step: int, model: VQModel, optimizer, usage: torch.Tensor,
                     settings: VQTrainSettings, keep: int) -> Path:
    """``OUT/checkpoints/step_XXXXXXX`` written beside itself and swapped in whole (xdlm_vision.io)."""
    import io as _bytes_io

    from safetensors.torch import save_model

    final = _step_dir(out, step)
    tmp = final.with_name(f".tmp_{final.name}_{os.getpid()}")  # a name io.clean_stale_temps knows
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        buffer = _bytes_io.BytesIO()
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "usage": usage.cpu(),
                    "settings": json.dumps(asdict(settings))}, buffer)
        write_bytes_atomic(tmp / "train_state.pt", buffer.getvalue())
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if keep > 0:
        older = sorted((p for p in final.parent.glob("step_*") if p != final), key=lambda p: p.name)
        for old in older[: max(0, len(older) - keep + 1)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def save_tokenizer(model: VQModel, out: Path) -> Path:
    """Final weights (safetensors, float32) + architecture JSON (the flat LlamaGenVQConfig form)."""
    from safetensors.torch import save_model

    with atomic_path(out / TOKENIZER_WEIGHTS, suffix=".safetensors") as tmp:
        save_model(model, str(tmp))
        os.chmod(tmp, 0o644)  # safetensors writes 0600; the weights are meant to be shared/packaged
    write_text_atomic(out / TOKENIZER_CONFIG, json.dumps(model.config.to_dict(), indent=2) + "\n")
    return out / TOKENIZER_WEIGHTS


# ---------------------------------------------------------------------------------------------
# the loop


def train_vq_tokenizer(
    settings: VQTrainSettings,
    out_dir: str | Path,
    data_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    evaluate: bool = True,
    train_images: torch.Tensor | None = None,
    flag: str = "--data-dir",
    eval_max_images: int | None = None,
) -> VQTrainResult:
    """Train (or ``resume``) a tokenizer into ``out_dir``; see the module docstring.

    ``train_images`` (n, 28, 28) uint8 replaces the Fashion-MNIST train split (tests);
    ``stop_after`` ends this invocation early at that step (a checkpoint is written there).
    """
    from tqdm.auto import tqdm

    from xdlm_vision.data.fashion import load_fashion_split, to_signed_padded

    out = Path(out_dir)
    existing = latest_vq_checkpoint(out)
    if existing is not None and not resume:
        raise UserError(f"--out {str(out)!r} already holds tokenizer checkpoints; pass --resume or choose another --out")
    if resume and existing is None:
        raise UserError(f"--resume: no tokenizer checkpoint in {out / CHECKPOINTS}; drop --resume to start")
    if train_images is None:
        train_images = load_fashion_split("train", data_dir, flag=flag).images  # (n, 28, 28) uint8
    n = len(train_images)

    torch.manual_seed(settings.seed)
    model = VQModel(settings.vq_config())
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, betas=(0.9, 0.99))
    usage = torch.zeros(settings.codebook_size, dtype=torch.long)
    start = 0
    if existing is not None:
        from safetensors.torch import load_model

        state = torch.load(existing / "train_state.pt", map_location="cpu", weights_only=True)
        saved = json.loads(state["settings"])
        saved["ch_mult"] = tuple(saved["ch_mult"])
        if VQTrainSettings(**saved).vq_config() != settings.vq_config():
            raise UserError(f"--resume: {existing} holds a tokenizer of a different architecture; use the same settings")
        load_model(model, str(existing / "model.safetensors"))
        optimizer.load_state_dict(state["optimizer"])
        usage = state["usage"].long()
        start = int(state["step"])
    out.mkdir(parents=True, exist_ok=True)
    end = settings.steps if stop_after is None else min(settings.steps, stop_after)
    model.train()
    bar = tqdm(total=end, initial=start, disable=not progress, desc="train-tokenizer", unit="step",
               dynamic_ncols=True)
    log_path = out / "metrics.jsonl"
    window = {"loss": 0.0, "mse": 0.0, "n": 0, "t": time.time()}
    t0 = time.time()
    for step in range(start, end):
        for group in optimizer.param_groups:
            group["lr"] = lr_at_step(step, settings)
        idx = batch_indices(step, settings.batch_size, n, settings.seed)  # (B,)
        images = to_signed_padded(train_images[idx])  # (B, 1, 32, 32)
        losses = vq_losses(model, images, settings.commitment, settings.codebook_weight)
        optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        optimizer.step()
        usage += torch.bincount(losses.indices.flatten().cpu(), minlength=settings.codebook_size)
        done = step + 1
        if settings.restart_every and done % settings.restart_every == 0:
            window["restarts"] = window.get("restarts", 0) + restart_dead_codes(
                model, usage, losses.latents, torch.Generator().manual_seed(settings.seed * 7919 + done))
            usage.zero_()
        window["loss"] += float(losses.total.detach())
        window["mse"] += float(losses.recon.detach())
        window["n"] += 1
        if done % settings.log_every == 0 or done == end:
            elapsed = max(time.time() - window["t"], 1e-9)
            mse = window["mse"] / window["n"]
            record = {"step": done, "loss": window["loss"] / window["n"], "mse": mse,
                      "psnr": psnr_from_mse(mse), "lr": lr_at_step(step, settings),
                      "images_per_s": window["n"] * settings.batch_size / elapsed,
                      "codes_restarted": window.get("restarts", 0)}
            append_line(log_path, json.dumps(record))
            bar.set_postfix(psnr=f"{record['psnr']:.1f}", img_s=f"{record['images_per_s']:.0f}", refresh=False)
            window = {"loss": 0.0, "mse": 0.0, "n": 0, "t": time.time()}
        bar.update(1)
        if done % settings.ckpt_every == 0 or done == end:
            _save_checkpoint(out, done, model, optimizer, usage, settings, settings.keep_checkpoints)
    bar.close()
    wall = time.time() - t0
    ips = (end - start) * settings.batch_size / max(wall, 1e-9)
    model.eval()
    report: dict = {}
    if end == settings.steps:
        save_tokenizer(model, out)
        if evaluate:
            from xdlm_vision.evaluation.vq_report import evaluate_tokenizer

            report = evaluate_tokenizer(model, out, data_dir=data_dir, flag=flag, max_images=eval_max_images)
            report["train"] = {"steps": settings.steps, "batch_size": settings.batch_size,
                               "wall_seconds_last_invocation": round(wall, 1),
                               "images_per_second": round(ips, 1), "settings": asdict(settings)}
            write_json_atomic(out / REPORT, report)
    return VQTrainResult(out, end, wall, ips, report)


def psnr_from_mse(mse_signed: float) -> float:
    """PSNR in dB of images in [0, 1] given the MSE measured in [-1, 1] units (4x larger)."""
    mse01 = max(mse_signed / 4.0, 1e-12)
    return 10.0 * math.log10(1.0 / mse01)
