"""``eval fid``: sample N images (per-sample seeds, accelerate-sharded, resumable), score FID / IS
(/ precision-recall) against a reference with torch-fidelity's Inception, write ``metrics.json``
with a protocol card. Multi-GPU: ``accelerate launch -m xdlm_vision.cli eval fid ...``.

The protocol is documented in docs/evaluation.md; the shards in :mod:`sample_shards`.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.card import git_commit, toolkit_versions
from xdlm_vision.evaluation.jobs import SamplingJob, sampling_card, sampling_options
from xdlm_vision.io import write_json_atomic


@dataclass(frozen=True)
class FidJob(SamplingJob):
    inception_weights: str = ""
    reference: str = ""
    labels: str = "per-class"  # per-class | random
    shard_size: int = 1000
    format: str = "npz"  # npz | png
    precision_recall: bool = False
    inception_batch_size: int = 64
    max_shards: int | None = None
    sample_only: bool = False
    tokenizer_checkpoint: str | None = None


def _check(args: FidJob) -> None:
    if args.num < 2:
        raise UserError(f"--num must be >= 2 for FID (a covariance needs 2 samples), got {args.num}")
    if args.shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {args.shard_size}")
    if args.inception_batch_size < 1:
        raise UserError(f"--inception-batch-size must be >= 1, got {args.inception_batch_size}")
    if args.max_shards is not None and args.max_shards < 0:
        raise UserError(f"--max-shards must be >= 0, got {args.max_shards}")
    if args.sample_only and args.precision_recall:
        raise UserError("--precision-recall has no effect with --sample-only (nothing is scored); drop one")
    if not args.sample_only:
        if not Path(args.inception_weights).is_file():
            raise UserError(f"--inception-weights {args.inception_weights}: no such file. Pass the torch-fidelity "
                            "Inception weights (weights-inception-2015-12-05-6726825d.pth); nothing is downloaded")
        if not Path(args.reference).exists():
            raise UserError(f"--reference {args.reference}: no such file or directory")


def run_fid(args: FidJob) -> int:
    """Sample the shards (resumable, sharded over accelerate processes), then score them (main process)."""
    _check(args)
    from accelerate import PartialState

    from xdlm_vision.evaluation import sample_shards as sh
    from xdlm_vision.sampling import load_for_sampling, parse_classes, resolve_device, sample_seeds

    opts = sampling_options(args)
    state = PartialState()
    device = state.device if args.device == "auto" else resolve_device(args.device)
    sm = load_for_sampling(args.checkpoint, ema=args.ema, device=device, k=args.k,
                           tokenizer_checkpoint=args.tokenizer_checkpoint)
    out = Path(args.out) if args.out else Path("runs") / "eval_fid"
    seeds = sample_seeds(args.seed, args.num)
    spec = "random" if args.labels == "random" else ",".join(str(c) for c in range(sm.num_classes))
    labels = parse_classes(spec, args.num, sm.num_classes, seed=args.seed)
    setup = {"checkpoint": str(sm.path), "checkpoint_step": sm.step, "num": args.num, "labels": args.labels,
             "seed": args.seed, "steps": args.steps, "cfg": args.cfg, "cfg_schedule": args.cfg_schedule,
             "sampler": args.sampler, "k": sm.spec.k, "ema": sm.ema, "shard_size": args.shard_size,
             "format": args.format}
    extractor = None
    if state.is_main_process and not args.sample_only:  # fail fast on a bad weights file, before sampling
        from xdlm_vision.evaluation.inception import InceptionExtractor
        from xdlm_vision.evaluation.references import load_reference

        extractor = InceptionExtractor(args.inception_weights, device="cpu")
        reference = load_reference(args.reference, need_images=args.precision_recall)
    if state.is_main_process:
        sh.check_run_setup(out, setup)
    state.wait_for_everyone()
    if not state.is_main_process:
        sh.check_run_setup(out, setup, clean=False)
    t0 = time.time()
    prog = sh.sample_shards(sm, out, labels, seeds, opts, shard_size=args.shard_size, fmt=args.format,
                            batch_size=args.batch_size, rank=state.process_index, world=state.num_processes,
                            max_shards=args.max_shards, progress=args.progress)
    sample_seconds = time.time() - t0
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    total = len(sh.shard_ranges(args.num, args.shard_size))
    done = [j for j, r in enumerate(sh.shard_ranges(args.num, args.shard_size))
            if sh.shard_is_complete(sh.shard_path(out, j, args.format), args.format, len(r))]
    print(f"shards: {len(prog.written)} written, {len(prog.kept)} kept, {len(done)}/{total} complete in {out}",
          file=sys.stderr)
    if len(done) < total:
        print(f"stopped after --max-shards {args.max_shards}; rerun the same command to continue", file=sys.stderr)
        return 0
    first = sh.read_shard(sh.shard_path(out, 0, args.format), args.format)
    image_shape = tuple(int(v) for v in first.images.shape[1:])
    if args.format == "npz" and not (out / "samples.npz").is_file():
        sh.write_adm_npz(out / "samples.npz", sh.iter_shards(out, args.num, args.shard_size, args.format),
                         args.num, image_shape)
    if args.sample_only:
        print(f"samples complete in {out} (--sample-only: not scored)", file=sys.stderr)
        return 0

    from xdlm_vision.evaluation.fid import features_of, score_images
    from xdlm_vision.evaluation.references import sha256_file

    weights_sha = sha256_file(args.inception_weights)
    extractor.to(device)
    t1 = time.time()
    shards = sh.iter_shards(out, args.num, args.shard_size, args.format)
    feats = features_of(extractor, (s.images for s in shards), args.inception_batch_size)
    scores = score_images(feats, reference, extractor, weights_sha, want_precision_recall=args.precision_recall,
                          cache_dir=out, batch_size=args.inception_batch_size,
                          progress=args.progress)
    metrics = {"fid": scores.fid, "inception_score": scores.inception_score.mean,
               "inception_score_std": scores.inception_score.std}
    if scores.precision_recall is not None:
        metrics.update(precision=scores.precision_recall.precision, recall=scores.precision_recall.recall)
    card = {
        "reference": {"path": str(reference.path), "kind": reference.kind, "sha256": reference.sha256,
                      "statistics": scores.reference_stats_source, "num_images": scores.reference_num},
        "num_samples": scores.num_samples,
        "label_sampling": ("per-class: image i has class i mod C (balanced)" if args.labels == "per-class"
                           else "random: image i draws its class from random.Random(seed + i) (uniform)"),
        "num_classes": sm.num_classes,
        **sampling_card(args, sm),
        "sample_image_shape": list(image_shape),
        "sample_format": args.format,
        "feature_extractor": {
            "name": "torch-fidelity FeatureExtractorInceptionV3 (TF Inception 2015-12-05 port)",
            "weights": str(args.inception_weights), "weights_sha256": weights_sha,
            "fid_features": "2048 (pool_3)", "is_features": "logits_unbiased, softmax, 10 splits",
            "resize": "uint8 -> 299x299 TF1-style bilinear inside the extractor; grey repeated to RGB",
        },
        "precision_recall": {"k": 3} if args.precision_recall else None,
        "processes": state.num_processes,
        "toolkit": toolkit_versions(),
        "git": git_commit(),
        "time_seconds": {"sampling_this_run": round(sample_seconds, 1), "scoring": round(time.time() - t1, 1)},
    }
    payload = {"metrics": metrics, "protocol": card}
    write_json_atomic(out / "metrics.json", payload)
    print(json.dumps(metrics, indent=2, default=str))
    print(f"wrote {out / 'metrics.json'}", file=sys.stderr)
    return 0
