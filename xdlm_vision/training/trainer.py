"""The training loop: accelerate (processes, devices, mixed precision), AdamW, EMA, checkpoints.

One optimizer step ``s`` (0-based) of a run:

1. the examples come from :class:`~xdlm_vision.training.order.StepOrder` (a function of seed and
   step), split into ``grad_accum`` micro-batches and one slice per process;
2. every micro-batch draws its label dropout, its times (antithetic, from the core) and its
   corruption from a CPU generator seeded by (seed, step, process, micro-batch), and the global torch
   RNG (dropout layers) is re-seeded per step the same way;
3. loss = mean NELBO per token (:func:`xdlm_vision.core.batch_nelbo`, any k: 0 = MDLM, 1 = UDLM),
   backward, a NaN/inf check across processes (:class:`~xdlm_vision.errors.TrainingDiverged`, exit
   status 3), gradient clipping, AdamW with the LR of :func:`lr_at`, EMA update.

Nothing in a step depends on anything but the seed, the step and the saved weights/optimizer, so a
run interrupted after a checkpoint and resumed with ``--resume`` reaches the same weights as an
uninterrupted one. Validation (:mod:`~xdlm_vision.training.validation`, NELBO in bits per token
with fixed seeds) and sample grids (:mod:`~xdlm_vision.training.preview`) use the EMA weights and
their own generators, so they never disturb training.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from xdlm_vision import checkpoints as ckpt_io
from xdlm_vision.backbones import count_parameters
from xdlm_vision.build import build_model, diffusion_spec
from xdlm_vision.config import Config, check_sampling_classes
from xdlm_vision.core import batch_nelbo
from xdlm_vision.data.registry import build_data
from xdlm_vision.errors import TrainingDiverged, UserError
from xdlm_vision.training.ema import EMA
from xdlm_vision.training.lr import lr_at
from xdlm_vision.training.metrics import MetricsLogger
from xdlm_vision.training.order import StepBatchSampler, StepOrder, cpu_generator, derive_seed
from xdlm_vision.training.preview import save_preview
from xdlm_vision.training.rng_state import capture_rng_state, restore_rng_state
from xdlm_vision.training.validation import validation_bits_per_token

__all__ = ["TrainResult", "TrainingDiverged", "drop_labels", "read_metrics", "train"]


@dataclass
class TrainResult:
    step: int  # optimizer steps completed
    checkpoint: Path | None  # last checkpoint written
    val_bits_per_token: float | None  # last validation NELBO (EMA weights), bits per token
    wall_seconds: float  # wall time of this invocation
    num_parameters: int  # trainable parameters of the backbone


# ---------------------------------------------------------------------------------------------
# small pure helpers


def drop_labels(labels: torch.Tensor, p: float, null_class: int, generator: torch.Generator) -> torch.Tensor:
    """Replace each label by the null class with probability ``p``. labels (B,) -> (B,)."""
    if p <= 0:
        return labels
    u = torch.rand(labels.shape, generator=generator).to(labels.device)  # (B,)
    return torch.where(u < p, torch.full_like(labels, null_class), labels)


def _flatten_batch(batch, device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, labels = batch
    tokens = tokens.to(device, non_blocking=True).long()
    return tokens.reshape(tokens.shape[0], -1), labels.to(device, non_blocking=True).long()  # (B, L), (B,)


# ---------------------------------------------------------------------------------------------
# run setup


def _make_accelerator(cfg: Config):
    from accelerate import Accelerator

    # cpu=True when there is no GPU: accelerate then runs several CPU processes (gloo) when launched
    # with torchrun-style env (LOCAL_RANK/WORLD_SIZE), e.g. `accelerate launch --multi_gpu
    # --num_processes 2` on a CPU-only machine; without it each process would train alone.
    no_gpu = not torch.cuda.is_available() and not (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
    if no_gpu and cfg.training.mixed_precision == "fp16":
        # accelerate would silently train in float32 while the log says fp16
        raise UserError("training.mixed_precision=fp16 needs a CUDA GPU; on the CPU use bf16 or no")
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

    if is_main:
        ckpt_io.clean_run_temps(out)  # hidden temporaries of a killed earlier run of this --out
    existing = ckpt_io.latest_checkpoint(out)
    if existing is not None and not resume:
        raise UserError(f"{out} already holds checkpoints ({existing.name}); pass --resume to continue it "
                        f"or choose another --out")
    if resume and existing is None:
        raise UserError(f"--resume: no checkpoint found in {out / ckpt_io.CHECKPOINTS}; drop --resume to start")

    data = build_data(cfg)
    meta = data.meta
    check_sampling_classes(cfg, meta.num_classes)  # the end-of-run grid must not fail after training
    spec = diffusion_spec(cfg, meta.num_tokens)  # built once, shared by the loss, validation and previews
    torch.manual_seed(derive_seed(tcfg.seed, 0xC0FFEE))  # identical initial weights on every process
    model = build_model(cfg, meta)
    n_params = count_parameters(model)
    ema = EMA(model, decay=tcfg.ema_decay, warmup=tcfg.ema_warmup)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
        weight_decay=cfg.optim.weight_decay,
    )

    start = 0
    train_state = None
    run_id = uuid.uuid4().hex
    if resume:
        existing, saved, train_state, changed = _open_resume(out, existing, cfg, model, ema, is_main)
        start = int(train_state["step"])
        run_id = str(saved.get("run_id") or run_id)
        ema.num_updates = int(train_state["ema_num_updates"])
        if is_main and changed:
            print(f"resuming with changed settings: {'; '.join(changed)}", flush=True)

    model, optimizer = accel.prepare(model, optimizer)
    ema.shadow.to(accel.device)
    if train_state is not None:
        optimizer.load_state_dict(train_state["optimizer"])
        restore_rng_state(train_state["rng"])
    raw_model = accel.unwrap_model(model)

    end = tcfg.steps if stop_after is None else min(tcfg.steps, stop_after)
    order = StepOrder(len(data.train), tcfg.batch_size, tcfg.grad_accum, world, rank, tcfg.seed)
    loader = DataLoader(
        data.train, batch_sampler=StepBatchSampler(order, start, end), num_workers=cfg.data.num_workers,
        pin_memory=accel.device.type == "cuda", persistent_workers=False,
    )
    val_set = _limit_val(data.val, cfg.data.max_val_samples)
    # a fresh start drops what a run killed before its first checkpoint left in metrics.jsonl
    logger = MetricsLogger(out, enabled=is_main, tensorboard=tcfg.tensorboard, after_step=start)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        logger.text(
            f"training {cfg.model.kind} {cfg.model.size} ({n_params / 1e6:.2f}M parameters) on {cfg.data.name}: "
            f"N={meta.num_tokens} tokens, grid {tuple(meta.grid_shape)}, {meta.num_classes} classes, "
            f"k={cfg.diffusion.k}, steps {start}->{end}, global batch {tcfg.batch_size} "
            f"on {world} process(es), device {accel.device}, precision {tcfg.mixed_precision}"
        )
    ckpt_record = {**ckpt_io.checkpoint_record(cfg, meta, raw_model), "run_id": run_id}
    last_ckpt = existing
    val_bpt: float | None = None

    def save(step: int) -> Path:
        state = {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "ema_num_updates": ema.num_updates,
            "rng": capture_rng_state(),
            "data": {**asdict(order.cursor(step)), "seed": tcfg.seed, "num_examples": len(data.train)},
            "world_size": world,
            "lr": lr_at(max(step - 1, 0), cfg.optim, tcfg.steps),
        }
        path = None
        if is_main:
            path = ckpt_io.save_checkpoint(out, step, raw_model, ema.shadow, ckpt_record, state,
                                           keep=tcfg.keep_checkpoints)
        accel.wait_for_everyone()
        return path or (out / ckpt_io.CHECKPOINTS / ckpt_io.step_dir_name(step))

    warned_grid = False

    def periodic(step: int) -> None:
        nonlocal val_bpt, warned_grid
        final = step == tcfg.steps
        if val_set is not None and (final or (tcfg.val_every and step % tcfg.val_every == 0)):
            val_bpt = validation_bits_per_token(ema.shadow, val_set, spec, tcfg.val_batch_size, tcfg.seed, accel)
            logger.log({"step": step, "val_bits_per_token": val_bpt}, echo=True)
        if final or (tcfg.sample_every and step % tcfg.sample_every == 0):
            if is_main:
                preview = save_preview(ema.shadow, cfg, meta, spec, out / "samples" / f"step_{step:07d}.png")
                if preview.path is not None:
                    logger.text(f"step {step}: sample grid {preview.path}")
                elif not warned_grid:
                    logger.text(f"no sample grids: {preview.skipped}")
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
                loss = batch_nelbo(model, x0, labels, spec, gen).mean()
            accel.backward(loss)  # scaled by 1 / grad_accum inside
            loss_sum += loss.detach() / tcfg.grad_accum
        bad = (~torch.isfinite(loss_sum)).float()
        if world > 1:
            bad = accel.reduce(bad, reduction="sum")
        if bad.item() > 0:
            bar.close()
            if last_ckpt:
                advice = (f"last good checkpoint: {last_ckpt}); resume with --resume after lowering optim.lr or "
                          f"raising optim.warmup_steps")
            else:  # nothing to resume from: do not suggest --resume
                advice = ("no checkpoint was written yet); start again with a lower optim.lr or a higher "
                          "optim.warmup_steps")
            raise TrainingDiverged(
                f"training diverged: loss became {float(loss_sum)} at step {step}; stopped without applying it "
                f"({advice}"
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
            logger.log(record, echo=not progress)  # --no-progress: a log line instead of the bar
            bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['examples_per_s']:.0f}", refresh=False)
            window = {"loss": 0.0, "n": 0, "t": time.time(), "examples": 0}
        bar.update(1)
        if done % tcfg.ckpt_every == 0 or done == end:  # first the checkpoint: nothing after it can lose it
            last_ckpt = save(done)
            if is_main:
                logger.text(f"step {done}: checkpoint {last_ckpt}")
        periodic_due = done == tcfg.steps or (tcfg.val_every and done % tcfg.val_every == 0) or (
            tcfg.sample_every and done % tcfg.sample_every == 0)
        if periodic_due:
            periodic(done)
    bar.close()
    logger.close()
    accel.wait_for_everyone()
    return TrainResult(step=end, checkpoint=last_ckpt, val_bits_per_token=val_bpt,
                       wall_seconds=time.time() - t_start, num_parameters=n_params)


def _open_resume(out: Path, newest: Path, cfg: Config, model, ema: EMA, is_main: bool):
    """Load the newest intact checkpoint of ``out`` for ``--resume``.

    Each candidate (newest first) must pass the resume compatibility check and the cross-check of
    its files (:func:`~xdlm_vision.checkpoints.verify_checkpoint`); a corrupt newest one is skipped
    with a one-line notice. ``training.steps`` below the checkpoint step is refused.
    Returns (checkpoint dir, config.json, train state, changed settings).
    """
    candidates = [newest] + [p for p in reversed(ckpt_io.list_checkpoints(out)) if p != newest]
    first_error = None
    for ckpt in candidates:
        try:
            saved = ckpt_io.read_checkpoint_config(ckpt, flag="--resume")
            if not isinstance(saved.get("config"), dict):
                raise UserError(f"--resume: {ckpt}/config.json has no run config")
            changed = ckpt_io.check_resume_compatible(saved["config"], cfg, ckpt)
            train_state = ckpt_io.load_train_state(ckpt)
            step = ckpt_io.verify_checkpoint(ckpt, saved, train_state, flag="--resume")
            if cfg.training.steps < step:
                raise UserError(f"--resume: training.steps={cfg.training.steps} is below the checkpoint's step "
                                f"{step} ({ckpt}); pass training.steps >= {step} or a fresh --out")
            ckpt_io.load_weights(model, ckpt / "model.safetensors", flag="--resume")
            ckpt_io.load_weights(ema.shadow, ckpt / "ema.safetensors", flag="--resume")
        except UserError as exc:
            if "training.steps=" in str(exc) or "different model/data" in str(exc):
                raise  # the user's settings, not a damaged file: no fallback
            first_error = first_error or exc
            continue
        if ckpt != newest and is_main:
            print(f"note: the newest checkpoint {newest.name} is unreadable ({first_error}); resuming from "
                  f"{ckpt.name}", flush=True)
        return ckpt, saved, train_state, changed
    raise first_error


def read_metrics(out_dir: str | Path) -> list[dict]:
    """All records of OUT/metrics.jsonl (for tests and notebooks); a last line cut short by a crash
    is ignored."""
    path = Path(out_dir) / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1 and not line.endswith("\n"):
                break  # an append cut short by a crash; the next run repairs it
            raise
    return records
