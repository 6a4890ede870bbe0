"""Every dataset of the toolkit, keyed by ``data.name`` (see docs/architecture.md).

Datasets are a small registry keyed by ``data.name``. Each entry gives

* ``meta(cfg) -> DataMeta``: vocabulary size N, token grid, classes and tokenizer spec, known
  *without* reading the data (so ``--dry-run`` works before the data path is set), and
* ``build(cfg) -> DataBundle``: the train/validation datasets, each item ``(tokens (h, w) int64,
  label int64)``.

Adding a dataset is one function pair plus one entry in ``DATASETS``.
"""

from __future__ import annotations

from typing import Any

from xdlm_vision.config import Config
from xdlm_vision.data.meta import DataBundle, DataMeta, DatasetEntry
from xdlm_vision.data.text.entry import text_build, text_meta
from xdlm_vision.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tokenizer_spec(cfg: Config) -> dict[str, Any]:
    """Tokenizer spec (xdlm_vision.tokenizers.factory) of a pixel-token config."""
    t = cfg.tokenizer
    return {"kind": "pixel", "levels": t.levels, "channels": t.channels}


def _require_path(cfg: Config, what: str) -> str:
    if not cfg.data.path:
        raise UserError(f"the {cfg.data.name} dataset needs data.path=... pointing at {what}")
    return cfg.data.path


# --- digits (embedded) -----------------------------------------------------------------------


def _digits_meta(cfg: Config) -> DataMeta:
    from xdlm_vision.data.digits import DIGITS_CLASS_NAMES, DIGITS_LEVELS, DIGITS_SHAPE

    if cfg.tokenizer.kind != "pixel" or cfg.tokenizer.levels != DIGITS_LEVELS or cfg.tokenizer.channels != 1:
        raise UserError(
            f"the digits data is {DIGITS_LEVELS} pixel levels x 1 channel: set tokenizer.kind=pixel "
            f"tokenizer.levels={DIGITS_LEVELS} tokenizer.channels=1"
        )
    return DataMeta(DIGITS_LEVELS, tuple(DIGITS_SHAPE), len(DIGITS_CLASS_NAMES), list(DIGITS_CLASS_NAMES),
                    tokenizer_spec(cfg))


def _digits_build(cfg: Config) -> DataBundle:
    from xdlm_vision.data.digits import DigitsTokens

    return DataBundle(DigitsTokens("train"), DigitsTokens("val"), _digits_meta(cfg))


# --- CIFAR-10 (pixel tokens from a local python-pickle copy) ----------------------------------


def _cifar10_meta(cfg: Config) -> DataMeta:
    t = cfg.tokenizer
    if t.kind != "pixel" or t.channels != 3:
        raise UserError("cifar10 uses pixel tokens: set tokenizer.kind=pixel tokenizer.channels=3")
    return DataMeta(t.levels, (32, 32 * 3), 10, list(CIFAR10_CLASSES), tokenizer_spec(cfg))


def _cifar10_build(cfg: Config) -> DataBundle:
    root = _require_path(cfg, "the cifar-10-batches-py folder")
    from xdlm_vision.data.cifar10 import CIFAR10Tokens

    return DataBundle(
        CIFAR10Tokens(root, train=True, flip=True, levels=cfg.tokenizer.levels),
        CIFAR10Tokens(root, train=False, flip=False, levels=cfg.tokenizer.levels),
        _cifar10_meta(cfg),
    )


# --- extracted codes (VQ token shards from `xdlm-vision extract-codes`) -----------------------


def _codes_meta(cfg: Config) -> DataMeta:
    """From the extract-codes manifest when data.path is set; else the ImageNet-256 VQ-16 layout."""
    if cfg.data.path:
        from xdlm_vision.data.codes import read_manifest

        info = read_manifest(cfg.data.path)
        return DataMeta(info.codebook_size, tuple(info.grid_shape), info.num_classes, list(info.class_names),
                        _with_checkpoint(dict(info.tokenizer), cfg))
    spec = _with_checkpoint({"kind": "llamagen", "size": "VQ-16"}, cfg)
    return DataMeta(cfg.tokenizer.codebook_size, (16, 16), 1000, [str(i) for i in range(1000)], spec)


def _with_checkpoint(spec: dict, cfg: Config) -> dict:
    """tokenizer.path (weights moved, or never recorded) overrides the checkpoint in the spec."""
    if cfg.tokenizer.path:
        spec["checkpoint" if spec.get("kind") == "llamagen" else "path"] = cfg.tokenizer.path
    return spec


def _codes_build(cfg: Config) -> DataBundle:
    root = _require_path(cfg, "the output folder of `xdlm-vision extract-codes`")
    from xdlm_vision.data.codes import CodesDataset

    train = CodesDataset(root, views="random")  # a stored flipped view is the flip augmentation
    val = CodesDataset(cfg.data.val_path, views="original", flag="data.val_path") if cfg.data.val_path else None
    meta = _codes_meta(cfg)
    if meta.num_tokens != cfg.tokenizer.codebook_size:
        raise UserError(f"the codes in {root} use {meta.num_tokens} codes; set tokenizer.codebook_size="
                        f"{meta.num_tokens}")
    return DataBundle(train, val, meta)


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(_digits_meta, _digits_build),
    "cifar10": DatasetEntry(_cifar10_meta, _cifar10_build),
    "codes": DatasetEntry(_codes_meta, _codes_build),
    "text": DatasetEntry(text_meta, text_build),
}


def _entry(cfg: Config) -> DatasetEntry:
    if cfg.data.name not in DATASETS:
        raise UserError(f"unknown data.name {cfg.data.name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[cfg.data.name]


def data_meta(cfg: Config) -> DataMeta:
    """Vocabulary, grid and classes of ``cfg``'s dataset without reading it."""
    return _entry(cfg).meta(cfg)


def build_data(cfg: Config) -> DataBundle:
    """Train/validation datasets of ``cfg`` (UserError if the data path is missing)."""
    return _entry(cfg).build(cfg)
