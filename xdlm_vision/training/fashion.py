"""``xdlm-vision train fashion``: tokenizer, codes and DiT in one run.

1. tokenizer: ``OUT/tokenizer/`` is trained (or resumed) unless ``tokenizer.path`` names weights
   (:mod:`xdlm_vision.training.vq_trainer`);
2. codes: both splits are encoded once into ``codes-<sha12>/`` beside the weights (reused after;
   :mod:`xdlm_vision.data.fashion_entry`);
3. DiT: the ordinary trainer over those codes into ``OUT`` (validation NELBO on the test split).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from xdlm_vision.config import Config
from xdlm_vision.errors import UserError

TOKENIZER_DIR = "tokenizer"


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
    from xdlm_vision.checkpoints import latest_checkpoint
    from xdlm_vision.data.fashion_entry import TOKENIZER_WEIGHTS, fashion_codes
    from xdlm_vision.training.trainer import train
    from xdlm_vision.training.vq_trainer import latest_vq_checkpoint, settings_from, train_vq_tokenizer

    t0 = time.time()
    out = Path(out)
    if cfg.data.name != "fashion":
        raise UserError(f"train_fashion needs data.name=fashion, got {cfg.data.name!r}")
    tok_seconds = 0.0
    if not cfg.tokenizer.path:
        vq_out = out / TOKENIZER_DIR
        weights = vq_out / TOKENIZER_WEIGHTS
        if not weights.is_file():
            settings = settings_from({"codebook_size": cfg.tokenizer.codebook_size, **cfg.tokenizer.train})
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
    dit = train(cfg, out, resume=resume and latest_checkpoint(out) is not None, progress=progress,
                stop_after=stop_after)
    run = FashionRunResult(Path(cfg.tokenizer.path), tok_seconds, codes_seconds, dit, time.time() - t0)
    print(f"stages: tokenizer {tok_seconds:.0f} s, codes {codes_seconds:.0f} s, DiT {dit.wall_seconds:.0f} s; "
          f"total {run.wall_seconds:.0f} s; tokenizer {run.tokenizer}", flush=True)
    return run


def _print_vq_report(report: dict) -> None:
    if not report:
        return
    acc = ""
    if "classifier_accuracy_recon" in report:
        acc = (f", classifier accuracy {report['classifier_accuracy_recon']:.3f} on reconstructions "
               f"vs {report['classifier_accuracy_real']:.3f} on real images")
    print(f"tokenizer on the test split: PSNR {report['psnr_db']:.2f} dB, codebook usage "
          f"{report['codes_used']}/{report['codebook_size']} (perplexity {report['perplexity']:.0f}){acc}", flush=True)
