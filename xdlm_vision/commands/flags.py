"""Flags shared by several commands: one name, one help text and one check for each.

``add_*`` put a flag on a parser; :func:`check` validates every shared flag a parsed namespace
holds and is called once by the CLI (:func:`xdlm_vision.cli.main`) before any command runs, so
the library below receives values that are already in range.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from xdlm_vision.errors import UserError
from xdlm_vision.sampling.generate import SAMPLER_CHOICES

CFG_HELP = (
    "classifier-free guidance gamma in the XDLM convention: log x_hat = (1+gamma) log_softmax(cond) "
    "- gamma log_softmax(null); 0 = plain conditional sampling. LlamaGen/DiT's scale s (u + s(c-u)) "
    "is s = 1 + gamma, so --cfg 2.0 here is LlamaGen's cfg-scale 3.0 (default 0)"
)


def add_checkpoint(p: argparse.ArgumentParser, required: bool = True) -> None:
    if required:
        p.add_argument("--checkpoint", required=True, metavar="DIR",
                       help="checkpoint step directory, run directory (its newest checkpoint) or "
                            "packaged:NAME (digits, digits-mdlm)")
    else:
        p.add_argument("--checkpoint", default=None, metavar="DIR",
                       help="checkpoint step directory, run directory (its newest checkpoint) or "
                            "packaged:NAME (digits, digits-mdlm) (default: packaged:digits)")


def add_ema(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                   help="use the EMA weights (default) or the raw ones (--no-ema)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:i] (default auto)")


def add_k(p: argparse.ArgumentParser) -> None:
    p.add_argument("--k", type=float, default=None,
                   help="override the mixing ratio k in [0, 1] (default: the trained k)")


def add_cfg(p: argparse.ArgumentParser, schedule: bool = True) -> None:
    p.add_argument("--cfg", type=float, default=0.0, metavar="GAMMA", help=CFG_HELP)
    if schedule:
        p.add_argument("--cfg-schedule", choices=("constant", "linear"), default="constant",
                       help="constant gamma, or a linear ramp gamma*(step+1)/T (default constant)")


def add_sampler(p: argparse.ArgumentParser, steps: int = 8) -> None:
    p.add_argument("--sampler", choices=SAMPLER_CHOICES, default="ancestral",
                   help="ancestral XDLM posterior sampling or confidence-based decoding (default ancestral)")
    p.add_argument("--steps", type=int, default=steps, help=f"sampler steps (default {steps})")


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
    if cfg is not None and not (math.isfinite(cfg) and cfg >= 0):
        raise UserError(f"--cfg must be a finite number >= 0 (XDLM gamma; LlamaGen/DiT scale = 1 + gamma), got {cfg}")
    _at_least(args, "num", "--num", 1)
    _at_least(args, "batch_size", "--batch-size", 1)
    k = getattr(args, "k", None)
    if k is not None and not (math.isfinite(k) and 0.0 <= k <= 1.0):
        raise UserError(f"--k must be within [0, 1], got {k}")


def options_from(cls, args: argparse.Namespace, **given):
    """An options dataclass ``cls`` filled from the parsed flags of the same names (plus ``given``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**values, **given})
