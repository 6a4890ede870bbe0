"""The ``fashion`` dataset entry: Fashion-MNIST as 8x8 grids of VQ codes.

Keys it reads from the config: ``data.path`` (the folder of the four IDX files; default the Debian
package folder), ``tokenizer.path`` (the VQ weights ``tokenizer.safetensors`` with
``tokenizer.json`` beside them, or their folder), ``tokenizer.codebook_size`` and
``tokenizer.train`` (settings of :class:`~xdlm_vision.training.vq_trainer.VQTrainSettings` for
stage 1).

``build`` encodes both splits once into ``codes-<sha12>/`` beside the weights
(:mod:`xdlm_vision.data.fashion_codes`); the three-stage ``xdlm-vision train fashion`` run that
first trains the tokenizer is :mod:`xdlm_vision.training.fashion`.
"""

from __future__ import annotations

from pathlib import Path

from xdlm_vision.config import Config
from xdlm_vision.data.meta import DataBundle, DataMeta
from xdlm_vision.errors import UserError

TOKENIZER_WEIGHTS = "tokenizer.safetensors"  # what `train-tokenizer` writes: weights ...
TOKENIZER_CONFIG = "tokenizer.json"  # ... and the LlamaGen architecture beside them


def tokenizer_files(path: str | Path) -> tuple[Path, Path]:
    """``tokenizer.path`` -> (weights, architecture JSON); a folder means its tokenizer.safetensors."""
    p = Path(path)
    weights = p / TOKENIZER_WEIGHTS if p.is_dir() else p
    if not weights.is_file():
        raise UserError(f"tokenizer.path {str(path)!r}: no VQ weights there (expected {TOKENIZER_WEIGHTS} "
                        "from `xdlm-vision train-tokenizer fashion`)")
    for config in (weights.with_suffix(".json"), weights.with_name(TOKENIZER_CONFIG)):
        if config.is_file():
            return weights, config
    raise UserError(f"tokenizer.path {str(path)!r}: no architecture JSON beside the weights "
                    f"({weights.with_suffix('.json').name} or {TOKENIZER_CONFIG})")


def fashion_tokenizer_spec(cfg: Config) -> dict:
    """Tokenizer spec of ``tokenizer.path`` (hash included); a spec without weights when unset."""
    from xdlm_vision.tokenizers.checkpoints import sha256_file
    from xdlm_vision.tokenizers.llamagen_config import config_from_json

    if not cfg.tokenizer.path:
        return {"kind": "llamagen", "size": None, "config": None, "checkpoint": None, "sha256": None}
    weights, config = tokenizer_files(cfg.tokenizer.path)
    vq = config_from_json(config)
    if vq.codebook_size != cfg.tokenizer.codebook_size:
        raise UserError(f"tokenizer.path {cfg.tokenizer.path!r} has {vq.codebook_size} codes; set "
                        f"tokenizer.codebook_size={vq.codebook_size}")
    return {"kind": "llamagen", "size": None, "config": vq.to_dict(), "checkpoint": str(weights.resolve()),
            "sha256": sha256_file(weights)}


def fashion_meta(cfg: Config) -> DataMeta:
    """N codes, the 8x8 grid (32 px / downsample), 10 named classes and the tokenizer spec."""
    from xdlm_vision.data.fashion import FASHION_CLASS_NAMES, PADDED_SIDE

    if cfg.tokenizer.kind != "llamagen":
        raise UserError("the fashion data is VQ codes: set tokenizer.kind=llamagen")
    spec = fashion_tokenizer_spec(cfg)
    side = PADDED_SIDE // (2 ** (len(spec["config"]["encoder_ch_mult"]) - 1)) if spec["config"] else 8
    return DataMeta(cfg.tokenizer.codebook_size, (side, side), len(FASHION_CLASS_NAMES),
                    list(FASHION_CLASS_NAMES), spec)


def fashion_codes(cfg: Config, progress: bool = True) -> dict[str, Path]:
    """Encode (once) both splits with ``tokenizer.path``; returns the two code folders."""
    from xdlm_vision.data.fashion_codes import encode_all
    from xdlm_vision.tokenizers.factory import load_tokenizer

    if not cfg.tokenizer.path:
        raise UserError("the fashion data needs VQ weights: set tokenizer.path=.../tokenizer.safetensors, or run "
                        "`xdlm-vision train fashion`, which trains them first")
    spec = fashion_tokenizer_spec(cfg)
    tok = load_tokenizer(spec)
    return encode_all(tok, cfg.data.path, spec["checkpoint"], progress=progress)


def fashion_build(cfg: Config) -> DataBundle:
    """Train split codes for training, test split codes for the validation NELBO."""
    from xdlm_vision.data.codes import CodesDataset

    dirs = fashion_codes(cfg)
    return DataBundle(CodesDataset(dirs["train"], views="original"), CodesDataset(dirs["test"], views="original"),
                      fashion_meta(cfg))
