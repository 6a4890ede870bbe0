"""``xdlm-vision demo``: the Gradio app of ``apps/xdlm_demo.py`` (needs the ``demo`` extra: gradio).

The model picker offers every ``--checkpoint`` given (repeatable; the first is selected) and every
checkpoint that ships with the package (``packaged:digits``, ``packaged:digits-mdlm``). One
sampling job runs at a time; further requests wait in Gradio's queue.
"""

from __future__ import annotations

import argparse

HELP = ("interactive Gradio demo: pick a model, class, CFG, steps and sampler, watch the tokens being denoised; "
        "compare two models side by side")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    parser.add_argument("--checkpoint", action="append", default=None, metavar="DIR",
                        help="a checkpoint to offer (step or run directory, or packaged:NAME); repeatable, the "
                             "first is selected; every packaged checkpoint is offered as well")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    flags.add_ema(parser)
    parser.add_argument("--tokenizer-checkpoint", default=None, metavar="PATH",
                        help="VQ tokenizer weights to decode with (replaces the recorded path)")
    flags.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.errors import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be within 1..65535, got {args.port}")
    from xdlm_vision.demo import launch

    launch(args.checkpoint, host=args.host, port=args.port, ema=args.ema,
           tokenizer_checkpoint=args.tokenizer_checkpoint, device=args.device)
    return 0
