"""The ``fashion`` dataset entry: Fashion-MNIST as 8x8 grids of VQ codes, and its three-stage run.

Keys it reads from the config: ``data.path`` (the folder of the four IDX files; default the Debian
package folder), ``tokenizer.path`` (the VQ weights ``tokenizer.safetensors`` with
``tokenizer.json`` beside them, or their folder), ``tokenizer.codebook_size`` and
``tokenizer.train`` (settings of :class:`~xdlm_vision.training.vq_trainer.VQTrainSettings` for
stage 1).

:func:`train_fashion` is ``xdlm-vision train fashion``:

1. tokenizer: ``OUT/tokenizer/`` is trained (or resumed) unless ``tokenizer.path`` names weights;
2. codes: both splits are encoded once into ``codes-<sha12>/`` beside the weights (reused after);
3. DiT: the ordinary trainer over those codes into ``OUT`` (validation NELBO on the test split).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from xdlm_vision.config import Config
from xdlm_vision.errors import UserError
from xdlm_vision.training.build import DataBundle, DataMeta

TOKENIZER_DIR = "tokenizer"


def tokenizer_files(path: str | Path) -> tuple[Path, Path]:
    """``tokenizer.path`` -> (weights, architecture JSON); a folder means its tokenizer.safetensors."""
    from xdlm_vision.training.vq_trainer import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS

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


@dataclass
class FashionRunResult:
    tokenizer: Path  # VQ weights used
    tokenizer_seconds: float  # stage 1 wall time in this invocation (0 when given / already trained)
    codes_seconds: float  # stage 2
    dit: object  # TrainResult of stage 3
    wall_seconds: float


def train_fashion(cfg: Config, out: str | Path, resume: bool = False, progress: bool = True,
                  stop_after: int | None = None) -> FashionRunResult:
    """The three stages of the module docstring; ``stop_after`` limits the DiT steps of this call."""
    from xdlm_vision.training import checkpoint as ckpt_io
    from xdlm_vision.training.trainer import train
    from xdlm_vision.training.vq_trainer import (
        TOKENIZER_WEIGHTS,
        VQTrainSettings,
        latest_vq_checkpoint,
        train_vq_tokenizer,
    )

    t0 = time.time()
    out = Path(out)
    if cfg.data.name != "fashion":
        raise UserError(f"train_fashion needs data.name=fashion, got {cfg.data.name!r}")
    tok_seconds = 0.0
    if not cfg.tokenizer.path:
        vq_out = out / TOKENIZER_DIR
        weights = vq_out / TOKENIZER_WEIGHTS
        if not weights.is_file():
            try:
                settings = VQTrainSettings(**{"codebook_size": cfg.tokenizer.codebook_size, **cfg.tokenizer.train})
            except TypeError as exc:
                raise UserError(f"tokenizer.train: {exc} (valid keys: see VQTrainSettings in "
                                "xdlm_vision/training/vq_trainer.py)") from None
            print(f"stage 1/3: training the VQ tokenizer into {vq_out}", flush=True)
            result = train_vq_tokenizer(settings, vq_out, data_dir=cfg.data.path, progress=progress,
                                        resume=resume and latest_vq_checkpoint(vq_out) is not None, flag="data.path")
            tok_seconds = result.wall_seconds
            _print_vq_report(result.report)
        cfg = replace(cfg, tokenizer=replace(cfg.tokenizer, path=str(weights.resolve())))
    t1 = time.time()
    print("stage 2/3: encoding Fashion-MNIST into VQ codes (reused when present)", flush=True)
    dirs = fashion_codes(cfg, progress=progress)
    codes_seconds = time.time() - t1
    print(f"stage 3/3: training the DiT over the codes in {dirs['train'].parent}", flush=True)
    dit = train(cfg, out, resume=resume and ckpt_io.latest_checkpoint(out) is not None, progress=progress,
                stop_after=stop_after)
    return FashionRunResult(Path(cfg.tokenizer.path), tok_seconds, codes_seconds, dit, time.time() - t0)


def _print_vq_report(report: dict) -> None:
    if not report:
        return
    acc = ""
    if "classifier_accuracy_recon" in report:
        acc = (f", classifier accuracy {report['classifier_accuracy_recon']:.3f} on reconstructions "
               f"vs {report['classifier_accuracy_real']:.3f} on real images")
    print(f"tokenizer on the test split: PSNR {report['psnr_db']:.2f} dB, codebook usage "
          f"{report['codes_used']}/{report['codebook_size']} (perplexity {report['perplexity']:.0f}){acc}", flush=True)
