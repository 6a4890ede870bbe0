"""Official XDLM files -> a built model and its checkpoint record (:func:`load_official`), with the
architecture inferred by :mod:`xdlm_vision.official.architecture` (``docs/official.md``). :mod:`xdlm_vision.checkpoints` (the layer above) turns the
pair into a ``LoadedModel`` or writes it as a checkpoint directory (``import-official``).

Weights: the EMA weights by default (``ema.shadow_params`` zipped with the official parameter order,
every shape checked), the raw ``state_dict`` weights with ``ema=False``. Process: the official one
(:class:`~xdlm_vision.official.process.OfficialProcess`), recorded in the model's config
(``diffusion.k = k'``, ``diffusion.schedule = loglinear``, N' data tokens), from which
``build.diffusion_spec`` makes the model's ``DiffusionSpec``, and in the record's ``official`` section.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xdlm_vision.errors import UserError
from xdlm_vision.official.architecture import (
    CIFAR10_CLASSES,
    TORCH_SUFFIXES,
    OfficialArch,
    config_value,
    infer_architecture,
)
from xdlm_vision.official.process import SCHEDULE
from xdlm_vision.official.reader import OfficialFile, is_our_checkpoint, read_official


def zip_shadow(model: nn.Module, shadow: list[torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Name the EMA list with ``model``'s parameter order, checking length and every shape."""
    names = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    if len(shadow) != len(names):
        raise UserError(f"{path}: ema.shadow_params has {len(shadow)} tensors but the official model has "
                        f"{len(names)} parameters; refusing to guess which is which")
    out = {}
    for i, ((name, shape), tensor) in enumerate(zip(names, shadow)):
        if tuple(tensor.shape) != shape:
            raise UserError(f"{path}: ema.shadow_params[{i}] has shape {tuple(tensor.shape)} but {name} needs "
                            f"{shape}; the EMA list does not match the weights")
        out[name] = tensor
    return out


@dataclass
class OfficialModel:
    """A built official backbone with the weights loaded, and where they came from."""

    model: nn.Module
    arch: OfficialArch
    file: OfficialFile
    ema: bool  # EMA weights (True) or the raw state_dict weights


def build_official(f: OfficialFile, ema: bool = True, algo: str | None = None, k: float | None = None) -> OfficialModel:
    """Infer the architecture, build it and load the EMA (default) or raw weights with strict=True."""
    from xdlm_vision.backbones import build_backbone

    arch = infer_architecture(f, algo, k)
    model = build_backbone(arch.kind, num_tokens=arch.num_codes + 2, grid_shape=arch.grid_shape,
                           num_classes=arch.num_classes, time_conditioning=arch.time_conditioning, **arch.overrides)
    buffers = {n: b for n, b in model.state_dict().items() if n not in dict(model.named_parameters())}
    if ema and f.shadow is None:
        # a state dict / safetensors export stores one set of weights (the sampler's): use it as stored
        arch.assumed.append("the file stores one set of weights (no ema.shadow_params): used as stored")
        state = f.raw
    elif ema:
        state = {**buffers, **(f.raw or {}), **zip_shadow(model, f.shadow, f.path)}
        state = {n: state[n] for n in model.state_dict()}  # raw names that are not parameters: buffers only
    else:
        if f.raw is None:
            raise UserError(f"{f.path} holds only EMA weights (no state_dict); drop --no-ema")
        state = f.raw
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise UserError(f"{f.path}: the weights do not load into the official {arch.kind} ({detail})") from None
    return OfficialModel(model.eval().requires_grad_(False), arch, f, ema)


def _config_dict(arch: OfficialArch) -> dict:
    if arch.kind == "official_dit":
        data = {"name": "codes"}
        tokenizer = {"kind": "llamagen", "codebook_size": arch.num_codes}
    else:
        data = {"name": "cifar10"}
        tokenizer = {"kind": "pixel", "levels": arch.num_codes, "channels": 3}
    return {"data": data, "tokenizer": tokenizer,
            "model": {"kind": arch.kind, "size": "tiny", "time_conditioning": arch.time_conditioning,
                      "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in arch.overrides.items()}},
            "diffusion": {"k": arch.process.k_prime, "schedule": SCHEDULE}}


def inner_tokenizer(om: OfficialModel, vq_file: Path | None) -> dict:
    """The tokenizer spec an official model decodes with: pixels, or the LlamaGen VQ (``vq_file``
    when the importer wrote the embedded one, else what the file records)."""
    arch = om.arch
    if arch.kind == "official_unet":
        return {"kind": "pixel", "levels": arch.num_codes, "channels": 3}
    if vq_file is not None:
        from xdlm_vision.tokenizers.checkpoints import sha256_file

        return {"kind": "llamagen", "size": None, "config": vq_config(om.file).to_dict(),
                "checkpoint": str(vq_file.resolve()), "sha256": sha256_file(vq_file)}
    recorded = config_value(om.file.hparams, "data", "tokenizer_checkpoint")
    spec = {"kind": "llamagen", "size": "VQ-16", "checkpoint": recorded if isinstance(recorded, str) else None}
    if om.file.vq_state:  # the architecture of the VQ the .ckpt embeds (VQ-16 for the released models)
        from xdlm_vision.tokenizers.llamagen_config import resolve_config

        resolved = resolve_config(vq_config(om.file))
        spec.update(size=resolved.size, config=resolved.config.to_dict())
    return spec


def vq_config(f: OfficialFile):
    """The LlamaGen config of the VQ embedded in an ImageNet .ckpt, read off its weights."""
    from xdlm_vision.tokenizers.llamagen_config import LlamaGenVQConfig

    s = {k: tuple(v.shape) for k, v in (f.vq_state or {}).items()}

    def levels(part: str) -> int:
        return 1 + max([int(k.split(".")[2]) for k in s if k.startswith(f"{part}.conv_blocks.")] + [0])

    def res(part: str) -> int:
        return len({k.split(".")[4] for k in s if k.startswith(f"{part}.conv_blocks.0.res.")})

    base = s["encoder.conv_in.weight"][0]
    enc = tuple(s.get(f"encoder.conv_blocks.{i}.res.0.conv1.weight", (base,))[0] // base for i in range(levels("encoder")))
    args = f.vq_args
    mult = args.get("encoder_ch_mult") or list(enc)
    return LlamaGenVQConfig(
        base_channels=base, encoder_ch_mult=tuple(mult), decoder_ch_mult=tuple(args.get("decoder_ch_mult") or mult),
        encoder_res_blocks=res("encoder"), decoder_res_blocks=res("decoder"), z_channels=s["encoder.conv_out.weight"][0],
        codebook_size=s["quantize.embedding.weight"][0], codebook_dim=s["quantize.embedding.weight"][1],
        codebook_l2_norm=bool(args.get("codebook_l2_norm", True)),
        codebook_show_usage="quantize.codebook_used" in s,
    )


def official_record(om: OfficialModel, inner_spec: dict) -> dict:
    """The checkpoint record (config.json without the format tag) of an official model: our run
    config with the official process (``diffusion.k = k'``, ``loglinear``, N' data tokens), the
    data section, the clamping tokenizer spec and the ``official`` provenance section."""
    arch, f = om.arch, om.file
    proc = arch.process
    class_names = CIFAR10_CLASSES if arch.kind == "official_unet" and arch.num_classes == 10 else \
        [str(i) for i in range(arch.num_classes)]
    tokenizer = {"kind": "official", "num_codes": arch.num_codes, "inner": inner_spec}
    return {
        "step": 0,
        "config": _config_dict(arch),
        "data": {"num_tokens": proc.num_states, "grid_shape": list(arch.grid_shape), "num_classes": arch.num_classes,
                 "class_names": class_names, "tokenizer_spec": tokenizer},
        "tokenizer": tokenizer,
        "official": {
            "source_file": str(f.path.resolve()), "sha256": f.sha256, "layout": f.layout,
            "weights": "ema" if om.ema else "raw", "ema": {k: v for k, v in f.ema_info.items() if v is not None},
            "algo": arch.algo, "k1": arch.k1, "assumed": arch.assumed,
            "process": {"num_codes": proc.num_codes, "vocab_size": proc.vocab_size, "num_states": proc.num_states,
                        "k_prime": proc.k_prime, "schedule": SCHEDULE, "mask_id_official": proc.num_codes,
                        "mask_id_ours": proc.num_states, "special_ids_official": [proc.num_codes + 1, proc.num_codes + 2],
                        "decode": f"ids >= {proc.num_codes} clamped to {proc.num_codes - 1}",
                        "time_conditioning": arch.time_conditioning},
            "architecture": {"kind": arch.kind, **{k: list(v) if isinstance(v, tuple) else v
                                                   for k, v in arch.overrides.items()}},
        },
    }


def is_official_file(path: str | Path) -> bool:
    """True for what the loaders should hand to :func:`load_official`: a weights file, or a directory
    holding an official ``model.safetensors`` + ``config.json`` export, that is not part of one of
    our checkpoints (their config.json carries our format tag). Weights beside a config.json that
    cannot be parsed are left to the checkpoint loader, which names the broken file."""
    p = Path(path)
    if is_our_checkpoint(p):
        return False
    if p.is_dir():
        return (p / "model.safetensors").is_file() and _readable_json(p / "config.json")
    beside = p.parent / "config.json"
    return p.is_file() and p.suffix in TORCH_SUFFIXES and not (
        p.name in ("ema.safetensors", "model.safetensors") and beside.is_file() and not _readable_json(beside))


def _readable_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True


def load_official(path: str | Path, ema: bool = True, flag: str = "--checkpoint", algo: str | None = None,
                  k: float | None = None) -> tuple[OfficialModel, dict]:
    """An official file -> (the built model with its weights, its checkpoint record).

    :func:`xdlm_vision.checkpoints.load_checkpoint` turns the pair into the same
    :class:`~xdlm_vision.checkpoints.LoadedModel` it returns for our own checkpoints; the record's
    VQ is the one the file names (``--tokenizer-checkpoint`` replaces it when sampling)."""
    om = build_official(read_official(path, flag), ema, algo, k)
    return om, official_record(om, inner_tokenizer(om, None))


__all__ = ["OfficialArch", "OfficialModel", "build_official", "infer_architecture", "inner_tokenizer",
           "is_official_file", "load_official", "official_record", "vq_config", "zip_shadow"]
