"""``xdlm-vision import-official``: the XDLM authors' released file -> a normal checkpoint directory.

The file is read without executing anything in it (``docs/official.md``); the result holds
safetensors weights and a config.json recording the source file, its SHA-256, the algorithm, k1,
EMA or raw weights and the official process, and loads in ``sample``, ``eval`` and ``demo`` like any
checkpoint. Those commands also accept the official file itself as ``--checkpoint``.
"""

from __future__ import annotations

import argparse

HELP = "convert an official XDLM checkpoint (.ckpt, state dict, EMA dict, safetensors) into a checkpoint directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    parser.add_argument("file", metavar="FILE", type=flags.IN_PATH,
                        help="official file: Lightning .ckpt, torch state dict or EMA dict, model.safetensors "
                             "(+ config.json beside it) or a directory holding them")
    parser.add_argument("--out", required=True, metavar="DIR", type=flags.OUT_DIR,
                        help="checkpoint directory to create (must be new)")
    flags.add_ema(parser)  # EMA is also what the official samplers use
    parser.add_argument("--algo", choices=["mdlm", "udlm", "xdlm", "gidd"], default=None,
                        help="the training algorithm when the file does not say (recorded as assumed)")
    parser.add_argument("--k", type=flags.float_in(0.0, 1.0), default=None, metavar="K1",
                        help="the official k1 in [0, 1] when the file does not say (recorded as assumed); "
                             "unlike sample/eval --k this is the file's k1, not an override")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from xdlm_vision.checkpoints import import_official

    out = import_official(args.file, args.out, ema=args.ema, algo=args.algo, k=args.k, flag="FILE")
    meta = json.loads((Path(out) / "config.json").read_text())
    off = meta["official"]
    arch = off["architecture"]
    print(f"imported {off['layout']} file {args.file} (sha256 {off['sha256'][:12]}...) as {arch['kind']} "
          f"with {off['weights']} weights: {off['algo']} k1={off['k1']:g} -> official process N'={meta['data']['num_tokens']} "
          f"k'={off['process']['k_prime']:.6g}, loglinear schedule")
    for note in off["assumed"]:
        print(f"assumed: {note}")
    print(f"wrote {out}")
    return 0
