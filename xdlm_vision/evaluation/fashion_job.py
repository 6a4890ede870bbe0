"""``eval fashion``: class agreement and Fashion-FID of a Fashion-MNIST checkpoint's samples.

Samples ``num`` images balanced over the 10 classes (image i has class i mod 10, seed + i),
decodes them through the checkpoint's VQ tokenizer and scores them with the packaged fashion
classifier (:mod:`xdlm_vision.evaluation.fashion_metrics`). ``floors`` adds the same metrics for
``num`` real training images and for their tokenizer reconstructions (docs/fashion.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.card import toolkit_versions
from xdlm_vision.evaluation.jobs import SamplingJob, sampling_card, sampling_options
from xdlm_vision.io import write_json_atomic


@dataclass(frozen=True)
class FashionJob(SamplingJob):
    num: int = 1000
    batch_size: int = 250
    data_dir: str | None = None  # Fashion-MNIST IDX folder (None: the Debian package folder)
    tokenizer_checkpoint: str | None = None
    floors: bool = False
    grid: str | None = None  # also save the first 100 samples as a PNG grid, one row per class


def run_fashion(job: FashionJob) -> int:
    """Agreement and Fashion-FID of class-balanced samples (and floors); prints one line."""
    import torch

    from xdlm_vision.evaluation.fashion_metrics import fashion_floors, fashion_metrics, reference_stats
    from xdlm_vision.sampling import decode_tokens, generate, load_for_sampling, sample_seeds
    from xdlm_vision.viz import save_grid

    opts = sampling_options(job)
    if job.num < 2:
        raise UserError(f"--num must be >= 2 (a covariance needs 2 samples), got {job.num}")
    lm = load_for_sampling(job.checkpoint, ema=job.ema, device=job.device, k=job.k,
                           tokenizer_checkpoint=job.tokenizer_checkpoint)
    vq = getattr(lm.tokenizer, "config", None)
    if lm.num_classes != 10 or tuple(lm.grid_shape) != (8, 8) or vq is None or vq.in_channels != 1:
        raise UserError(f"--checkpoint {lm.path} is not a fashion checkpoint (10 classes, 8x8 VQ codes, 1 channel)")
    reference = reference_stats(job.data_dir)  # reads the data first: a missing folder fails before sampling
    labels = [i % 10 for i in range(job.num)]
    t0 = time.time()
    tokens = generate(lm, labels, sample_seeds(job.seed, job.num), opts, batch_size=job.batch_size,
                      progress=job.progress)  # (num, 8, 8)
    sample_seconds = time.time() - t0
    images = decode_tokens(lm, tokens, job.batch_size)  # (num, 1, 32, 32)
    m = fashion_metrics(images, torch.tensor(labels), reference)
    metrics = {"agreement": m.agreement, "fashion_fid": m.fashion_fid,
               "per_class_agreement": {name: (None if math.isnan(a) else a)  # JSON has no NaN
                                       for name, a in zip(lm.class_names, m.per_class_agreement)}}
    if job.floors:
        metrics["floors"] = fashion_floors(reference, lm.tokenizer, job.num, job.data_dir)
    if job.grid:
        shown = min(job.num, 100)
        order = sorted(range(shown), key=lambda i: (labels[i], i))  # one row per class
        save_grid(images[order], job.grid, ncol=max(1, shown // 10))
    card = {"num_samples": m.num_samples, "label_sampling": "per-class: image i has class i mod 10",
            "reference": f"Fashion-MNIST test split ({m.num_reference} images), fashion classifier penultimate features",
            **sampling_card(job, lm), "toolkit": toolkit_versions(), "sampling_seconds": round(sample_seconds, 1)}
    if job.out:
        write_json_atomic(Path(job.out) / "metrics.json", {"metrics": metrics, "protocol": card})
    line = (f"fashion: agreement {m.agreement:.3f}, Fashion-FID {m.fashion_fid:.2f} ({m.num_samples} samples, "
            f"{job.steps} steps, cfg {job.cfg:g}, k={lm.spec.k:g}, {sample_seconds:.0f} s sampling)")
    if job.floors:
        f = metrics["floors"]
        line += (f"; floors: real train {f['real_train_agreement']:.3f} / {f['real_train_fashion_fid']:.2f}, "
                 f"reconstructions {f['recon_agreement']:.3f} / {f['recon_fashion_fid']:.2f}")
    print(line)
    return 0
