"""The checkpoint format: save / list / resolve / read, resume compatibility.

Format (docs/training.md): safetensors weights, a JSON config and a weights-only resume state.

Layout of a run directory ``OUT``::

    OUT/checkpoints/step_0003000/
        model.safetensors   trained weights (float32)
        ema.safetensors     EMA weights, same names and shapes (what sample/eval use by default)
        config.json         resolved run config, backbone config, tokenizer spec, classes, version
        train_state.pt      optimizer, step, EMA counter, RNG states, data cursor (tensors and
                            plain containers only; read with torch.load(weights_only=True))
    OUT/checkpoints/latest.json   {"step": 3000, "dir": "step_0003000"}

Every checkpoint is written into a hidden temporary directory and moved into place atomically
(:func:`xdlm_vision.io.replace_dir`); ``latest.json`` is replaced the same way afterwards. A crash
therefore leaves either the previous complete checkpoint or the new complete one, never a
half-written directory that :func:`latest_checkpoint` would pick; a failed write (full disk)
removes its temporary directory, and one left by a killed process is deleted by the next run of
the same output (:func:`xdlm_vision.io.clean_stale_temps`).

The four files carry the same identity: the step and the run id are in config.json, in the
safetensors metadata of both weight files and in train_state.pt, and :func:`verify_checkpoint`
refuses a directory whose files disagree (a file copied in from another run or step).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdlm_vision import __version__
from xdlm_vision.config import Config, config_from_dict, config_to_dict
from xdlm_vision.data.meta import DataMeta
from xdlm_vision.errors import UserError
from xdlm_vision.io import clean_stale_temps, replace_dir, write_bytes_atomic, write_text_atomic

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
FILES = ("model.safetensors", "ema.safetensors", "config.json", "train_state.pt")
FORMAT = "xdlm-vision-checkpoint"
FORMAT_VERSION = 1
# config sections that must match when resuming (they define the model and its data)
RESUME_FIXED = ("model", "tokenizer", "diffusion", "text")


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def is_complete(ckpt_dir: Path) -> bool:
    return ckpt_dir.is_dir() and all((ckpt_dir / f).is_file() for f in FILES)


# ---------------------------------------------------------------------------------------------
# writing


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    model: nn.Module,
    ema_model: nn.Module,
    record: dict[str, Any],
    train_state: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write ``OUT/checkpoints/step_XXXXXXX`` atomically and point ``latest.json`` at it.

    ``model`` / ``ema_model`` are unwrapped modules; ``record`` (:func:`checkpoint_record`) goes to
    config.json (the step and the format tag are added); ``train_state`` must hold only weights-only-loadable values.
    ``keep`` > 0 deletes all but the newest ``keep`` checkpoints afterwards.
    """
    import io as _bytes_io

    from safetensors.torch import save_model

    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp_{step_dir_name(step)}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    run_id = str(record.get("run_id", ""))
    tag = {"format": "pt", "step": str(step), "run_id": run_id}
    try:
        tmp.mkdir()
        for module, name in ((model, "model.safetensors"), (ema_model, "ema.safetensors")):
            try:
                save_model(module, str(tmp / name), metadata=tag)
            except Exception as exc:  # noqa: BLE001 - safetensors reports I/O failures as its own error type
                raise OSError(_errno_of(exc), f"{exc.__class__.__name__}: {exc}", str(tmp / name)) from None
        config = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **record}
        write_bytes_atomic(tmp / "config.json", json.dumps(config, indent=2, default=_json_default).encode())
        buffer = _bytes_io.BytesIO()
        torch.save({**train_state, "step": step, "run_id": run_id}, buffer)
        write_bytes_atomic(tmp / "train_state.pt", buffer.getvalue())
        replace_dir(tmp, final)  # re-saving the same step (e.g. after a resume) swaps the old one out
    finally:
        if tmp.exists():  # a failed write (full disk): leave nothing half-written behind
            shutil.rmtree(tmp, ignore_errors=True)
    write_text_atomic(root / LATEST, json.dumps({"step": step, "dir": final.name}))
    if keep > 0:
        prune_checkpoints(root, keep)
    return final


def _errno_of(exc: Exception) -> int:
    """The errno inside a safetensors I/O error message (``code: 28``), ENOSPC-like EIO otherwise."""
    found = re.search(r"(?:code: |os error )(\d+)", str(exc))
    return int(found.group(1)) if found else errno.EIO


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first (hidden temporaries never count)."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("step_*") if re.fullmatch(r"step_\d+", p.name) and is_complete(p)]
    return sorted(dirs, key=lambda p: int(p.name.split("_")[1]))


def prune_checkpoints(root: Path, keep: int) -> None:
    dirs = list_checkpoints(root.parent)
    for old in dirs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """Newest complete checkpoint of a run (``latest.json`` first, else the highest step)."""
    root = Path(out_dir) / CHECKPOINTS
    pointer = root / LATEST
    if pointer.is_file():
        try:
            cand = root / json.loads(pointer.read_text())["dir"]
            if is_complete(cand):
                return cand
        except (ValueError, KeyError, TypeError):
            pass
    dirs = list_checkpoints(out_dir)
    return dirs[-1] if dirs else None


# ---------------------------------------------------------------------------------------------
# reading


def is_weights_only(ckpt_dir: Path) -> bool:
    """A sampling-only checkpoint: config.json plus ema and/or model safetensors, no train state
    (what ships inside the package, or what a user copies to share a model)."""
    return ckpt_dir.is_dir() and (ckpt_dir / "config.json").is_file() and any(
        (ckpt_dir / f).is_file() for f in ("ema.safetensors", "model.safetensors")
    )


def resolve_checkpoint_dir(path: str | Path, flag: str = "--checkpoint") -> Path:
    """A step directory, a run directory ``OUT`` or ``OUT/checkpoints``, or a sampling-only
    directory (config.json + safetensors) -> the directory holding the weights."""
    p = Path(path)
    if is_complete(p):
        return p
    for run_dir in (p, p.parent if p.name == CHECKPOINTS else None):
        if run_dir is not None and (run_dir / CHECKPOINTS).is_dir():
            found = latest_checkpoint(run_dir)
            if found is not None:
                return found
    if is_weights_only(p):
        return p
    if not p.exists():
        raise UserError(f"{flag} {path}: no such file or directory")
    missing = [f for f in FILES if not (p / f).is_file()] if p.is_dir() else list(FILES)
    raise UserError(
        f"{flag} {path} is not a complete checkpoint (missing {', '.join(missing)}); pass a "
        f"checkpoints/step_XXXXXXX directory or a run directory written by `xdlm-vision train`"
    )


def read_checkpoint_config(ckpt_dir: str | Path, flag: str = "--checkpoint") -> dict[str, Any]:
    """The parsed config.json of a checkpoint (UserError naming ``flag`` if unreadable)."""
    path = Path(ckpt_dir) / "config.json"
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{flag} {ckpt_dir}: cannot read config.json ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{flag} {ckpt_dir}: config.json is not an xdlm-vision checkpoint config")
    return meta


def load_weights(module: nn.Module, path: str | Path, flag: str = "--checkpoint") -> None:
    """Load a safetensors file into ``module`` with strict names and shapes."""
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        # shape mismatches come back as one line per tensor: keep the message to one line
        detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:300]
        raise UserError(f"{flag}: cannot load {path} ({exc.__class__.__name__}: {detail})") from None
    if missing or unexpected:
        raise UserError(
            f"{flag}: {path} does not match the model (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )


def load_train_state(ckpt_dir: str | Path, flag: str = "--resume") -> dict[str, Any]:
    path = Path(ckpt_dir) / "train_state.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        # torch's message spans many lines and suggests weights_only=False: never repeat that advice
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "Weights only load failed" in first:
            first = "it holds objects other than tensors and plain containers, which are never unpickled"
        raise UserError(f"{flag}: cannot read {path} ({exc.__class__.__name__}: {first[:200]})") from None
    if not isinstance(state, dict) or "step" not in state:
        raise UserError(f"{flag}: {path} is not an xdlm-vision train state")
    return state


def weights_metadata(path: str | Path, flag: str = "--checkpoint") -> dict[str, str]:
    """The metadata header of a safetensors file (UserError naming ``flag`` if unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - corrupt headers raise several types
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"{flag}: cannot load {path} ({exc.__class__.__name__}: {detail})") from None


def checkpoint_step(record: dict, ckpt_dir: Path, flag: str = "--checkpoint") -> int:
    """The step recorded in config.json (UserError unless it is a whole number >= 0)."""
    step = record.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UserError(f"{flag} {ckpt_dir}: config.json has step {step!r}, not a whole number >= 0")
    return step


def verify_checkpoint(ckpt_dir: str | Path, record: dict, train_state: dict | None = None,
                      flag: str = "--checkpoint", weights: tuple[str, ...] = ("model.safetensors", "ema.safetensors"),
                      ) -> int:
    """Cross-check the files of one checkpoint; returns its step.

    The step of config.json must match the directory name, the safetensors metadata of each weight
    file present and ``train_state`` (when given); the run id (when recorded) must match too.
    A file swapped in from another run or step raises UserError naming it.
    """
    ckpt_dir = Path(ckpt_dir)
    step = checkpoint_step(record, ckpt_dir, flag)
    name = re.fullmatch(r"step_(\d+)", ckpt_dir.name)
    if name and int(name.group(1)) != step:
        raise UserError(f"{flag} {ckpt_dir}: config.json says step {step} but the directory is {ckpt_dir.name}")
    run_id = str(record.get("run_id") or "")
    for fname in weights:
        if not (ckpt_dir / fname).is_file():
            continue
        meta = weights_metadata(ckpt_dir / fname, flag)
        if "step" in meta and meta["step"] != str(step):
            raise UserError(f"{flag} {ckpt_dir}: {fname} is from step {meta['step']} but config.json says step "
                            f"{step} (files mixed from different checkpoints)")
        if run_id and meta.get("run_id") and meta["run_id"] != run_id:
            raise UserError(f"{flag} {ckpt_dir}: {fname} belongs to another run (run id {meta['run_id']}, "
                            f"config.json has {run_id})")
    if train_state is not None:
        ts_step = train_state.get("step")
        if ts_step != step:
            raise UserError(f"{flag} {ckpt_dir}: train_state.pt is from step {ts_step} but config.json says "
                            f"step {step} (files mixed from different checkpoints)")
        ts_run = str(train_state.get("run_id") or "")
        if run_id and ts_run and ts_run != run_id:
            raise UserError(f"{flag} {ckpt_dir}: train_state.pt belongs to another run (run id {ts_run}, "
                            f"config.json has {run_id})")
    return step


def clean_run_temps(out_dir: str | Path) -> list[Path]:
    """Delete hidden temporaries a killed run left in ``OUT``, ``OUT/checkpoints`` and ``OUT/samples``."""
    out = Path(out_dir)
    removed = []
    for folder in (out, out / CHECKPOINTS, out / "samples"):
        removed += clean_stale_temps(folder)
    return removed





# ---------------------------------------------------------------------------------------------
# the record in config.json, resume compatibility


def checkpoint_record(cfg: Config, data: DataMeta, model: nn.Module) -> dict[str, Any]:
    """Everything config.json records besides the step and the format tag."""
    from dataclasses import asdict

    from xdlm_vision.backbones import count_parameters

    backbone_cfg = asdict(model.config) if hasattr(model, "config") else {}
    return {
        "toolkit_version": __version__,
        "config": config_to_dict(cfg),
        "data": data.to_dict(),
        "tokenizer": data.tokenizer_spec,
        "class_names": data.class_names,
        "num_classes": data.num_classes,
        "null_class": data.num_classes,
        "num_tokens": data.num_tokens,
        "mask_id": data.num_tokens,
        "grid_shape": list(data.grid_shape),
        "backbone": {
            "kind": cfg.model.kind,
            "size": cfg.model.size,
            "config": backbone_cfg,
            "num_parameters": count_parameters(model),
        },
    }


def check_resume_compatible(saved: dict, cfg: Config, where: Path) -> list[str]:
    """UserError if the model-defining sections of ``cfg`` differ from the saved run config
    (``saved`` = config.json's ``config``); returns the other differences, one line each."""
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
