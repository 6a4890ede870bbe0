"""Entry point of the ``xdlm-vision`` console script.

Subcommands live in :mod:`xdlm_vision.commands` (one module each, registered in ``COMMANDS``).
Shared flags are checked once here (:func:`xdlm_vision.commands.flags.check`). A
:class:`~xdlm_vision.errors.UserError` raised anywhere below becomes a single ``error: ...`` line on
stderr and exit status 2; :class:`~xdlm_vision.errors.TrainingDiverged` the same line and exit
status 3; ``XDLM_DEBUG=1`` shows the traceback instead. Any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xdlm_vision import __version__
from xdlm_vision.commands import COMMANDS, flags
from xdlm_vision.errors import EXIT_DIVERGED, EXIT_USER_ERROR, TrainingDiverged, UserError


def _load(name: str):
    return importlib.import_module(f"xdlm_vision.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdlm-vision",
        description="Class-conditional discrete diffusion (XDLM) over image tokens.",
    )
    parser.add_argument("--version", action="version", version=f"xdlm-vision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        flags.check(args)
        return int(args._module.run(args) or 0)
    except (UserError, TrainingDiverged) as exc:
        if os.environ.get("XDLM_DEBUG"):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(exc, TrainingDiverged) else EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
