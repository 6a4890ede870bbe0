"""Training configuration: dataclasses with commented defaults, YAML presets, ``key=value`` overrides.

A run is described by one :class:`Config` made of small sections (``data``, ``tokenizer``,
``model``, ``diffusion``, ``optim``, ``training``, ``sampling``). It is resolved in three layers:

1. the dataclass defaults below,
2. a YAML preset (``digits``, ``cifar10``, ``imagenet``) or a user's ``PATH.yaml``,
3. command-line overrides with dotted keys, e.g. ``optim.lr=1e-3 diffusion.k=0``.

Every key is checked against the field names and every value against the field's type; a wrong
key or value raises :class:`~xdlm_vision.errors.UserError` listing the valid keys. The resolved
config is printed by ``xdlm-vision train ... --dry-run`` and saved as JSON in every checkpoint.

Where the presets live: the YAML files are package data in ``xdlm_vision/configs/`` so that
they are found after a plain (non-editable) ``pip install``; the repository's top-level
``configs/`` holds symlinks to them, so ``configs/digits.yaml`` is the path to read and edit in a
checkout and there is only one copy of each file. :func:`preset_path` looks in the package only.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xdlm_vision.config_types import build_dataclass, dataclass_keys, field_types
from xdlm_vision.errors import UserError

PRESET_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class DataConfig:
    name: str = "digits"  # dataset registry key: digits | cifar10 | imagefolder | codes
    path: str | None = None  # dataset root on disk (required to train cifar10/imagenet; digits is embedded)
    val_path: str | None = None  # optional separate validation root (codes/imagefolder); None = dataset default
    num_workers: int = 0  # DataLoader worker processes per training process
    max_val_samples: int | None = None  # cap on validation examples (None = the whole split)


@dataclass
class TokenizerConfig:
    kind: str = "pixel"  # pixel | llamagen (VQ codes from extract-codes; the VQ only decodes sample grids)
    levels: int = 17  # pixel tokenizer: intensity levels = codebook size N
    channels: int = 1  # pixel tokenizer: colour channels per pixel
    path: str | None = None  # VQ weights for sample grids (None: the path recorded by extract-codes, if any)
    codebook_size: int = 16384  # VQ tokenizer: number of codes N


@dataclass
class ModelConfig:
    kind: str = "dit"  # backbone registry key: dit | unet
    size: str = "DiT-digits"  # size registry name (DiT-tiny/digits/S/B/L/XL, small, unet-tiny/digits/cifar)
    time_conditioning: bool = False  # feed t to the backbone (the paper feeds a zero timestep)
    overrides: dict = field(default_factory=dict)  # extra keyword arguments for build_backbone


@dataclass
class DiffusionConfig:
    k: float = 0.1  # uniform-noise share: 0 = MDLM, 0 < k < 1 = XDLM (paper: 0.1), 1 = UDLM
    schedule: str = "linear"  # alpha_t schedule: linear (1 - t) | cosine | loglinear (1 - (1 - 1e-3) t)


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate of AdamW
    betas: list = field(default_factory=lambda: [0.9, 0.999])  # AdamW (beta1, beta2)
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    eps: float = 1e-8  # AdamW epsilon
    warmup_steps: int = 2500  # linear warm-up from 0 to lr over this many optimizer steps
    lr_schedule: str = "constant"  # after warm-up: constant | cosine (decays to min_lr_ratio * lr)
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm (0 = no clipping, the norm is still logged)


@dataclass
class TrainingConfig:
    steps: int = 500_000  # optimizer steps in the whole run
    batch_size: int = 512  # GLOBAL batch per optimizer step (all processes x accumulation)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    mixed_precision: str = "bf16"  # bf16 | fp16 | no (accelerate autocast; the loss is float32)
    ema_decay: float = 0.9999  # EMA decay; effective decay min(ema_decay, (1+n)/(10+n)) warms it up
    ema_warmup: bool = True  # use the (1+n)/(10+n) warm-up above
    label_dropout: float = 0.1  # probability of replacing a label by the null class C (for CFG)
    seed: int = 0  # seeds data order, noise, label dropout and init; a run depends only on it
    log_every: int = 100  # steps between metrics.jsonl lines
    val_every: int = 5000  # steps between validation NELBO passes (0 = only at the end)
    val_batch_size: int = 256  # validation micro-batch per process
    sample_every: int = 10000  # steps between sample-grid PNGs (0 = only at the end)
    ckpt_every: int = 10000  # steps between checkpoints (the last step is always saved)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk (0 = keep all)
    tensorboard: bool = True  # also log to OUT/tensorboard when tensorboard is installed


@dataclass
class SamplingConfig:
    num_steps: int = 8  # sampler steps for the periodic sample grid
    cfg: float = 0.0  # classifier-free guidance gamma (0 = plain conditional sampling)
    per_class: int = 8  # samples per class in the grid (one row per class)
    classes: list = field(default_factory=list)  # class ids in the grid ([] = up to 10 evenly spaced)
    seed: int = 0  # sample i of the grid uses seed + i


@dataclass
class TextConfig:
    tokenizer: str = "byte"  # "byte" (256 bytes + end-of-text, N = 257) or a local HuggingFace tokenizer dir/json
    seq_len: int = 128  # tokens per packed training sequence (the DiT's 1-D grid length)
    text_field: str = "text"  # JSONL key holding the document text
    label_field: str | None = None  # JSONL key of a class label to condition on (None = unconditional)
    val_fraction: float = 0.05  # share of documents held out for validation (when data.val_path is unset)
    split_seed: int = 0  # seed of the deterministic document-level train/validation split
    max_documents: int | None = None  # use only the first this many documents (None = all); for quick runs


def text_options(cfg) -> TextConfig:
    """The ``text`` section of a run config, or the defaults when the config has none."""
    section = getattr(cfg, "text", None)
    if section is None:
        return TextConfig()
    if isinstance(section, dict):
        return TextConfig(**section)
    return section


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    text: TextConfig = field(default_factory=TextConfig)  # text-LM mode options (data.name=text)


# ---------------------------------------------------------------------------------------------
# public API


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """All dotted keys of ``cls`` (``model.overrides`` accepts any sub-key)."""
    return dataclass_keys(cls, prefix)


def config_from_dict(raw: dict) -> Config:
    """Validated :class:`Config` from a nested dict (missing keys take the defaults)."""
    cfg = build_dataclass(Config, raw)
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (JSON/YAML serialisable) of a config."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Config) -> str:
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=False)


def preset_names() -> list[str]:
    """Names of the presets shipped with the package (``digits``, ``cifar10``, ``imagenet``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name_or_path: str) -> Path:
    """A preset name (``digits``) or a path to a YAML file -> the file to read."""
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and candidate.is_file():
        return candidate
    path = Path(name_or_path)
    if path.is_file():
        return path
    raise UserError(
        f"no preset or YAML file {name_or_path!r}; pass one of {', '.join(preset_names())} or a path to a .yaml file"
    )


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``key = "a.b.c"``, validating the path against Config."""
    parts = key.split(".")
    cls: Any = Config
    node = raw
    for i, part in enumerate(parts):
        hints = field_types(cls) if cls is not None else None
        if hints is not None and part not in hints:
            raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
        last = i == len(parts) - 1
        if last:
            node[part] = value
            return
        tp = hints[part] if hints is not None else None
        if hints is not None and not dataclasses.is_dataclass(tp) and tp is not dict:
            raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"config key {'.'.join(parts[: i + 1])} is not a section")
        cls = tp if dataclasses.is_dataclass(tp) else None  # inside a free-form dict: anything goes


def _is_str_field(key: str) -> bool:
    """True if the dotted ``key`` names a ``str`` (or ``str | None``) field of Config."""
    cls: Any = Config
    tp: Any = None
    for part in key.split("."):
        if not dataclasses.is_dataclass(cls):
            return False
        tp = field_types(cls).get(part)
        if tp is None:
            return False
        cls = tp
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp is str or args == [str]


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", 0.001)``; values are parsed as YAML scalars/lists."""
    import yaml

    if "=" not in text:
        raise UserError(f"override {text!r} must look like key=value (e.g. optim.lr=1e-3)")
    key, _, value_text = text.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"override {text!r}: cannot parse the value ({exc.__class__.__name__})") from None
    return key, value


def load_config(preset: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Resolve defaults <- preset YAML <- ``key=value`` overrides into a validated Config.

    ``preset`` is a shipped preset name or a YAML path (None: dataclass defaults only).
    """
    import yaml

    raw: dict = {}
    if preset is not None:
        path = preset_path(preset)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"cannot parse config file {path}: {' '.join(str(exc).split())}") from None
        except UnicodeDecodeError:
            raise UserError(f"config file {path} is not UTF-8 text (a binary file?)") from None
        except OSError as exc:
            raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
        if not isinstance(raw, dict):
            raise UserError(f"config file {path} must hold a mapping of sections")
    for text in overrides:
        key, value = parse_override(text)
        if _is_str_field(key) and isinstance(value, (bool, int, float)):
            value = text.partition("=")[2].strip()  # YAML 1.1 reads `no` as False: keep the word
        _set_dotted(raw, key, value)
    return config_from_dict(raw)


_CHOICES = {
    "tokenizer.kind": ("pixel", "llamagen"),
    "model.kind": ("dit", "unet", "official_dit", "official_unet"),
    "diffusion.schedule": ("linear", "cosine", "loglinear"),
    "optim.lr_schedule": ("constant", "cosine"),
    "training.mixed_precision": ("bf16", "fp16", "no"),
}


def _get(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


MAX_SAMPLING_CFG = 100.0  # like the CLI's --cfg bound
MAX_SEED = 2**63 - 1


def _non_finite(cfg: Config) -> str | None:
    """The first float field (dotted key) holding NaN or +-inf, if any."""
    import math

    for section in dataclasses.fields(cfg):
        node = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(node):
            continue
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in values):
                return f"{section.name}.{f.name}"
    return None


def check_sampling_classes(cfg: Config, num_classes: int) -> None:
    """UserError unless every id of ``sampling.classes`` is a class of the dataset (checked before
    training starts, so a typo never costs a finished run)."""
    bad = [c for c in cfg.sampling.classes if not 0 <= c < num_classes]
    if bad:
        raise UserError(f"config key sampling.classes: {bad[0]} is not a class of {cfg.data.name} "
                        f"({num_classes} classes: 0..{num_classes - 1})")


def validate(cfg: Config) -> None:
    """Range and choice checks that types alone cannot express; raises UserError naming the key."""
    bad_float = _non_finite(cfg)
    if bad_float:
        raise UserError(f"config key {bad_float} must be a finite number, got {_get(cfg, bad_float)!r}")
    for key, choices in _CHOICES.items():
        if _get(cfg, key) not in choices:
            raise UserError(f"config key {key} must be one of {', '.join(choices)}, got {_get(cfg, key)!r}")
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in cfg.optim.betas):
        raise UserError(f"config key optim.betas must be two numbers, got {cfg.optim.betas!r}")
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cfg.sampling.classes):
        raise UserError(f"config key sampling.classes must be a list of class ids, got {cfg.sampling.classes!r}")
    checks = [
        ("diffusion.k", 0.0 <= cfg.diffusion.k <= 1.0, "in [0, 1]"),
        ("optim.lr", 0 < cfg.optim.lr <= 10, "in (0, 10]"),
        ("optim.eps", 0 < cfg.optim.eps <= 1, "in (0, 1]"),
        ("optim.weight_decay", 0 <= cfg.optim.weight_decay <= 10, "in [0, 10]"),
        ("optim.betas", len(cfg.optim.betas) == 2 and all(0 <= b < 1 for b in cfg.optim.betas), "two numbers in [0, 1)"),
        ("optim.warmup_steps", cfg.optim.warmup_steps >= 0, ">= 0"),
        ("optim.grad_clip", cfg.optim.grad_clip >= 0, ">= 0"),
        ("optim.min_lr_ratio", 0 <= cfg.optim.min_lr_ratio <= 1, "in [0, 1]"),
        ("training.steps", cfg.training.steps >= 1, ">= 1"),
        ("training.batch_size", cfg.training.batch_size >= 1, ">= 1"),
        ("training.grad_accum", cfg.training.grad_accum >= 1, ">= 1"),
        ("training.ema_decay", 0 <= cfg.training.ema_decay < 1, "in [0, 1)"),
        ("training.label_dropout", 0 <= cfg.training.label_dropout <= 1, "in [0, 1]"),
        ("training.log_every", cfg.training.log_every >= 1, ">= 1"),
        ("training.val_every", cfg.training.val_every >= 0, ">= 0"),
        ("training.sample_every", cfg.training.sample_every >= 0, ">= 0"),
        ("training.ckpt_every", cfg.training.ckpt_every >= 1, ">= 1"),
        ("training.val_batch_size", cfg.training.val_batch_size >= 1, ">= 1"),
        ("training.keep_checkpoints", cfg.training.keep_checkpoints >= 0, ">= 0"),
        ("sampling.num_steps", cfg.sampling.num_steps >= 1, ">= 1"),
        ("sampling.per_class", cfg.sampling.per_class >= 1, ">= 1"),
        ("sampling.cfg", 0 <= cfg.sampling.cfg <= MAX_SAMPLING_CFG, f"in [0, {MAX_SAMPLING_CFG:g}]"),
        ("sampling.num_steps", cfg.sampling.num_steps <= 10_000, "<= 10000"),
        ("sampling.seed", 0 <= cfg.sampling.seed <= MAX_SEED, "in 0..2**63-1"),
        ("training.seed", 0 <= cfg.training.seed <= MAX_SEED, "in 0..2**63-1"),
        ("data.num_workers", 0 <= cfg.data.num_workers <= 256, "in 0..256"),
        ("data.max_val_samples", cfg.data.max_val_samples is None or cfg.data.max_val_samples >= 1,
         ">= 1 (or null for the whole split)"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise UserError(f"config key {key} must be {what}, got {_get(cfg, key)!r}")
    if cfg.training.batch_size % cfg.training.grad_accum:
        raise UserError(
            f"training.batch_size ({cfg.training.batch_size}) must be divisible by "
            f"training.grad_accum ({cfg.training.grad_accum})"
        )


def config_to_json(cfg: Config) -> str:
    return json.dumps(config_to_dict(cfg), indent=2)
