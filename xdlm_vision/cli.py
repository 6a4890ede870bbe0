"""Entry point of the ``xdlm-vision`` console script.

Subcommands live in :mod:`xdlm_vision.commands` (one module each, registered in ``COMMANDS``).
A :class:`~xdlm_vision.errors.UserError` raised anywhere below becomes a single
``error: ...`` line on stderr and exit status 2; ``XDLM_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xdlm_vision import __version__, threads
from xdlm_vision.commands import COMMANDS
from xdlm_vision.errors import UserError


def _load(name: str):
    return importlib.import_module(f"xdlm_vision.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdlm-vision",
        description="Class-conditional discrete diffusion (XDLM) over image tokens.",
    )
    parser.add_argument("--version", action="version", version=f"xdlm-vision {__version__}")
    parser.add_argument(
        "--threads",
        type=threads.parse_threads,
        default=None,
        metavar="N",
        help="CPU threads for torch and the core's workers (default: auto = all cores this process may use)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    threads.prepare_environment()  # OMP_WAIT_POLICY=PASSIVE, before the commands import torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    threads.apply_threads(args.threads)
    try:
        return int(args._module.run(args) or 0)
    except UserError as exc:
        if os.environ.get("XDLM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
