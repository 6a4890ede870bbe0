"""``xdlm-vision train digits|cifar10|imagenet|PATH.yaml [key=value ...] [--out DIR] [--resume] [--dry-run]``

Multi-process / multi-GPU: ``accelerate launch --multi_gpu --num_processes P -m xdlm_vision.cli train ...``
(also on a CPU-only machine: without CUDA the processes train on the CPU through gloo).
``training.batch_size`` is the global batch; it is split over processes and accumulation steps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a class-conditional XDLM model (or a text LM) from a shipped preset or a YAML file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags
    from xdlm_vision.config import preset_names

    presets = ", ".join(preset_names())
    parser.add_argument("config", metavar="PRESET|PATH.yaml",
                        help=f"a shipped preset ({presets}) or a YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. optim.lr=1e-3 diffusion.k=0 training.steps=2000")
    parser.add_argument("--out", default=None, type=flags.OUT_DIR,
                        help="run directory for checkpoints/, samples/ and metrics.jsonl (default runs/<preset>)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and the parameter count, then exit")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def default_out(config: str) -> Path:
    return Path("runs") / Path(config).stem


def _warn_single_process_cpu_launch() -> None:
    """``accelerate launch --cpu --num_processes P`` (accelerate 1.x) starts ONE process unless run
    under mpirun; say so instead of silently training on one process."""
    import os
    import sys

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "MASTER_ADDR" in os.environ \
            and "WORLD_SIZE" not in os.environ and "PMI_SIZE" not in os.environ:
        print("note: `accelerate launch --cpu` started a single process; for several CPU processes use "
              "`accelerate launch --multi_gpu --num_processes P -m xdlm_vision.cli train ...` (without CUDA "
              "they run on the CPU) or torchrun --nproc_per_node P", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.build import count_model_parameters
    from xdlm_vision.config import config_to_yaml, load_config
    from xdlm_vision.data.registry import data_meta
    from xdlm_vision.errors import UserError
    from xdlm_vision.io import output_path_problem

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out) if args.out else default_out(args.config)
    problem = output_path_problem(out, "dir")
    if problem:
        raise UserError(f"--out {str(out)!r} {problem}")
    from xdlm_vision.config import check_sampling_classes

    meta = data_meta(cfg)
    check_sampling_classes(cfg, meta.num_classes)  # before any work: a typo must not cost a finished run
    if args.dry_run:
        print(config_to_yaml(cfg), end="")
        n = count_model_parameters(cfg, meta)
        print(f"# model: {cfg.model.kind} {cfg.model.size}, {n:,} parameters ({n / 1e6:.2f}M)")
        print(f"# output: {out}")
        return 0

    _warn_single_process_cpu_launch()
    from xdlm_vision.training.trainer import train

    result = train(cfg, out, resume=args.resume, progress=not args.no_progress)
    import accelerate.state

    if accelerate.state.PartialState().is_main_process:
        bpt = "n/a" if result.val_bits_per_token is None else f"{result.val_bits_per_token:.4f}"
        print(f"done: {result.step} steps in {result.wall_seconds:.0f} s; validation NELBO {bpt} bits/token; "
              f"checkpoint {result.checkpoint}")
    return 0
