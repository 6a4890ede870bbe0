"""``xdlm-vision sample``: class-conditional images (PNG grid, per-image PNGs, trajectory GIF/strip).

Image i uses seed ``--seed + i`` and its own random stream, so it is the same image whatever
``--num`` and ``--batch-size`` are. Without ``--checkpoint`` the digits checkpoint that ships with
the package is used. ``--compare A B ...`` samples two or more checkpoints alike and writes the
side-by-side view (:func:`run_compare`).
"""

from __future__ import annotations

import argparse

HELP = "sample class-conditional images from a checkpoint (PNG grid, optional per-image PNGs and trajectory GIF)"
MAX_NUM = 100_000  # images per call (the grid PNG holds them all)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    flags.add_checkpoint(parser, required=False)
    parser.add_argument("--compare", nargs="+", default=None, metavar="CHECKPOINT",
                        help="two or more checkpoints (directories or packaged:NAME) sampled with the same classes, "
                             "seeds, steps, sampler and CFG; --out gets one column per model (final images above "
                             "the created/refined/remasked counts), --trajectory the side-by-side GIF")
    flags.add_class(parser, "0", "default 0")
    flags.add_cfg(parser)
    flags.add_sampler(parser, steps=8)
    parser.add_argument("--num", type=flags.int_in(1, MAX_NUM), default=16,
                        help=f"number of images, 1..{MAX_NUM} (default 16)")
    flags.add_seed(parser, help="image i uses seed SEED+i (default 0)")
    parser.add_argument("--batch-size", type=flags.int_in(1, 65536), default=64,
                        help="images per forward pass (default 64)")
    flags.add_ema(parser)
    flags.add_k(parser)
    flags.add_image_outputs(
        parser, "VQ tokenizer weights to decode with (replaces the path recorded in the checkpoint)",
        "samples.png", "PNG grid to write",
        "write the per-step trajectory of the first images as an animated GIF, plus PATH.png (strip: steps x "
        "samples) and PATH_counts.png (counts per step)")
    parser.add_argument("--save-dir", default=None, metavar="DIR", type=flags.OUT_DIR,
                        help="also write one PNG per image, named with its index, class and seed")
    parser.add_argument("--trajectory-samples", type=flags.int_in(1, 64), default=None,
                        help="how many images the trajectory shows, 1..64 (default 8; needs --trajectory)")
    flags.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.commands.flags import options_from
    from xdlm_vision.jobs import SampleJob, run_sample

    return run_sample(options_from(SampleJob, args))
