"""``xdlm-vision sample-text``: draw text from a text checkpoint, optionally with its coloured trajectory."""

from __future__ import annotations

import argparse

HELP = "sample text from a text-LM checkpoint (prints samples; coloured trajectory as ANSI/HTML)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    flags.add_checkpoint(parser)
    flags.add_sampler(parser, steps=32)
    parser.add_argument("--length", type=flags.int_in(1, 1 << 20), default=None,
                        help="tokens per sample; must equal the checkpoint's text.seq_len (default: that value)")
    parser.add_argument("--num", type=flags.int_in(1, 10_000), default=4, help="number of samples, 1..10000 (default 4)")
    flags.add_seed(parser, help="sample i uses seed + i (default 0)")
    parser.add_argument("--label", default=None, help="class name to condition on (label-conditioned checkpoints)")
    flags.add_cfg(parser, schedule=False)
    parser.add_argument("--trajectory-html", default=None, metavar="PATH", type=flags.OUT_FILE,
                        help="write the coloured per-step trajectory of every sample to this HTML file")
    parser.add_argument("--ansi", action="store_true", help="print the coloured trajectory in the terminal")
    flags.add_ema(parser)
    flags.add_k(parser)
    flags.add_device(parser)


def _check(args) -> None:
    from xdlm_vision.errors import UserError

    if args.trajectory_html is not None and not args.trajectory_html.lower().endswith((".html", ".htm")):
        raise UserError(f"--trajectory-html must name an .html file, got {args.trajectory_html!r}")


def _labels(args, loaded):
    import torch

    from xdlm_vision.errors import UserError

    if args.label is None:
        if args.cfg > 0:
            raise UserError("--cfg needs --label (guidance is towards a class)")
        return None
    if loaded.num_classes == 0:
        raise UserError("--label: this checkpoint is unconditional (trained without text.label_field)")
    if args.label not in loaded.class_names:
        raise UserError(f"--label {args.label!r} is not a class of this checkpoint; choose one of "
                        f"{', '.join(loaded.class_names[:20])}")
    return torch.full((args.num,), loaded.class_names.index(args.label), dtype=torch.long)


def run(args) -> int:
    from xdlm_vision.errors import UserError
    from xdlm_vision.sampling import load_for_sampling
    from xdlm_vision.sampling.text import generate_text
    from xdlm_vision.tokenizers import load_tokenizer
    from xdlm_vision.tokenizers.text import printable
    from xdlm_vision.viz.text_trajectory import (
        ansi_legend,
        render_ansi,
        render_html,
        trajectory_frames,
        write_html,
    )

    _check(args)
    loaded = load_for_sampling(args.checkpoint, ema=args.ema, device=args.device, k=args.k, load_tokenizer=False)
    if not loaded.is_text:
        raise UserError(f"--checkpoint {loaded.path} is not a text checkpoint; use the image sampling command")
    seq_len = int(loaded.grid_shape[0])
    if args.length is not None and args.length != seq_len:
        raise UserError(f"--length {args.length}: this checkpoint was trained on sequences of {seq_len} tokens "
                        f"(positions are fixed); pass --length {seq_len} or omit it")
    tokenizer = load_tokenizer(loaded.tokenizer_spec)
    want_steps = args.ansi or args.trajectory_html is not None
    out = generate_text(
        loaded.model, tokenizer, loaded.spec, num_samples=args.num, seq_len=seq_len, num_steps=args.steps,
        sampler=args.sampler, seed=args.seed, class_labels=_labels(args, loaded), cfg=args.cfg,
        null_class=loaded.null_class, keep_steps=want_steps, device=loaded.device,
    )
    mask_text = "\u2591" if loaded.tokenizer_spec.get("tokenizer") == "byte" else "[MASK]"  # ░ per masked byte
    frames = [trajectory_frames(out.steps, tokenizer, loaded.space.mask_id, i, mask_text) for i in range(args.num)] \
        if want_steps else []
    k = loaded.spec.k
    print(f"# {args.num} samples, {args.steps} {args.sampler} steps, k={k}, "
          f"checkpoint step {loaded.step} ({loaded.path})")
    for i, text in enumerate(out.texts):
        print(f"\n=== sample {i} (seed {args.seed + i}) ===")
        print(printable(text))
        if args.ansi:
            print(f"\n--- trajectory of sample {i}: {ansi_legend()}")
            print(render_ansi(frames[i], color=True))
    if args.trajectory_html is not None:
        captions = [f"sample {i} (seed {args.seed + i}), {args.sampler}, {args.steps} steps, k={k}"
                    for i in range(args.num)]
        path = write_html(args.trajectory_html, render_html(frames, "XDLM text sampling trajectory", captions))
        print(f"\ntrajectory written to {path}")
    return 0
