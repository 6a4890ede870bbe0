"""The training loop: accelerate (processes, devices, mixed precision), AdamW, EMA, checkpoints.

One optimizer step ``s`` (0-based) of a run:

1. the examples come from :class:`~xdlm_vision.training.order.StepOrder` (a function of seed and
   step), split into ``grad_accum`` micro-batches and one slice per process;
2. every micro-batch draws its label dropout, its times (antithetic, from the core) and its
   corruption from a CPU generator seeded by (seed, step, process, micro-batch), and the global torch
   RNG (dropout layers) is re-seeded per step the same way;
3. loss = mean NELBO per token from the core (any k: 0 = MDLM, 1 = UDLM), backward, a NaN/inf
   check across processes, gradient clipping, AdamW with the LR of :func:`lr_at`, EMA update.

Nothing in a step depends on anything but the seed, the step and the saved weights/optimizer, so a
run interrupted after a checkpoint and resumed with ``--resume`` reaches the same weights as an
uninterrupted one. Validation (NELBO in bits per token with fixed seeds) and sample grids use the
EMA weights and their own generators, so they never disturb training.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from xdlm_vision import __version__
from xdlm_vision.config import Config, config_from_dict, config_to_dict
from xdlm_vision.errors import UserError
from xdlm_vision.training import checkpoint as ckpt_io
from xdlm_vision.training.build import DataMeta, build_data, build_model, build_tokenizer
from xdlm_vision.training.ema import EMA
from xdlm_vision.training.lr import lr_at
from xdlm_vision.training.metrics import MetricsLogger
from xdlm_vision.training.order import StepBatchSampler, StepOrder

# config sections that must match when resuming (they define the model and its data)
RESUME_FIXED = ("model", "tokenizer", "diffusion", "text")


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; raised on every process so that all of them stop."""


@dataclass
class TrainResult:
    step: int  # optimizer steps completed
    checkpoint: Path | None  # last checkpoint written
    val_bits_per_token: float | None  # last validation NELBO (EMA weights), bits per token
    wall_seconds: float  # wall time of this invocation
    num_parameters: int  # trainable parameters of the backbone


# ---------------------------------------------------------------------------------------------
# small pure helpers


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, rank, ...), stable across platforms."""
    digest = hashlib.blake2b("/".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def cpu_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def drop_labels(labels: torch.Tensor, p: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """Replace each label by the null class with probability ``p``. labels (B,) -> (B,)."""
    if p <= 0:
        return labels
    u = torch.rand(labels.shape, generator=generator).to(labels.device)  # (B,)
    return torch.where(u < p, torch.full_like(labels, null_class), labels)


@dataclass
class Diffusion:
    """What the loss needs besides the model: token space, schedule, time conditioning."""

    space: Any  # xdlm_vision.core.TokenSpace
    schedule: Any
    time_conditioning: bool

    @classmethod
    def from_config(cls, cfg: Config, num_tokens: int) -> Diffusion:
        from xdlm_vision.core import TokenSpace, get_schedule

        return cls(TokenSpace(num_tokens=num_tokens, k=cfg.diffusion.k), get_schedule(cfg.diffusion.schedule),
                   cfg.model.time_conditioning)


def nelbo_per_token(
    model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, diff: Diffusion, generator: torch.Generator
) -> torch.Tensor:
    """Draw t (antithetic) and z_t ~ q(z_t | x0), run the model, return the NELBO (B, L) in nats.

    x0 (B, L) int64 clean tokens; labels (B,) int64 (null class allowed).
    """
    from xdlm_vision.core import corrupt, nelbo, sample_times

    b = x0.shape[0]
    t = sample_times(b, generator=generator).to(x0.device)  # (B,)
    z_t = corrupt(x0, t, diff.space, diff.schedule, generator=generator)  # (B, L)
    logits = model(z_t, labels, t if diff.time_conditioning else None)  # (B, L, N)
    # bf16 logits go in as they are: the loss upcasts chunk by chunk (no full fp32 copy)
    return nelbo(logits, x0, z_t, t, diff.space, diff.schedule)  # (B, L)


def _flatten_batch(batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, labels = batch
    tokens = tokens.to(device, non_blocking=True).long()
    return tokens.reshape(tokens.shape[0], -1), labels.to(device, non_blocking=True).long()  # (B, L), (B,)


# ---------------------------------------------------------------------------------------------
# validation and sample grid


@torch.no_grad()
def validation_bits_per_token(
    model: nn.Module, dataset: Dataset, diff: Diffusion, batch_size: int, seed: int, accelerator=None,
) -> float:
    """Mean NELBO over the validation set in bits per token, with fixed per-batch seeds.

    Batch ``i`` (fixed composition) always uses the generator ``derive_seed(seed, i)``, so the
    value does not depend on the number of processes; processes take every world-th batch.
    """
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = next(model.parameters()).device
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum nats, tokens)
    n_batches = math.ceil(len(dataset) / batch_size)
    was_training = model.training
    model.eval()
    for i in range(rank, n_batches, world):
        idx = range(i * batch_size, min(len(dataset), (i + 1) * batch_size))
        x0, labels = _flatten_batch(_collate([dataset[j] for j in idx]), device)
        # a fresh context per batch: accelerate's autocast context manager is single-use
        with accelerator.autocast() if accelerator is not None else nullcontext():
            loss = nelbo_per_token(model, x0, labels, diff, cpu_generator(derive_seed(seed, 77, i)))  # (B, L)
        total += torch.stack([loss.double().sum(), torch.tensor(float(loss.numel()), device=device)])
    model.train(was_training)
    if accelerator is not None and world > 1:
        total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1].clamp_min(1) / math.log(2))


def _collate(items) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.stack([torch.as_tensor(it[0]) for it in items])
    labels = torch.as_tensor([int(it[1]) for it in items])
    return tokens, labels


def grid_classes(cfg: Config, num_classes: int) -> list[int]:
    """Classes shown in the sample grid: ``sampling.classes`` or up to 10 evenly spaced ones."""
    if cfg.sampling.classes:
        bad = [c for c in cfg.sampling.classes if c >= num_classes]
        if bad:
            raise UserError(f"sampling.classes {bad} out of range for {num_classes} classes")
        return list(cfg.sampling.classes)
    count = min(num_classes, 10)
    return [int(i * num_classes / count) for i in range(count)]


@torch.no_grad()
def save_sample_grid(model: nn.Module, cfg: Config, meta: DataMeta, diff: Diffusion, path: Path) -> Path | None:
    """Sample ``sampling.per_class`` images of each grid class and save one row per class (PNG)."""
    from torchvision.utils import save_image

    from xdlm_vision.core import ancestral_sampler, sample
    from xdlm_vision.core.rng import seeded_generators

    device = next(model.parameters()).device
    tokenizer = build_tokenizer(meta.tokenizer_spec, device)
    if tokenizer is None:  # VQ codes without VQ weights: nothing to decode with
        return None
    classes = grid_classes(cfg, meta.num_classes)
    labels = torch.tensor(classes, device=device).repeat_interleave(cfg.sampling.per_class)  # (B,)
    gens = seeded_generators([cfg.sampling.seed + i for i in range(len(labels))])
    was_training = model.training
    model.eval()

    def model_fn(z, class_labels, t=None):
        return model(z, class_labels, t).float()  # (B, L, N)

    seq_len = math.prod(meta.grid_shape)
    steps = ancestral_sampler(
        model_fn, num_samples=len(labels), seq_len=seq_len, space=diff.space, num_steps=cfg.sampling.num_steps,
        class_labels=labels, cfg=cfg.sampling.cfg, null_class=meta.num_classes, schedule=diff.schedule,
        generator=gens, device=device, track_x0=False, pass_time=diff.time_conditioning,
    )
    tokens = sample(steps).reshape(len(labels), *meta.grid_shape)  # (B, h, w)
    model.train(was_training)
    images = tokenizer.decode(tokens).float().cpu()  # (B, C, H, W) in [-1, 1]
    if images.shape[-1] < 64:  # tiny images (digits): enlarge so the PNG is readable
        scale = max(1, 64 // images.shape[-1])
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    save_image((images + 1) / 2, tmp, nrow=cfg.sampling.per_class, padding=2, pad_value=0.5)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# run setup


def _check_resume_compatible(saved: dict, cfg: Config, where: Path) -> list[str]:
    """UserError if the model-defining sections differ; returns the other differences."""
    now = config_to_dict(cfg)
    saved_cfg = config_to_dict(config_from_dict(saved))
    diffs = []
    for section, values in now.items():
        for key, value in values.items():
            if saved_cfg[section].get(key) != value:
                diffs.append(f"{section}.{key}: {saved_cfg[section].get(key)!r} -> {value!r}")
    fixed = [d for d in diffs if d.split(".")[0] in RESUME_FIXED or d.startswith("data.name")]
    if fixed:
        raise UserError(
            f"--resume: the checkpoint {where} was trained with a different model/data ({'; '.join(fixed)}); "
            f"use the same config or a fresh --out"
        )
    return diffs


def checkpoint_meta(cfg: Config, meta: DataMeta, model: nn.Module) -> dict[str, Any]:
    """Everything config.json records besides the step."""
    from xdlm_vision.backbones import count_parameters

    backbone_cfg = asdict(model.config) if hasattr(model, "config") else {}
    return {
        "toolkit_version": __version__,
        "config": config_to_dict(cfg),
        "data": meta.to_dict(),
        "tokenizer": meta.tokenizer_spec,
        "class_names": meta.class_names,
        "num_classes": meta.num_classes,
        "null_class": meta.num_classes,
        "num_tokens": meta.num_tokens,
        "mask_id": meta.num_tokens,
        "grid_shape": list(meta.grid_shape),
        "backbone": {
            "kind": cfg.model.kind,
            "size": cfg.model.size,
            "config": backbone_cfg,
            "num_parameters": count_parameters(model),
        },
    }


def _make_accelerator(cfg: Config):
    from accelerate import Accelerator

    # cpu=True when there is no GPU: accelerate then runs several CPU processes (gloo) when launched
    # with torchrun-style env (LOCAL_RANK/WORLD_SIZE), e.g. `accelerate launch --multi_gpu
    # --num_processes 2` on a CPU-only machine; without it each process would train alone.
    no_gpu = not torch.cuda.is_available() and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    try:
        return Accelerator(
            mixed_precision=cfg.training.mixed_precision,
            gradient_accumulation_steps=cfg.training.grad_accum,
            cpu=no_gpu,
        )
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"cannot set up training.mixed_precision={cfg.training.mixed_precision}: {exc}") from None


def _limit_val(dataset: Dataset | None, cap: int | None) -> Dataset | None:
    if dataset is None or cap is None or cap >= len(dataset):
        return dataset
    return Subset(dataset, range(cap))


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    cfg: Config,
    out_dir: str | Path,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``cfg`` into ``out_dir`` (checkpoints/, samples/, metrics.jsonl).

    resume: continue from the newest checkpoint in ``out_dir`` (UserError if there is none);
        without it, an ``out_dir`` that already holds checkpoints is refused.
    stop_after: end this invocation after this many optimizer steps in total (a checkpoint is
        written there), e.g. to split a long run into jobs; the LR schedule still spans
        ``training.steps``.
    """
    t_start = time.time()
    out = Path(out_dir)
    tcfg = cfg.training
    accel = _make_accelerator(cfg)
    is_main = accel.is_main_process
    rank, world = accel.process_index, accel.num_processes

    existing = ckpt_io.latest_checkpoint(out)
    if existing is not None and not resume:
        raise UserError(f"{out} already holds checkpoints ({existing.name}); pass --resume to continue it "
                        f"or choose another --out")
    if resume and existing is None:
        raise UserError(f"--resume: no checkpoint found in {out / ckpt_io.CHECKPOINTS}; drop --resume to start")

    data = build_data(cfg)
    meta = data.meta
    diff = Diffusion.from_config(cfg, meta.num_tokens)
    torch.manual_seed(derive_seed(tcfg.seed, 0xC0FFEE))  # identical initial weights on every process
    model = build_model(cfg, meta)
    from xdlm_vision.backbones import count_parameters

    n_params = count_parameters(model)
    ema = EMA(model, decay=tcfg.ema_decay, warmup=tcfg.ema_warmup)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )

    start = 0
    train_state = None
    if resume:
        saved = ckpt_io.read_checkpoint_config(existing, flag="--resume")
        changed = _check_resume_compatible(saved["config"], cfg, existing)
        ckpt_io.load_weights(model, existing / "model.safetensors", flag="--resume")
        ckpt_io.load_weights(ema.shadow, existing / "ema.safetensors", flag="--resume")
        train_state = ckpt_io.load_train_state(existing)
        start = int(train_state["step"])
        ema.num_updates = int(train_state["ema_num_updates"])
        if is_main and changed:
            print(f"resuming with changed settings: {'; '.join(changed)}", flush=True)

    model, optimizer = accel.prepare(model, optimizer)
    ema.shadow.to(accel.device)
    if train_state is not None:
        optimizer.load_state_dict(train_state["optimizer"])
        ckpt_io.restore_rng_state(train_state["rng"])
    raw_model = accel.unwrap_model(model)

    end = tcfg.steps if stop_after is None else min(tcfg.steps, stop_after)
    order = StepOrder(len(data.train), tcfg.batch_size, tcfg.grad_accum, world, rank, tcfg.seed)
    loader = DataLoader(
        data.train, batch_sampler=StepBatchSampler(order, start, end), num_workers=cfg.data.num_workers,
        pin_memory=accel.device.type == "cuda", persistent_workers=False,
    )
    val_set = _limit_val(data.val, cfg.data.max_val_samples)
    logger = MetricsLogger(out, enabled=is_main, tensorboard=tcfg.tensorboard)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        logger.text(
            f"training {cfg.model.kind} {cfg.model.size} ({n_params / 1e6:.2f}M parameters) on {cfg.data.name}: "
            f"N={meta.num_tokens} tokens, grid {tuple(meta.grid_shape)}, {meta.num_classes} classes, "
            f"k={cfg.diffusion.k}, steps {start}->{end}, global batch {tcfg.batch_size} "
            f"on {world} process(es), device {accel.device}, precision {tcfg.mixed_precision}"
        )
    ckpt_meta = checkpoint_meta(cfg, meta, raw_model)
    last_ckpt = existing
    val_bpt: float | None = None

    def save(step: int) -> Path:
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "ema_num_updates": ema.num_updates,
            "rng": ckpt_io.capture_rng_state(),
            "data": {**asdict(order.cursor(step)), "seed": tcfg.seed, "num_examples": len(data.train)},
            "world_size": world,
            "lr": lr_at(max(step - 1, 0), cfg.optim, tcfg.steps),
        }
        path = None
        if is_main:
            path = ckpt_io.save_checkpoint(out, step, raw_model, ema.shadow, ckpt_meta, state,
                                           keep=tcfg.keep_checkpoints)
        accel.wait_for_everyone()
        return path or (out / ckpt_io.CHECKPOINTS / ckpt_io.step_dir_name(step))

    warned_grid = False

    def periodic(step: int) -> None:
        nonlocal val_bpt, warned_grid
        final = step == tcfg.steps
        if val_set is not None and (final or (tcfg.val_every and step % tcfg.val_every == 0)):
            val_bpt = validation_bits_per_token(ema.shadow, val_set, diff, tcfg.val_batch_size, tcfg.seed, accel)
            logger.log({"step": step, "val_bits_per_token": val_bpt}, echo=True)
        if final or (tcfg.sample_every and step % tcfg.sample_every == 0):
            if is_main:
                png = save_sample_grid(ema.shadow, cfg, meta, diff, out / "samples" / f"step_{step:07d}.png")
                if png is not None:
                    logger.text(f"step {step}: sample grid {png}")
                elif not warned_grid:
                    logger.text("no sample grids: the VQ weights are unknown (set tokenizer.path=...)")
                    warned_grid = True
            accel.wait_for_everyone()

    from tqdm.auto import tqdm

    bar = tqdm(total=end, initial=start, disable=not (is_main and progress), desc="train", dynamic_ncols=True,
               unit="step")
    batches = iter(loader)
    window = {"loss": 0.0, "n": 0, "t": time.time(), "examples": 0}
    for step in range(start, end):
        lr = lr_at(step, cfg.optim, tcfg.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(tcfg.seed, step, rank, 0xD0))  # dropout layers, if any
        loss_sum = torch.zeros((), device=accel.device)
        for micro in range(tcfg.grad_accum):
            x0, labels = _flatten_batch(next(batches), accel.device)
            gen = cpu_generator(derive_seed(tcfg.seed, step, rank, micro))
            labels = drop_labels(labels, tcfg.label_dropout, meta.num_classes, gen)
            sync = micro == tcfg.grad_accum - 1
            with (nullcontext() if sync or world == 1 else accel.no_sync(model)), accel.autocast():
                loss = nelbo_per_token(model, x0, labels, diff, gen).mean()
            accel.backward(loss)  # scaled by 1 / grad_accum inside
            loss_sum += loss.detach() / tcfg.grad_accum
        bad = (~torch.isfinite(loss_sum)).float()
        if world > 1:
            bad = accel.reduce(bad, reduction="sum")
        if bad.item() > 0:
            bar.close()
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"loss became {float(loss_sum)} at step {step}; stopped without applying it ({where}); "
                f"resume with --resume after lowering optim.lr or raising optim.warmup_steps"
            )
        grad_norm = accel.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip or float("inf"))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(raw_model)
        done = step + 1

        window["loss"] += float(loss_sum)
        window["n"] += 1
        window["examples"] += tcfg.batch_size
        if done % tcfg.log_every == 0 or done == end:
            elapsed = max(time.time() - window["t"], 1e-9)
            record = {"step": done, "loss": window["loss"] / window["n"], "lr": lr,
                      "grad_norm": float(grad_norm), "examples_per_s": window["examples"] / elapsed}
            logger.log(record, echo=False)
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['examples_per_s']:.0f}", refresh=False)
            window = {"loss": 0.0, "n": 0, "t": time.time(), "examples": 0}
        bar.update(1)
        periodic_due = done == tcfg.steps or (tcfg.val_every and done % tcfg.val_every == 0) or (
            tcfg.sample_every and done % tcfg.sample_every == 0)
        if periodic_due:
            periodic(done)
        if done % tcfg.ckpt_every == 0 or done == end:
            last_ckpt = save(done)
            if is_main:
                logger.text(f"step {done}: checkpoint {last_ckpt}")
    bar.close()
    logger.close()
    accel.wait_for_everyone()
    return TrainResult(step=end, checkpoint=last_ckpt, val_bits_per_token=val_bpt,
                       wall_seconds=time.time() - t_start, num_parameters=n_params)


def read_metrics(out_dir: str | Path) -> list[dict]:
    """All records of OUT/metrics.jsonl (for tests and notebooks)."""
    path = Path(out_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
