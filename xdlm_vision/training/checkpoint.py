"""Checkpoints (DESIGN.md §3): safetensors weights, a JSON config, and a weights-only resume state.

Layout of a run directory ``OUT``::

    OUT/checkpoints/step_0003000/
        model.safetensors   trained weights (float32)
        ema.safetensors     EMA weights, same names and shapes (what sample/eval use by default)
        config.json         resolved run config, backbone config, tokenizer spec, classes, version
        train_state.pt      optimizer, step, EMA counter, RNG states, data cursor (tensors and
                            plain containers only; read with torch.load(weights_only=True))
    OUT/checkpoints/latest.json   {"step": 3000, "dir": "step_0003000"}

Every checkpoint is written into a hidden temporary directory and moved into place with
``os.replace``; ``latest.json`` is replaced the same way afterwards. A crash therefore leaves
either the previous complete checkpoint or the new complete one, never a half-written directory
that :func:`latest_checkpoint` would pick.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xdlm_vision.errors import UserError

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"
FILES = ("model.safetensors", "ema.safetensors", "config.json", "train_state.pt")
FORMAT = "xdlm-vision-checkpoint"
FORMAT_VERSION = 1


def step_dir_name(step: int) -> str:
    return f"step_{step:07d}"


def is_complete(ckpt_dir: Path) -> bool:
    return ckpt_dir.is_dir() and all((ckpt_dir / f).is_file() for f in FILES)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# RNG states as weights-only-loadable containers


def capture_rng_state() -> dict[str, Any]:
    """torch / CUDA / numpy / python RNG states as tensors, lists, ints and floats."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "python": {"version": int(py_version), "state": list(py_state), "gauss": py_gauss},
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["gauss"])
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


# ---------------------------------------------------------------------------------------------
# writing


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    model: nn.Module,
    ema_model: nn.Module,
    meta: dict[str, Any],
    train_state: dict[str, Any],
    keep: int = 0,
) -> Path:
    """Write ``OUT/checkpoints/step_XXXXXXX`` atomically and point ``latest.json`` at it.

    ``model`` / ``ema_model`` are unwrapped modules; ``meta`` goes to config.json (the step and the
    format tag are added); ``train_state`` must hold only weights-only-loadable values.
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
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": step, **meta}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=_json_default))
    torch.save(train_state, tmp / "train_state.pt")
    if final.exists():  # re-saving the same step (e.g. after a resume): swap it out atomically
        old = root / f".old_{step_dir_name(step)}_{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    _atomic_write_text(root / LATEST, json.dumps({"step": step, "dir": final.name}))
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


@dataclass
class LoadedModel:
    """A trained backbone ready for sampling/evaluation, with everything needed to use it."""

    model: nn.Module  # backbone in eval mode on the requested device
    config: Any  # the run's xdlm_vision.config.Config
    tokenizer_spec: dict  # a tokenizer factory spec: {"kind": "pixel" | "llamagen" | "diffusers", ...}
    class_names: list[str]  # C names; class id C is the null class
    num_classes: int  # C
    num_tokens: int  # N data tokens; mask id N
    grid_shape: tuple[int, ...]  # token grid (h, w) or (L,)
    step: int  # optimizer step of the checkpoint
    ema: bool  # True if the EMA weights were loaded
    path: Path  # the step directory
    meta: dict = field(default_factory=dict)  # the full config.json

    @property
    def null_class(self) -> int:
        return self.num_classes

    def tokenizer(self, device: str | torch.device = "cpu", checkpoint: str | None = None):
        """The image tokenizer of this model (pixel, or the VQ recorded by extract-codes;
        ``checkpoint`` overrides the VQ weights path)."""
        from xdlm_vision.tokenizers.factory import load_tokenizer

        return load_tokenizer(self.tokenizer_spec, device=device, checkpoint=checkpoint)


def load_checkpoint(
    path: str | Path, ema: bool = True, device: str | torch.device = "cpu", flag: str = "--checkpoint"
) -> LoadedModel:
    """Rebuild the backbone of a checkpoint and load its EMA (default) or raw weights.

    ``path`` may be a step directory, a run directory or its ``checkpoints/`` folder (the latest
    checkpoint is used). Missing or corrupt files raise UserError naming ``flag``.
    """
    from xdlm_vision.config import config_from_dict
    from xdlm_vision.official import is_official_file, load_official
    from xdlm_vision.training.build import DataMeta, build_model

    if is_official_file(path):  # the XDLM authors' released files (docs/official.md)
        return load_official(path, ema=ema, device=device, flag=flag)
    ckpt = resolve_checkpoint_dir(path, flag)
    meta = read_checkpoint_config(ckpt, flag)
    try:
        cfg = config_from_dict(meta["config"])
        data = DataMeta.from_dict(meta["data"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{flag} {ckpt}: config.json lacks {exc}") from None
    weights = ckpt / ("ema.safetensors" if ema else "model.safetensors")
    if not weights.is_file():
        raise UserError(f"{flag} {ckpt} has no {weights.name}; this checkpoint only supports "
                        f"{'--no-ema' if ema else '--ema'}")
    model = build_model(cfg, data)
    load_weights(model, weights, flag)
    model.to(device).eval().requires_grad_(False)
    return LoadedModel(
        model=model,
        config=cfg,
        tokenizer_spec=dict(meta.get("tokenizer", data.tokenizer_spec)),
        class_names=list(data.class_names),
        num_classes=data.num_classes,
        num_tokens=data.num_tokens,
        grid_shape=tuple(data.grid_shape),
        step=int(meta.get("step", 0)),
        ema=ema,
        path=ckpt,
        meta=meta,
    )
