"""Training a small LlamaGen-architecture VQ-VAE on Fashion-MNIST (``xdlm-vision train-tokenizer``).

The model is :class:`~xdlm_vision.tokenizers.llamagen_vq.VQModel` itself (same modules, same
state-dict names), so the weights load through the tokenizer path every other command uses
(``--tokenizer OUT/tokenizer.json --tokenizer-checkpoint OUT/tokenizer.safetensors``).

The recipe (settings, loss, schedule, data order, dead-code restarts) is
:mod:`xdlm_vision.training.vq_recipe`. Codes no batch has picked for
``restart_every`` steps are restarted on random latents of the current batch (dead-code restarts),
so the codebook stays in use. Everything a step does depends only on (seed, step) and the saved
state, so ``--resume`` from a checkpoint reaches the same weights as an uninterrupted run.

Layout of ``OUT``::

    checkpoints/step_XXXXXXX/{model.safetensors, train_state.pt}   resumable state
    tokenizer.safetensors, tokenizer.json                          final weights + architecture
    report.json, reconstructions.png                               test-split evaluation
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

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
from xdlm_vision.tokenizers.llamagen_vq import VQModel
from xdlm_vision.training.vq_recipe import (
    VQTrainSettings,
    batch_indices,
    lr_at_step,
    restart_dead_codes,
    settings_from,
    vq_losses,
)

__all__ = ["TOKENIZER_CONFIG", "TOKENIZER_WEIGHTS", "VQTrainSettings", "settings_from", "train_vq_tokenizer"]
REPORT = "report.json"
RECON_PNG = "reconstructions.png"
CHECKPOINTS = "checkpoints"


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
            if not progress:  # --no-progress: a log line instead of the bar
                print(f"step {done}/{end} loss {record['loss']:.4f} psnr {record['psnr']:.2f} dB "
                      f"{record['images_per_s']:.0f} images/s", flush=True)
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
