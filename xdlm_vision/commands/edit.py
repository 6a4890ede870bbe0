"""``xdlm-vision edit``: inpaint, outpaint, re-generate a region or make variations of an image.

The image is fitted to the model's size and tokenized; the mask (white = regenerate, same size as
the image) marks the token cells to generate, every other cell is held at the input's token.
``--strength t`` < 1 starts the region from the input re-noised to time t instead of from noise
(variations; with ``--class`` another class: a class swap). ``--revise-border PIXELS`` lets a
k > 0 model also revise the held tokens next to the region (it repairs the seam). Image i uses seed
``--seed + i``. See docs/editing.md.
"""

from __future__ import annotations

import argparse

HELP = "edit an image: regenerate a masked region (inpaint), extend it (outpaint) or make variations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    flags.add_checkpoint(parser, required=False)
    parser.add_argument("--image", required=True, metavar="PATH", type=flags.IN_PATH, help="the image to edit (PNG, JPEG, ...)")
    parser.add_argument("--mask", default=None, metavar="PATH", type=flags.IN_PATH,
                        help="mask image of the same size as --image: white = regenerate, black = keep; a token "
                             "cell is regenerated if any of its pixels is white")
    parser.add_argument("--outpaint", default=None, metavar="SIDE:N",
                        help="instead of --mask: extend the canvas by N token columns/rows on SIDE "
                             "(left, right, top or bottom), e.g. right:2")
    flags.add_class(parser, None, "the class of the regenerated content; default: unconditional (the null "
                                  "class), which allows no --cfg")
    parser.add_argument("--strength", type=flags.float_in(0.0, 1.0), default=1.0, metavar="T",
                        help="1 (default): the region starts from noise; T in (0, 1): from the input re-noised to "
                             "time T (variations, class swap; ancestral sampler); 0: the input unchanged")
    parser.add_argument("--revise-border", type=flags.int_in(0, 4096), default=0, metavar="PIXELS",
                        help="also let the sampler revise the held tokens within PIXELS of the region "
                             "(k > 0 models only; rounded up to whole token cells; default 0)")
    flags.add_cfg(parser)
    flags.add_sampler(parser, steps=8)
    parser.add_argument("--num", type=flags.int_in(1, 4096), default=4,
                        help="number of edits, image i with seed SEED+i (1..4096, default 4)")
    flags.add_seed(parser, help="edit i uses seed SEED+i (default 0)")
    parser.add_argument("--batch-size", type=flags.int_in(1, 65536), default=64,
                        help="images per forward pass (default 64)")
    flags.add_ema(parser)
    flags.add_k(parser)
    flags.add_image_outputs(
        parser, "VQ tokenizer weights to encode/decode with (replaces the path recorded in the checkpoint)",
        "edit.png", "PNG: the input with the region outlined, then every result",
        "also write the per-step trajectory as an animated GIF (the region outlined; held tokens do not move), "
        "plus PATH.png (strip) and PATH_counts.png")
    flags.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.commands.flags import options_from
    from xdlm_vision.jobs import EditImageJob, run_edit_image

    return run_edit_image(options_from(EditImageJob, args))
