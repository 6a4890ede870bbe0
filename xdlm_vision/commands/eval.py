"""``xdlm-vision eval fid|nelbo|digits``: sample quality and likelihood of a checkpoint.

* ``eval fid``: FID / IS (/ precision-recall) with a protocol card (:mod:`xdlm_vision.evaluation.fid_job`).
* ``eval nelbo``: bits per token with a standard error, perplexity bound for text checkpoints.
* ``eval digits``: accuracy of the digits classifier on class-conditional samples and digits-FID.

Argument parsing only; the runs are :mod:`xdlm_vision.evaluation.jobs`. The protocol is
documented in docs/evaluation.md.
"""

from __future__ import annotations

import argparse

from xdlm_vision.commands import flags

HELP = "evaluate a checkpoint: FID/IS with a protocol card, NELBO (bits per token), digits metrics"


def _common(p: argparse.ArgumentParser, sampling: bool) -> None:
    flags.add_model_flags(p)
    flags.add_k(p)
    flags.add_seed(p, help="base seed (image i uses seed + i)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    if sampling:
        flags.add_cfg(p)
        flags.add_sampler(p, steps=8)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_what", metavar="fid|nelbo|digits", required=True)

    fid = sub.add_parser("fid", help="sample N images and score FID/IS against a reference",
                         description="Sample N images (resumable shards) and score FID/IS against a reference.")
    _common(fid, sampling=True)
    fid.add_argument("--inception-weights", required=True, metavar="PATH", type=flags.IN_PATH,
                     help="torch-fidelity InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth or "
                          ".safetensors); never downloaded")
    fid.add_argument("--reference", required=True, metavar="REF", type=flags.IN_PATH,
                     help="ADM .npz with mu/sigma, .npz of arr_0 images, CIFAR-10 folder (train split) or image folder")
    fid.add_argument("--num", type=flags.int_in(2, 10_000_000), default=50_000,
                     help="number of samples, 2..10000000 (default 50000)")
    labels = fid.add_mutually_exclusive_group()
    labels.add_argument("--per-class", dest="labels", action="store_const", const="per-class",
                        help="balanced labels: image i has class i mod C (default)")
    labels.add_argument("--random-labels", dest="labels", action="store_const", const="random",
                        help="uniform random labels: image i draws its class from Random(seed + i)")
    fid.set_defaults(labels="per-class")
    fid.add_argument("--batch-size", type=flags.int_in(1, 65536), default=64,
                     help="sampling batch per process (default 64)")
    fid.add_argument("--shard-size", type=flags.int_in(1, 1_000_000), default=1000,
                     help="images per resumable shard (default 1000)")
    fid.add_argument("--format", choices=("npz", "png"), default="npz",
                     help="npz: shards + OUT/samples.npz in the ADM evaluator's format (default); png: PNG shards")
    fid.add_argument("--out", default=None, type=flags.OUT_DIR, help="output directory (default: runs/eval_fid)")
    fid.add_argument("--precision-recall", action="store_true", help="also k-NN precision/recall (needs reference images)")
    fid.add_argument("--inception-batch-size", type=flags.int_in(1, 65536), default=64,
                     help="images per Inception forward")
    fid.add_argument("--max-shards", type=flags.int_in(0), default=None,
                     help="write at most this many new shards per process, then stop (split long jobs)")
    fid.add_argument("--sample-only", action="store_true", help="only sample the shards; skip scoring")
    fid.add_argument("--tokenizer-checkpoint", default=None, type=flags.IN_PATH,
                     help="VQ tokenizer weights for decoding, if not recorded (VQ checkpoints only)")

    nel = sub.add_parser("nelbo", help="bits per token on a dataset split (Monte-Carlo over t, with standard error)",
                         description="NELBO in bits per token (and a perplexity bound) with a standard error.")
    _common(nel, sampling=False)
    nel.add_argument("--split", choices=("val", "train"), default="val", help="dataset split (default val)")
    nel.add_argument("--num-t", type=flags.int_in(1, 10_000), default=8,
                     help="independent draws of t per example, 1..10000 (default 8)")
    nel.add_argument("--batch-size", type=flags.int_in(1, 65536), default=256, help="examples per forward (default 256)")
    nel.add_argument("--max-examples", type=flags.int_in(1), default=None, help="evaluate only the first N examples")
    nel.add_argument("--data-path", default=None, type=flags.IN_PATH,
                     help="text checkpoints only: evaluate this file instead of the split")
    nel.add_argument("--out", default=None, type=flags.OUT_DIR, help="write OUT/metrics.json")

    dig = sub.add_parser("digits", help="digits classifier accuracy and digits-FID of class-conditional samples",
                         description="Accuracy and digits-FID of class-conditional samples of a digits checkpoint.")
    _common(dig, sampling=True)
    dig.add_argument("--num", type=flags.int_in(2, 1_000_000), default=500,
                     help="samples, balanced over the 10 classes, 2..1000000 (digits-FID needs 2) (default 500)")
    dig.add_argument("--batch-size", type=flags.int_in(1, 65536), default=250, help="sampling batch (default 250)")
    dig.add_argument("--out", default=None, type=flags.OUT_DIR, help="write OUT/metrics.json")


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.evaluation import fid_job, jobs

    kind, call = {"fid": (fid_job.FidJob, fid_job.run_fid), "nelbo": (jobs.NelboJob, jobs.run_nelbo),
                  "digits": (jobs.SamplingJob, jobs.run_digits)}[args.eval_what]
    return call(flags.options_from(kind, args, progress=not args.no_progress))
