"""``xdlm-vision eval fid|nelbo|digits``: sample quality and likelihood of a checkpoint.

* ``eval fid``: sample N images (per-sample seeds, accelerate-sharded, resumable), score FID / IS
  (/ precision-recall) against a reference with torch-fidelity's Inception, write ``metrics.json``
  with a protocol card. Multi-GPU: ``accelerate launch -m xdlm_vision.cli eval fid ...``.
* ``eval nelbo``: bits per token (Monte-Carlo over t, fixed seeds, standard error), perplexity bound
  for text checkpoints.
* ``eval digits``: accuracy of the digits classifier on class-conditional samples and digits-FID.

The protocol is documented in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

HELP = "evaluate a checkpoint: FID/IS with a protocol card, NELBO (bits per token), digits metrics"


def _common(p: argparse.ArgumentParser, sampling: bool) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint step directory or run directory")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (default) or the raw ones (--no-ema)")
    p.add_argument("--k", type=float, default=None,
                   help="mixing ratio k used for evaluation (default: the trained k)")
    p.add_argument("--seed", type=int, default=0, help="base seed (image i uses seed + i)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (accelerate picks the GPU per process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if sampling:
        p.add_argument("--steps", type=int, default=8, help="sampler steps (default 8)")
        p.add_argument("--cfg", type=float, default=0.0,
                       help="guidance gamma, XDLM convention (LlamaGen/DiT scale = 1 + gamma); default 0")
        p.add_argument("--cfg-schedule", choices=("constant", "linear"), default="constant",
                       help="guidance schedule over the steps (default constant)")
        p.add_argument("--sampler", default="ancestral", help="ancestral (default) | confidence")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_what", metavar="fid|nelbo|digits", required=True)

    fid = sub.add_parser("fid", help="sample N images and score FID/IS against a reference",
                         description="Sample N images (resumable shards) and score FID/IS against a reference.")
    _common(fid, sampling=True)
    fid.add_argument("--inception-weights", required=True, metavar="PATH",
                     help="torch-fidelity InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth or "
                          ".safetensors); never downloaded")
    fid.add_argument("--reference", required=True, metavar="REF",
                     help="ADM .npz with mu/sigma, .npz of arr_0 images, CIFAR-10 folder (train split) or image folder")
    fid.add_argument("--num", type=int, default=50_000, help="number of samples (default 50000)")
    labels = fid.add_mutually_exclusive_group()
    labels.add_argument("--per-class", dest="labels", action="store_const", const="per-class",
                        help="balanced labels: image i has class i mod C (default)")
    labels.add_argument("--random-labels", dest="labels", action="store_const", const="random",
                        help="uniform random labels: image i draws its class from Random(seed + i)")
    fid.set_defaults(labels="per-class")
    fid.add_argument("--batch-size", type=int, default=64, help="sampling batch per process (default 64)")
    fid.add_argument("--shard-size", type=int, default=1000, help="images per resumable shard (default 1000)")
    fid.add_argument("--format", choices=("npz", "png"), default="npz",
                     help="npz: shards + OUT/samples.npz in the ADM evaluator's format (default); png: PNG shards")
    fid.add_argument("--out", default=None, help="output directory (default: runs/eval_fid)")
    fid.add_argument("--precision-recall", action="store_true", help="also k-NN precision/recall (needs reference images)")
    fid.add_argument("--inception-batch-size", type=int, default=64, help="images per Inception forward")
    fid.add_argument("--max-shards", type=int, default=None,
                     help="write at most this many new shards per process, then stop (split long jobs)")
    fid.add_argument("--sample-only", action="store_true", help="only sample the shards; skip scoring")
    fid.add_argument("--tokenizer-checkpoint", default=None, help="VQ tokenizer weights for decoding, if not recorded")

    nel = sub.add_parser("nelbo", help="bits per token on a dataset split (Monte-Carlo over t, with standard error)",
                         description="NELBO in bits per token (and a perplexity bound) with a standard error.")
    _common(nel, sampling=False)
    nel.add_argument("--split", choices=("val", "train"), default="val", help="dataset split (default val)")
    nel.add_argument("--num-t", type=int, default=8, help="independent draws of t per example (default 8)")
    nel.add_argument("--batch-size", type=int, default=256, help="examples per forward (default 256)")
    nel.add_argument("--max-examples", type=int, default=None, help="evaluate only the first N examples")
    nel.add_argument("--data-path", default=None, help="text checkpoints: evaluate this file instead of the split")
    nel.add_argument("--out", default=None, help="write OUT/metrics.json")

    dig = sub.add_parser("digits", help="digits classifier accuracy and digits-FID of class-conditional samples",
                         description="Accuracy and digits-FID of class-conditional samples of a digits checkpoint.")
    _common(dig, sampling=True)
    dig.add_argument("--num", type=int, default=500, help="samples, balanced over the 10 classes (default 500)")
    dig.add_argument("--batch-size", type=int, default=250, help="sampling batch (default 250)")
    dig.add_argument("--out", default=None, help="write OUT/metrics.json")


def run(args: argparse.Namespace) -> int:
    return {"fid": run_fid, "nelbo": run_nelbo, "digits": run_digits}[args.eval_what](args)


# ---------------------------------------------------------------------------------------------
# shared


def _options(args):
    from xdlm_vision.sampling import SamplingOptions, check_sampling_args

    check_sampling_args(args.steps, args.cfg, getattr(args, "num", 1), args.batch_size)
    return SamplingOptions(steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule, sampler=args.sampler)


def _sampling_card(args, sm) -> dict:
    from xdlm_vision.evaluation.card import CFG_CONVENTION

    on_cuda = sm.device.type == "cuda"
    return {
        "sampler": args.sampler,
        "steps": args.steps,
        "cfg": {"gamma": args.cfg, "schedule": args.cfg_schedule, "convention": CFG_CONVENTION,
                "llamagen_dit_scale": 1.0 + args.cfg},
        "k": {"sampling": sm.space.k, "trained": sm.trained_k},
        "schedule": sm.schedule,
        "ema": sm.ema,
        "precision": ("bf16 autocast forward, float32 logits, float64 sampler draws" if on_cuda
                      else "float32 forward, float64 sampler draws"),
        "seeds": {"base": args.seed, "rule": "image i uses its own torch.Generator seeded with seed + i"},
        "checkpoint": {"path": str(sm.path), "step": sm.step},
        # the XDLM authors' models: the official process and how many sampled special ids were clamped
        **({"official": {**sm.meta["official"], "clamped_ids_this_run": getattr(sm.tokenizer, "clamped", None)}}
           if "official" in sm.meta else {}),
    }


def _print_result(payload: dict) -> None:
    print(json.dumps(payload.get("metrics", payload), indent=2, default=str))


# ---------------------------------------------------------------------------------------------
# fid


def _check_fid_args(args) -> None:
    from xdlm_vision.errors import UserError

    if args.num < 2:
        raise UserError(f"--num must be >= 2 for FID (a covariance needs 2 samples), got {args.num}")
    if args.shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {args.shard_size}")
    if args.inception_batch_size < 1:
        raise UserError(f"--inception-batch-size must be >= 1, got {args.inception_batch_size}")
    if args.max_shards is not None and args.max_shards < 0:
        raise UserError(f"--max-shards must be >= 0, got {args.max_shards}")
    if not args.sample_only:
        if not Path(args.inception_weights).is_file():
            raise UserError(f"--inception-weights {args.inception_weights}: no such file. Pass the torch-fidelity "
                            "Inception weights (weights-inception-2015-12-05-6726825d.pth); nothing is downloaded")
        if not Path(args.reference).exists():
            raise UserError(f"--reference {args.reference}: no such file or directory")


def run_fid(args) -> int:
    _check_fid_args(args)
    from accelerate import PartialState

    from xdlm_vision.evaluation import sample_shards as sh
    from xdlm_vision.evaluation.card import git_commit, toolkit_versions, write_json_atomic
    from xdlm_vision.sampling import load_for_sampling, parse_classes, resolve_device, sample_seeds

    opts = _options(args)
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
             "sampler": args.sampler, "k": sm.space.k, "ema": sm.ema, "shard_size": args.shard_size,
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
        sh.check_run_setup(out, setup)
    t0 = time.time()
    prog = sh.sample_shards(sm, out, labels, seeds, opts, shard_size=args.shard_size, fmt=args.format,
                            batch_size=args.batch_size, rank=state.process_index, world=state.num_processes,
                            max_shards=args.max_shards, progress=not args.no_progress)
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
                          progress=not args.no_progress)
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
        **_sampling_card(args, sm),
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
    _print_result(payload)
    print(f"wrote {out / 'metrics.json'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------
# nelbo


def run_nelbo(args) -> int:
    from xdlm_vision.errors import UserError

    if args.num_t < 1:
        raise UserError(f"--num-t must be >= 1, got {args.num_t}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_examples is not None and args.max_examples < 1:
        raise UserError(f"--max-examples must be >= 1, got {args.max_examples}")
    if args.k is not None and not (math.isfinite(args.k) and 0.0 <= args.k <= 1.0):
        raise UserError(f"--k must be within [0, 1], got {args.k}")
    from xdlm_vision.core import TokenSpace, get_schedule
    from xdlm_vision.evaluation.card import git_commit, toolkit_versions, write_json_atomic
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo
    from xdlm_vision.sampling import make_model_fn, resolve_device
    from xdlm_vision.training import load_checkpoint

    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint, ema=args.ema, device=device)
    cfg = loaded.config
    space = TokenSpace(loaded.num_tokens, cfg.diffusion.k if args.k is None else args.k)
    schedule = get_schedule(cfg.diffusion.schedule)
    text = _is_text(loaded.meta)
    if text:  # the text checkpoint's own tokenizer and packing, on --data-path or its validation split
        from xdlm_vision.text.dataset import evaluation_set_from_spec

        dataset = evaluation_set_from_spec(loaded.tokenizer_spec, args.data_path, loaded.class_names)
        dataset_name = f"text:{args.data_path or 'val'}"
    else:
        dataset = _image_split(cfg, args.split)
        dataset_name = f"{cfg.data.name}:{args.split}"
    # one estimator for images and text: num_t seeded replicates -> mean and standard error
    est = monte_carlo_nelbo(
        make_model_fn(loaded.model, device), dataset, space, schedule, num_t=args.num_t, seed=args.seed,
        batch_size=args.batch_size, conditional=loaded.num_classes > 0, pass_time=cfg.model.time_conditioning,
        max_examples=args.max_examples, device=device, progress=not args.no_progress,
    )
    stderr = None if math.isnan(est.stderr_bits) else est.stderr_bits  # JSON has no NaN
    metrics = {"bits_per_token": est.bits_per_token, "stderr_bits_per_token": stderr,
               "nats_per_token": est.nats_per_token}
    if text:
        metrics["perplexity"] = est.perplexity_bound  # exp(NELBO): an upper bound on the perplexity
    card = {
        "dataset": dataset_name, "num_examples": est.num_examples, "tokens_per_replicate": est.num_tokens,
        "num_t": est.num_t, "replicates_bits_per_token": est.replicates,
        "estimator": "mean over num_t independent replicates (antithetic t per batch, z_t ~ q(z_t|x)); "
                     "stderr = std(replicates, ddof=1) / sqrt(num_t)",
        "k": {"evaluated": space.k, "trained": float(cfg.diffusion.k)}, "schedule": cfg.diffusion.schedule,
        "ema": loaded.ema, "seed": args.seed, "batch_size": args.batch_size,
        "checkpoint": {"path": str(loaded.path), "step": loaded.step},
        "toolkit": toolkit_versions(), "git": git_commit(),
    }
    payload = {"metrics": metrics, "protocol": card}
    if args.out:
        write_json_atomic(Path(args.out) / "metrics.json", payload)
    se = "n/a (--num-t 1)" if math.isnan(est.stderr_bits) else f"{est.stderr_bits:.4f}"
    extra = f", perplexity <= {est.perplexity_bound:.2f}" if text else ""
    print(f"{dataset_name}: {est.bits_per_token:.4f} bits/token (standard error {se}, {est.num_t} draws of t, "
          f"k={space.k:g}){extra}")
    return 0


def _is_text(meta: dict) -> bool:
    try:
        from xdlm_vision.text.perplexity import is_text_checkpoint
    except ImportError:
        return False
    return is_text_checkpoint(meta)


def _image_split(cfg, split: str):
    from xdlm_vision.errors import UserError
    from xdlm_vision.training.build import build_data

    bundle = build_data(cfg)
    dataset = bundle.val if split == "val" else bundle.train
    if dataset is None:
        raise UserError(f"the {cfg.data.name} data of this checkpoint has no {split} split; use --split train")
    return dataset


# ---------------------------------------------------------------------------------------------
# digits


def run_digits(args) -> int:
    import torch

    from xdlm_vision.errors import UserError
    from xdlm_vision.evaluation.card import toolkit_versions, write_json_atomic
    from xdlm_vision.evaluation.digits_metrics import digits_metrics
    from xdlm_vision.sampling import generate, load_for_sampling, parse_classes, resolve_device, sample_seeds

    opts = _options(args)
    sm = load_for_sampling(args.checkpoint, ema=args.ema, device=resolve_device(args.device), k=args.k,
                           load_tokenizer=False)
    if sm.space.num_tokens != 17 or tuple(sm.grid_shape) != (8, 8) or sm.num_classes != 10:
        raise UserError(f"--checkpoint {sm.path} is not a digits checkpoint (17 tokens, 8x8 grid, 10 classes)")
    labels = parse_classes(",".join(str(c) for c in range(10)), args.num, 10)
    t0 = time.time()
    tokens = generate(sm, labels, sample_seeds(args.seed, args.num), opts, batch_size=args.batch_size,
                      progress=not args.no_progress)  # (num, 8, 8)
    m = digits_metrics(tokens, torch.tensor(labels))
    per_class = [None if math.isnan(a) else a for a in m.per_class_accuracy]  # JSON has no NaN
    metrics = {"accuracy": m.accuracy, "digits_fid": m.digits_fid, "per_class_accuracy": per_class}
    card = {"num_samples": m.num_samples, "label_sampling": "per-class: image i has class i mod 10",
            "reference": f"digits validation split ({m.num_reference} images), classifier penultimate features",
            **_sampling_card(args, sm), "toolkit": toolkit_versions(),
            "time_seconds": round(time.time() - t0, 1)}
    payload = {"metrics": metrics, "protocol": card}
    if args.out:
        write_json_atomic(Path(args.out) / "metrics.json", payload)
    print(f"digits: accuracy {m.accuracy:.3f}, digits-FID {m.digits_fid:.3f} ({m.num_samples} samples, "
          f"{args.steps} steps, cfg {args.cfg:g}, k={sm.space.k:g})")
    return 0
