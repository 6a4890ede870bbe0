"""``xdlm-vision eval fashion``: class agreement and Fashion-FID of a Fashion-MNIST checkpoint's samples.

Samples ``--num`` images balanced over the 10 classes (image i has class i mod 10, seed + i),
decodes them through the checkpoint's VQ tokenizer and scores them with the packaged fashion
classifier (xdlm_vision/evaluation/fashion_metrics.py). ``--floors`` adds the same metrics for
``--num`` real training images and for their tokenizer reconstructions. Registered as a
sub-command of ``eval`` by xdlm_vision/commands/eval.py.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path


def add_fashion_parser(sub, common) -> None:
    p = sub.add_parser("fashion", help="fashion classifier agreement and Fashion-FID of class-conditional samples",
                       description="Agreement and Fashion-FID of class-conditional samples of a Fashion-MNIST "
                                   "checkpoint (with --floors: of real and reconstructed training images).")
    common(p, sampling=True)
    p.add_argument("--num", type=int, default=1000, help="samples, balanced over the 10 classes (default 1000)")
    p.add_argument("--batch-size", type=int, default=250, help="sampling batch (default 250)")
    p.add_argument("--data-dir", default=None,
                   help="Fashion-MNIST IDX folder for the test-split reference (default /usr/share/datasets/fashion-mnist)")
    p.add_argument("--tokenizer-checkpoint", default=None, help="VQ tokenizer weights, if not at the recorded path")
    p.add_argument("--floors", action="store_true", help="also score --num real training images and their reconstructions")
    p.add_argument("--grid", default=None, metavar="PATH.png", help="also save the samples as a grid, one row per class")
    p.add_argument("--out", default=None, help="write OUT/metrics.json")


def run_fashion(args: argparse.Namespace) -> int:
    import torch

    from xdlm_vision.commands.eval import _options, _sampling_card
    from xdlm_vision.errors import UserError
    from xdlm_vision.evaluation.card import toolkit_versions, write_json_atomic
    from xdlm_vision.evaluation.fashion_metrics import fashion_floors, fashion_metrics, reference_stats
    from xdlm_vision.sampling import (
        decode_tokens,
        generate,
        load_for_sampling,
        resolve_device,
        sample_seeds,
        save_grid,
    )

    opts = _options(args)
    if args.num < 2:
        raise UserError(f"--num must be >= 2 (a covariance needs 2 samples), got {args.num}")
    sm = load_for_sampling(args.checkpoint, ema=args.ema, device=resolve_device(args.device), k=args.k,
                           tokenizer_checkpoint=args.tokenizer_checkpoint)
    if sm.num_classes != 10 or tuple(sm.grid_shape) != (8, 8) or sm.tokenizer is None \
            or getattr(sm.tokenizer, "config", None) is None or sm.tokenizer.config.in_channels != 1:
        raise UserError(f"--checkpoint {sm.path} is not a fashion checkpoint (10 classes, 8x8 VQ codes, 1 channel)")
    reference = reference_stats(args.data_dir)  # reads the data first: a missing folder fails before sampling
    labels = [i % 10 for i in range(args.num)]
    t0 = time.time()
    tokens = generate(sm, labels, sample_seeds(args.seed, args.num), opts, batch_size=args.batch_size,
                      progress=not args.no_progress)  # (num, 8, 8)
    sample_seconds = time.time() - t0
    images = decode_tokens(sm, tokens, args.batch_size)  # (num, 1, 32, 32)
    m = fashion_metrics(images, torch.tensor(labels), reference)
    metrics = {"agreement": m.agreement, "fashion_fid": m.fashion_fid,
               "per_class_agreement": {name: (None if math.isnan(a) else a)
                                       for name, a in zip(sm.class_names, m.per_class_agreement)}}
    if args.floors:
        metrics["floors"] = fashion_floors(reference, sm.tokenizer, args.num, args.data_dir)
    if args.grid:
        order = sorted(range(min(args.num, 100)), key=lambda i: (labels[i], i))  # one row per class
        save_grid(images[order], args.grid, ncol=max(1, min(args.num, 100) // 10))
    card = {"num_samples": m.num_samples, "label_sampling": "per-class: image i has class i mod 10",
            "reference": f"Fashion-MNIST test split ({m.num_reference} images), fashion classifier penultimate features",
            **_sampling_card(args, sm), "toolkit": toolkit_versions(), "sampling_seconds": round(sample_seconds, 1)}
    payload = {"metrics": metrics, "protocol": card}
    if args.out:
        write_json_atomic(Path(args.out) / "metrics.json", payload)
    line = (f"fashion: agreement {m.agreement:.3f}, Fashion-FID {m.fashion_fid:.2f} ({m.num_samples} samples, "
            f"{args.steps} steps, cfg {args.cfg:g}, k={sm.space.k:g}, {sample_seconds:.0f} s sampling)")
    if args.floors:
        f = metrics["floors"]
        line += (f"; floors: real train {f['real_train_agreement']:.3f} / {f['real_train_fashion_fid']:.2f}, "
                 f"reconstructions {f['recon_agreement']:.3f} / {f['recon_fashion_fid']:.2f}")
    print(line)
    return 0
