"""Official XDLM files -> a built model and its checkpoint record (:func:`load_official`), with the
architecture inferred from the weights' shapes and cross-checked against the file's own
configuration (``docs/official.md``). :mod:`xdlm_vision.checkpoints` (the layer above) turns the
pair into a ``LoadedModel`` or writes it as a checkpoint directory (``import-official``).

Weights: the EMA weights by default (``ema.shadow_params`` zipped with the official parameter order,
every shape checked), the raw ``state_dict`` weights with ``ema=False``. Process: the official one
(:class:`~xdlm_vision.official.process.OfficialProcess`), recorded in the model's config
(``diffusion.k = k'``, ``diffusion.schedule = loglinear``, N' data tokens), from which
``build.diffusion_spec`` makes the model's ``DiffusionSpec``, and in the record's ``official`` section.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xdlm_vision.errors import UserError
from xdlm_vision.official.process import ALGOS, DEFAULT_K1, SCHEDULE, OfficialProcess
from xdlm_vision.official.reader import OfficialFile, is_our_checkpoint, read_official

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")


@dataclass
class OfficialArch:
    """Backbone kind and configuration inferred from an official file."""

    kind: str  # official_dit | official_unet
    overrides: dict  # architecture fields for build_backbone
    num_codes: int  # N
    num_classes: int  # C
    grid_shape: tuple[int, ...]  # our token grid
    time_conditioning: bool
    algo: str  # mdlm | udlm | xdlm
    k1: float
    assumed: list[str] = field(default_factory=list)  # what the file did not say

    @property
    def process(self) -> OfficialProcess:
        return OfficialProcess(self.num_codes, self.k1)


def _get(d: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _check(name: str, inferred: Any, said: Any, path: Path) -> None:
    if said is not None and not isinstance(said, str) and said != inferred:
        raise UserError(f"{path}: the weights give {name} = {inferred} but the file's config says {said}; "
                        "the file is inconsistent")


def _square_grid(length: int, channels: int = 1) -> tuple[int, int] | None:
    side = math.isqrt(length // channels)
    return (side, side * channels) if side * side * channels == length else None


def _algo(f: OfficialFile, algo: str | None, k: float | None, assumed: list[str]) -> tuple[str, float]:
    said = _get(f.hparams, "algo", "name")
    said = said.lower() if isinstance(said, str) else None
    if said == "gidd" or algo == "gidd":
        raise UserError(f"{f.path}: GIDD models use a time-dependent mix of mask and uniform noise that is not the "
                        "XDLM process of this toolkit; they cannot be sampled or scored here")
    if said is not None and said not in ALGOS:
        raise UserError(f"{f.path}: the file says algo {said!r}; supported: {', '.join(ALGOS)}")
    if algo is not None and said is not None and algo != said:
        raise UserError(f"--algo {algo} contradicts the file, which was trained as {said}")
    name = said or algo
    if name is None:
        name = "xdlm"
        assumed.append("algo xdlm (the file does not say; pass --algo)")
    elif said is None:
        assumed.append(f"algo {name} (from --algo)")
    k_said = _get(f.hparams, "algo", "k1")
    if k is not None:
        if not (math.isfinite(k) and 0.0 <= k <= 1.0):
            raise UserError(f"--k must lie in [0, 1], got {k}")
        if isinstance(k_said, (int, float)) and not math.isclose(float(k_said), k):
            raise UserError(f"--k {k} contradicts the file, which records k1 = {k_said}")
        if not isinstance(k_said, (int, float)):
            assumed.append(f"k1 {k} (from --k)")
        return name, float(k)
    if name in ("mdlm", "udlm"):
        return name, DEFAULT_K1[name]
    if isinstance(k_said, (int, float)):
        return name, float(k_said)
    assumed.append(f"k1 {DEFAULT_K1[name]} (the paper's default; the file does not say, pass --k)")
    return name, DEFAULT_K1[name]


def _dit_from_shapes(shapes: dict[str, tuple[int, ...]], f: OfficialFile, assumed: list[str]) -> dict:
    v, d = shapes["vocab_embed.embedding"]
    cond = shapes["sigma_map.mlp.0.weight"][0]
    blocks = sum(1 for k in shapes if k.startswith("blocks.") and k.endswith(".norm1.weight"))
    classes = shapes["y_embedder.embedding_table.weight"][0] - 1
    mlp_ratio = shapes["blocks.0.mlp.0.weight"][0] // d if blocks else 4
    m = _get(f.hparams, "model") or {}
    heads = None
    if "rotary_emb.inv_freq" in shapes:
        heads = d // (2 * shapes["rotary_emb.inv_freq"][0])
    elif isinstance(m.get("n_heads"), int):
        heads = m["n_heads"]
    else:
        from xdlm_vision.backbones.official_dit import OFFICIAL_DIT_SIZES

        heads = next((s["n_heads"] for s in OFFICIAL_DIT_SIZES.values() if s["hidden_size"] == d), max(1, d // 64))
        assumed.append(f"{heads} attention heads (not recorded in the file)")
    for name, inferred in (("hidden_size", d), ("cond_dim", cond), ("n_blocks", blocks), ("n_heads", heads)):
        _check(f"model.{name}", inferred, m.get(name), f.path)
    _check("vocab_size", v, f.vocab_size, f.path)
    _check("data.num_classes", classes, _get(f.hparams, "data", "num_classes"), f.path)
    return {"v": v, "classes": classes, "overrides": {"hidden_size": d, "n_blocks": blocks, "n_heads": heads,
                                                     "cond_dim": cond, "mlp_ratio": mlp_ratio}}


def _unet_from_shapes(shapes: dict[str, tuple[int, ...]], f: OfficialFile) -> dict:
    ch = shapes["temb_modules.0.weight"][1]
    classes = shapes["cond_map.embedding_table.weight"][0] - 2
    # walk the downsampling modules: ResBlocks (conv0), attention (GroupNorm_0), Downsample (conv)
    kinds = []
    i = 0
    while True:
        p = f"downsampling_modules.{i}."
        if f"{p}conv0.weight" in shapes:
            kinds.append(("res", shapes[f"{p}conv0.weight"][0]))
        elif f"{p}GroupNorm_0.weight" in shapes:
            kinds.append(("attn", 0))
        elif f"{p}conv.weight" in shapes:
            kinds.append(("down", 0))
        else:
            break
        i += 1
    scales, current = [], []
    for kind in kinds:
        if kind[0] == "down":
            scales.append(current)
            current = []
        else:
            current.append(kind)
    scales.append(current)
    res_counts = {sum(1 for k in s if k[0] == "res") for s in scales}
    if len(res_counts) != 1 or not all(s and s[0][0] == "res" for s in scales):
        raise UserError(f"{f.path}: the U-Net's downsampling modules do not follow the official layout")
    attn = [j for j, s in enumerate(scales) if any(k[0] == "attn" for k in s)]
    overrides = {"ch": ch, "num_res_blocks": res_counts.pop(),
                 "ch_mult": tuple(max(k[1] for k in s if k[0] == "res") // ch for s in scales),
                 "scale_count_to_put_attn": attn[0] if attn else -1}
    m = _get(f.hparams, "model") or {}
    for name in ("ch", "num_res_blocks"):
        _check(f"model.{name}", overrides[name], m.get(name), f.path)
    if isinstance(m.get("ch_mult"), list):
        _check("model.ch_mult", list(overrides["ch_mult"]), m["ch_mult"], f.path)
    _check("data.num_classes", classes, _get(f.hparams, "data", "num_classes"), f.path)
    return {"classes": classes, "overrides": overrides}


def _num_codes(vocab_size: int, f: OfficialFile) -> int:
    """N = V - 3 (codes, [MASK], two special ids); a vocabulary without two codes is not a model file."""
    if vocab_size - 3 < 2:
        raise UserError(f"{f.path}: a vocabulary of {vocab_size} ids leaves fewer than 2 codes; not an official model")
    return vocab_size - 3


def infer_architecture(f: OfficialFile, algo: str | None = None, k: float | None = None) -> OfficialArch:
    """Kind, widths, vocabulary, classes and grid from the weights (raw names, or the EMA list's
    shapes when the file has no names), cross-checked with the file's own config."""
    assumed: list[str] = []
    shapes = f.shapes()
    if not shapes and f.shadow is not None:
        shapes = _names_for_shadow(f, assumed)
    name, k1 = _algo(f, algo, k, assumed)
    tc = bool(_get(f.hparams, "algo", "time_conditioning"))
    length = _get(f.hparams, "model", "length")
    if "vocab_embed.embedding" in shapes:
        info = _dit_from_shapes(shapes, f, assumed)
        grid = _square_grid(length) if isinstance(length, int) else None
        if grid is None:
            grid = (16, 16)
            assumed.append("a 16x16 token grid (ImageNet-256 with VQ-16; model.length not recorded)")
        grid = (grid[0], grid[0])
        return OfficialArch("official_dit", info["overrides"], _num_codes(info["v"], f), info["classes"], grid, tc,
                            name, k1, assumed)
    if "temb_modules.0.weight" in shapes:
        info = _unet_from_shapes(shapes, f)
        v = f.vocab_size
        if v is None:
            v = 259
            assumed.append("V = 259 (256 pixel levels + mask + 2 special ids; not recorded)")
        grid = _square_grid(length, 3) if isinstance(length, int) else None
        if grid is None:
            grid = (32, 96)
            assumed.append("32x32 RGB images (CIFAR-10; model.length not recorded)")
        return OfficialArch("official_unet", info["overrides"], _num_codes(v, f), info["classes"], grid, tc, name, k1,
                            assumed)
    raise UserError(f"{f.path}: neither the official DiT (vocab_embed.*) nor the official U-Net (temb_modules.*) "
                    "weights are in this file")


def _names_for_shadow(f: OfficialFile, assumed: list[str]) -> dict[str, tuple[int, ...]]:
    """An EMA-only file has no names: read the architecture off the shapes of the list."""
    s = [tuple(t.shape) for t in f.shadow]
    if len(s) >= 11 and len(s[0]) == 2 and s[1][1:] == (256,):
        n_blocks = (len(s) - 11) // 10
        shapes = {"vocab_embed.embedding": s[0], "sigma_map.mlp.0.weight": s[1],
                  "y_embedder.embedding_table.weight": s[5]}
        for b in range(n_blocks):
            shapes[f"blocks.{b}.norm1.weight"] = s[6 + 10 * b]
            shapes[f"blocks.{b}.mlp.0.weight"] = s[10 + 10 * b]
        return shapes
    if len(s) >= 6 and len(s[0]) == 2 and s[0][0] == 4 * s[0][1]:
        from xdlm_vision.backbones.official_unet import OFFICIAL_UNET_SIZES

        for size, widths in OFFICIAL_UNET_SIZES.items():
            cand = _try_unet(widths, s)
            if cand is not None:
                assumed.append(f"the official U-Net '{size}' layout (an EMA list has no names)")
                return cand
    raise UserError(f"{f.path}: cannot tell the architecture from an EMA list of {len(s)} unnamed tensors")


def _try_unet(widths: dict, s: list[tuple[int, ...]]) -> dict | None:
    from xdlm_vision.backbones.official_unet import OfficialUNet, OfficialUNetConfig

    ch = s[0][1]
    with torch.device("meta"):
        model = OfficialUNet(OfficialUNetConfig(num_classes=s[-1][0] - 2, **{**widths, "ch": ch}))
    named = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    if [shape for _, shape in named] != s:
        return None
    return dict(named)


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
    recorded = _get(om.file.hparams, "data", "tokenizer_checkpoint")
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
