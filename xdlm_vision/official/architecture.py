"""Architecture of an official XDLM file, read off its weights' shapes and cross-checked against the
file's own configuration (``docs/official.md``): DiT or U-Net, widths, depth, vocabulary, classes,
the algorithm and k1, and the parameter names an unnamed EMA shadow list stands for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xdlm_vision.errors import UserError
from xdlm_vision.official.process import ALGOS, DEFAULT_K1, OfficialProcess
from xdlm_vision.official.reader import OfficialFile

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


def config_value(d: dict, *keys: str) -> Any:
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
    said = config_value(f.hparams, "algo", "name")
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
    k_said = config_value(f.hparams, "algo", "k1")
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
    m = config_value(f.hparams, "model") or {}
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
    _check("data.num_classes", classes, config_value(f.hparams, "data", "num_classes"), f.path)
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
    m = config_value(f.hparams, "model") or {}
    for name in ("ch", "num_res_blocks"):
        _check(f"model.{name}", overrides[name], m.get(name), f.path)
    if isinstance(m.get("ch_mult"), list):
        _check("model.ch_mult", list(overrides["ch_mult"]), m["ch_mult"], f.path)
    _check("data.num_classes", classes, config_value(f.hparams, "data", "num_classes"), f.path)
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
    tc = bool(config_value(f.hparams, "algo", "time_conditioning"))
    length = config_value(f.hparams, "model", "length")
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


__all__ = ["CIFAR10_CLASSES", "TORCH_SUFFIXES", "OfficialArch", "config_value", "infer_architecture"]
