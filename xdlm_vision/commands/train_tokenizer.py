"""``xdlm-vision train-tokenizer fashion --out runs/fashion-vq [KEY=VALUE ...] [--resume] [--report-only]``

Trains the Fashion-MNIST VQ tokenizer (xdlm_vision/training/vq_trainer.py), then evaluates it on
the test split (PSNR, codebook usage, classifier accuracy on reconstructions; report.json and
reconstructions.png in OUT). KEY=VALUE overrides the settings, e.g. ``steps=2000 codebook_size=1024``.
"""

from __future__ import annotations

import argparse
import json

HELP = "train the Fashion-MNIST VQ tokenizer (LlamaGen architecture) and report PSNR / codebook usage / accuracy"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    parser.add_argument("dataset", choices=["fashion"], help="the dataset to train on (fashion)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="VQTrainSettings fields, e.g. steps=2000 batch_size=64 codebook_size=1024")
    parser.add_argument("--out", default="runs/fashion-vq", type=flags.OUT_DIR,
                        help="output folder (default runs/fashion-vq)")
    parser.add_argument("--data-dir", default=None, type=flags.IN_PATH,
                        help="folder of the four Fashion-MNIST IDX files (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--report-only", action="store_true",
                        help="only evaluate OUT/tokenizer.safetensors on the test split (rewrites report.json)")
    parser.add_argument("--max-eval-images", type=flags.int_in(2), default=None,
                        help="evaluate on the first N >= 2 test images (default all 10,000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_settings(overrides: list[str]):
    """``["steps=2000", ...]`` -> VQTrainSettings; UserError naming a bad key or value."""
    import yaml

    from xdlm_vision.errors import UserError
    from xdlm_vision.training.vq_trainer import settings_from

    values = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise UserError(f"tokenizer setting {text!r}: expected KEY=VALUE")
        try:
            values[key] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise UserError(f"tokenizer setting {text!r}: the value is not a number, list or word") from None
    return settings_from(values, "tokenizer setting")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xdlm_vision.errors import UserError
    from xdlm_vision.evaluation.vq_report import main_report
    from xdlm_vision.training.vq_trainer import TOKENIZER_CONFIG, TOKENIZER_WEIGHTS, train_vq_tokenizer

    out = Path(args.out)
    if args.report_only:
        weights = out / TOKENIZER_WEIGHTS
        if not weights.is_file():
            raise UserError(f"--report-only: {weights} does not exist; train the tokenizer first")
        report = main_report(weights, out / TOKENIZER_CONFIG, out, args.data_dir, args.max_eval_images)
    else:
        settings = parse_settings(args.overrides)
        result = train_vq_tokenizer(settings, out, data_dir=args.data_dir, resume=args.resume,
                                    progress=not args.no_progress, eval_max_images=args.max_eval_images)
        report = result.report
        print(f"trained {result.step} steps at {result.images_per_second:.1f} images/s "
              f"({result.wall_seconds:.0f} s in this run) -> {out / TOKENIZER_WEIGHTS}")
    print(json.dumps({k: v for k, v in report.items() if k != "train"}, indent=2))
    return 0
