"""Flags shared by several commands: one name, one help text and one check for each.

``add_*`` put a flag on a parser; :func:`check` validates every shared flag a parsed namespace
holds and is called once by the CLI (:func:`xdlm_vision.cli.main`) before any command runs, so
the library below receives values that are already in range.

Every numeric flag of every command uses a bounded type (:func:`int_in`, :func:`float_in`,
:data:`SEED`) and every output path :data:`OUT_FILE` / :data:`OUT_DIR` (checked with
:func:`xdlm_vision.io.output_path_problem` while parsing, i.e. before any work); input paths use
:data:`IN_PATH`. tests/test_hostile_inputs.py reads these types off the parsers to build its sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from xdlm_vision.checkpoints.packaged import PACKAGED
from xdlm_vision.errors import UserError
from xdlm_vision.io import output_path_problem
from xdlm_vision.sampling.generate import SAMPLER_CHOICES

MAX_SEED = 2**63 - 1  # seeds are 64-bit: torch.Generator.manual_seed takes 0..2**63-1 here
MAX_CFG = 100.0  # guidance gamma above this only amplifies float error (and overflows near 1e308)
MAX_STEPS = 10_000  # sampler steps
MAX_INT = 2**31 - 1  # any other count


# ---------------------------------------------------------------------------------------------
# value types: every numeric and path flag is checked while parsing, so a bad value stops the
# command before any work with one line naming the flag (argparse adds "argument --flag: ")


def int_in(low: int, high: int = MAX_INT):
    """argparse type: a whole number within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number in {low}..{high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low}..{high}, got {value}")
        return value

    parse.bounds = (low, high)
    return parse


def float_in(low: float, high: float):
    """argparse type: a finite number within [low, high]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in [{low:g}, {high:g}], got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"must be a finite number in [{low:g}, {high:g}], got {text}")
        return value

    parse.bounds = (low, high)
    return parse


SEED = int_in(0, MAX_SEED)


def _path_type(kind: str, output: bool):
    def parse(text: str) -> str:
        if not output:
            if not str(text).strip():
                raise argparse.ArgumentTypeError("is empty")
            return text
        problem = output_path_problem(text, kind)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return text

    parse.path_kind = ("out-" if output else "in-") + kind
    return parse


OUT_FILE = _path_type("file", output=True)  # written by the command: checked before any work
OUT_DIR = _path_type("dir", output=True)
IN_PATH = _path_type("any", output=False)  # read by the command (existence is checked where it is opened)


def add_seed(p: argparse.ArgumentParser, help: str = "base seed: item i uses seed + i (default 0)") -> None:
    p.add_argument("--seed", type=SEED, default=0, help=f"{help}; 0..2**63-1")

CFG_HELP = (
    "classifier-free guidance gamma in the XDLM convention: log x_hat = (1+gamma) log_softmax(cond) "
    "- gamma log_softmax(null); 0 = plain conditional sampling. LlamaGen/DiT's scale s (u + s(c-u)) "
    "is s = 1 + gamma, so --cfg 2.0 here is LlamaGen's cfg-scale 3.0; within [0, 100] (default 0)"
)


def add_class(p: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """``--class``: ids or names (``Sneaker``) of the model's classes; ``what`` ends the help."""
    p.add_argument("--class", dest="classes", default=default, metavar="ID|NAME|ID,NAME,..|random",
                   help="class id or name (e.g. Sneaker: case, spaces and hyphens ignored), a comma list cycled "
                        f"over --num, or 'random' (from each image's seed); {what}")


_PACKAGED_NAMES = ", ".join(PACKAGED)


def add_checkpoint(p: argparse.ArgumentParser, required: bool = True) -> None:
    if required:
        p.add_argument("--checkpoint", required=True, metavar="DIR", type=IN_PATH,
                       help="checkpoint step directory, run directory (its newest checkpoint), "
                            f"packaged:NAME ({_PACKAGED_NAMES}) or an official XDLM file (docs/official.md)")
    else:
        p.add_argument("--checkpoint", default=None, metavar="DIR", type=IN_PATH,
                       help="checkpoint step directory, run directory (its newest checkpoint), "
                            f"packaged:NAME ({_PACKAGED_NAMES}) or an official XDLM file "
                            "(docs/official.md) (default: packaged:digits)")


def add_ema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (default) or the raw ones (--no-ema)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:i] (default auto)")


def check_device(name: str) -> None:
    """UserError unless ``name`` is auto, cpu, or an available cuda[:i] (checked before any work)."""
    import torch

    if name == "auto":
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda[:i]") from None
    if device.type == "cpu":
        return
    if device.type != "cuda":
        raise UserError(f"--device {name!r}: only auto, cpu and cuda[:i] are supported")
    if not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use --device cpu or auto")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")


def add_k(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=float_in(0.0, 1.0), default=None,
                   help="override the mixing ratio k in [0, 1] (default: the trained k)")


def add_cfg(p: argparse.ArgumentParser, schedule: bool = True) -> None:
    p.add_argument("--cfg", type=float_in(0.0, MAX_CFG), default=0.0, metavar="GAMMA", help=CFG_HELP)
    if schedule:
        p.add_argument("--cfg-schedule", choices=("constant", "linear"), default="constant",
                       help="constant gamma, or a linear ramp gamma*(step+1)/T (default constant)")


def add_sampler(p: argparse.ArgumentParser, steps: int = 8) -> None:
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default="ancestral",
                   help="ancestral XDLM posterior sampling or confidence-based decoding (default ancestral)")
    p.add_argument("--steps", type=int_in(1, MAX_STEPS), default=steps,
                   help=f"sampler steps, 1..{MAX_STEPS} (default {steps})")


def add_image_outputs(p: argparse.ArgumentParser, tokenizer_help: str, out_default: str, out_help: str,
                      trajectory_help: str) -> None:
    """--tokenizer-checkpoint, --out, --trajectory: the decoding and files of an image command."""
    p.add_argument("--tokenizer-checkpoint", default=None, metavar="PATH", type=IN_PATH, help=tokenizer_help)
    p.add_argument("--out", default=out_default, type=OUT_FILE, help=f"{out_help} (default {out_default})")
    p.add_argument("--trajectory", default=None, metavar="PATH.gif", type=OUT_FILE, help=trajectory_help)


def add_model_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """--checkpoint, --ema/--no-ema, --device: which weights to load and where."""
    add_checkpoint(p, required)
    add_ema(p)
    add_device(p)


def _at_least(args: argparse.Namespace, name: str, flag: str, low: int) -> None:
    value = getattr(args, name, None)
    if value is not None and value < low:
        raise UserError(f"{flag} must be >= {low}, got {value}")


def check(args: argparse.Namespace) -> None:
    """UserError naming the flag for any shared flag out of range (absent flags are skipped)."""
    _at_least(args, "steps", "--steps", 1)
    cfg = getattr(args, "cfg", None)
    if cfg is not None and not (math.isfinite(cfg) and 0 <= cfg <= MAX_CFG):
        raise UserError(f"--cfg must be a finite number in [0, {MAX_CFG:g}] (XDLM gamma; LlamaGen/DiT scale = "
                        f"1 + gamma), got {cfg}")
    _at_least(args, "num", "--num", 1)
    _at_least(args, "batch_size", "--batch-size", 1)
    seed, num = getattr(args, "seed", None), getattr(args, "num", None)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be within 0..2**63-1, got {seed}")
    if seed is not None and num is not None and seed + num - 1 > MAX_SEED:
        raise UserError(f"--seed {seed} + --num {num} - 1 passes the largest seed 2**63-1; lower --seed")
    k = getattr(args, "k", None)
    if k is not None and not (math.isfinite(k) and 0.0 <= k <= 1.0):
        raise UserError(f"--k must be within [0, 1], got {k}")
    if isinstance(getattr(args, "device", None), str):
        check_device(args.device)


def options_from(cls, args: argparse.Namespace, **given):
    """An options dataclass ``cls`` filled from the parsed flags of the same names (plus ``given``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**values, **given})
