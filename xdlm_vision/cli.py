"""Entry point of the ``xdlm-vision`` console script.

Subcommands live in :mod:`xdlm_vision.commands` (one module each, registered in ``COMMANDS``).
Shared flags are checked once here (:func:`xdlm_vision.commands.flags.check`). A
:class:`~xdlm_vision.errors.UserError` raised anywhere below becomes a single ``error: ...`` line on
stderr and exit status 2; :class:`~xdlm_vision.errors.TrainingDiverged` the same line and exit
status 3; ``XDLM_DEBUG=1`` shows the traceback instead. A bad flag found by argparse is one
``error: ...`` line too (no usage block; ``--help`` shows it), and a write the disk refuses (full,
read-only, no permission) is one ``error: cannot write ...`` line with exit status 2. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xdlm_vision import __version__, threads
from xdlm_vision.commands import COMMANDS, flags
from xdlm_vision.errors import EXIT_DIVERGED, EXIT_USER_ERROR, TrainingDiverged, UserError
from xdlm_vision.io import WRITE_ERRNOS


class FlagError(Exception):
    """A flag argparse rejected; :func:`main` prints it as one line."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <prog>: <message>`` instead of the usage block."""

    def error(self, message: str):
        raise FlagError(f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)")


# advice that libraries attach to load errors and that we never pass on (it means: run the file's code)
_UNSAFE_ADVICE = ("weights_only=False", "weights_only` to `False", "allow_pickle=True", "unsafe", "trust_remote_code")


def one_line(message: str, limit: int = 600) -> str:
    """``message`` as one line: whitespace collapsed, clauses suggesting unsafe loading dropped."""
    text = " ".join(str(message).split())
    if any(a in text for a in _UNSAFE_ADVICE):
        parts = [p for p in text.replace("; ", ". ").split(". ") if not any(a in p for a in _UNSAFE_ADVICE)]
        text = ". ".join(parts) if parts else "the file holds objects that are never unpickled"
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _write_error(exc: OSError) -> str:
    where = exc.filename or ""
    reason = exc.strerror or str(exc)
    return f"cannot write {where}: {reason}" if where else f"cannot write: {reason}"


def _load(name: str):
    return importlib.import_module(f"xdlm_vision.commands.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


def parse_with_trailing_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, except that KEY=VALUE overrides may also follow the flags
    (``train fashion --out runs/f training.steps=10``): argparse fills a ``nargs="*"`` positional
    only once, so overrides after a flag come back unrecognised; they join ``args.overrides`` in
    order. Anything else left over is the usual one-line error."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        takes = isinstance(getattr(args, "overrides", None), list)
        stray = [a for a in extra if not takes or a.startswith("-") or "=" not in a]
        if stray:
            prog = f"xdlm-vision {args.command}" if getattr(args, "command", None) else parser.prog
            raise FlagError(f"{prog}: unrecognized arguments: {' '.join(stray)} (see {prog} --help)")
        args.overrides.extend(extra)
    return args


def main(argv: list[str] | None = None) -> int:
    threads.prepare_environment()  # OMP_WAIT_POLICY=PASSIVE, before the commands import torch
    parser = build_parser()
    try:
        args = parse_with_trailing_overrides(parser, argv)
    except FlagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    threads.apply_threads(args.threads)
    try:
        flags.check(args)
        return int(args._module.run(args) or 0)
    except (UserError, TrainingDiverged) as exc:
        if os.environ.get("XDLM_DEBUG"):
            raise
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(exc, TrainingDiverged) else EXIT_USER_ERROR
    except OSError as exc:  # the disk refused a write: full, read-only, no permission
        if os.environ.get("XDLM_DEBUG") or exc.errno not in WRITE_ERRNOS:
            raise
        print(f"error: {_write_error(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
