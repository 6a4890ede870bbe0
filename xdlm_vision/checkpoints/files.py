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
half-written directory that :func:`latest_checkpoint` would pick.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdlm_vision import __version__
from xdlm_vision.config import Config, config_from_dict, config_to_dict
from xdlm_vision.data.meta import DataMeta
from xdlm_vision.errors import UserError
from xdlm_vision.io import replace_dir, write_text_atomic

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
    from safetensors.torch import save_model

    root = Path(out_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / step_dir_name(step)
    tmp = root / f".tmp_{step_dir_name(step)}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tag = {"format": "pt", "step": str(step)}
    save_model(model, str(tmp / "model.safetensors"), metadata=tag)
    save_model(ema_model, str(tmp / "ema.safetensors"), metadata=tag)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **record}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
    torch.save(train_state, tmp / "train_state.pt")
    replace_dir(tmp, final)  # re-saving the same step (e.g. after a resume) swaps the old one out
    write_text_atomic(root / LATEST, json.dumps({"step": step, "dir": final.name}))
    if keep > 0:
        prune_checkpoints(root, keep)
    return final


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (tuple, set)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories of a run, oldest first."""
    root = Path(out_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    dirs = [p for p in root.glob("step_*") if is_complete(p)]
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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{flag}: cannot read {path} ({exc.__class__.__name__}: {exc})") from None





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
