"""``xdlm-vision demo``: the Gradio app of ``apps/xdlm_demo.py`` (needs the ``demo`` extra: gradio).

The model picker offers every ``--checkpoint`` given (repeatable; the first is selected) and every
checkpoint that ships with the package (``packaged:digits``, ``digits-mdlm``, ``fashion``, ``fashion-mdlm``). One
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
    parser.add_argument("--port", type=flags.int_in(1, 65535), default=7860, help="port, 1..65535 (default 7860)")
    flags.add_ema(parser)
    parser.add_argument("--tokenizer-checkpoint", default=None, metavar="PATH", type=flags.IN_PATH,
                        help="VQ tokenizer weights to decode with (replaces the recorded path)")
    flags.add_device(parser)


def _check_listen(host: str, port: int) -> None:
    """UserError unless this machine can listen on host:port (checked before the model loads)."""
    import socket

    from xdlm_vision.errors import UserError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UserError(f"--host {host!r} is not a valid address or name ({exc})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise UserError(f"cannot listen on --host {host} --port {port}: {exc.strerror or exc} "
                            f"(is the port in use, or the address not one of this machine?)") from None


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.errors import UserError

    if not 0 < args.port < 65536:
        raise UserError(f"--port must be within 1..65535, got {args.port}")
    _check_listen(args.host, args.port)
    from xdlm_vision.demo import launch

    launch(args.checkpoint, host=args.host, port=args.port, ema=args.ema,
           tokenizer_checkpoint=args.tokenizer_checkpoint, device=args.device)
    return 0
