"""``xdlm-vision sample``: class-conditional images (PNG grid, per-image PNGs, trajectory GIF/strip).

Image i uses seed ``--seed + i`` and its own random stream, so it is the same image whatever
``--num`` and ``--batch-size`` are. Without ``--checkpoint`` the digits checkpoint that ships with
the package is used. ``--compare A B ...`` samples two or more checkpoints alike and writes the
side-by-side view (:func:`run_compare`).
"""

from __future__ import annotations

import argparse

HELP = "sample class-conditional images from a checkpoint (PNG grid, optional per-image PNGs and trajectory GIF)"
MAX_NUM = 100_000  # images per call (the grid PNG holds them all)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    flags.add_checkpoint(parser, required=False)
    parser.add_argument("--compare", nargs="+", default=None, metavar="CHECKPOINT",
                        help="two or more checkpoints (directories or packaged:NAME) sampled with the same classes, "
                             "seeds, steps, sampler and CFG; --out gets one column per model (final images above "
                             "the created/refined/remasked counts), --trajectory the side-by-side GIF")
    flags.add_class(parser, "0", "default 0")
    flags.add_cfg(parser)
    flags.add_sampler(parser, steps=8)
    parser.add_argument("--num", type=flags.int_in(1, MAX_NUM), default=16,
                        help=f"number of images, 1..{MAX_NUM} (default 16)")
    flags.add_seed(parser, help="image i uses seed SEED+i (default 0)")
    parser.add_argument("--batch-size", type=flags.int_in(1, 65536), default=64,
                        help="images per forward pass (default 64)")
    flags.add_ema(parser)
    flags.add_k(parser)
    flags.add_image_outputs(
        parser, "VQ tokenizer weights to decode with (replaces the path recorded in the checkpoint)",
        "samples.png", "PNG grid to write",
        "write the per-step trajectory of the first images as an animated GIF, plus PATH.png (strip: steps x "
        "samples) and PATH_counts.png (counts per step)")
    parser.add_argument("--save-dir", default=None, metavar="DIR", type=flags.OUT_DIR,
                        help="also write one PNG per image, named with its index, class and seed")
    parser.add_argument("--trajectory-samples", type=flags.int_in(1, 64), default=None,
                        help="how many images the trajectory shows, 1..64 (default 8; needs --trajectory)")
    flags.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.compare is not None:
        return run_compare(args)

    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.viz import save_grid, save_images

    if args.trajectory is not None and not str(args.trajectory).lower().endswith(".gif"):
        raise UserError(f"--trajectory must name a .gif file, got {args.trajectory!r}")
    if args.trajectory_samples is not None and args.trajectory is None:
        raise UserError("--trajectory-samples needs --trajectory PATH.gif (it sets how many images that shows)")
    trajectory_samples = 8 if args.trajectory_samples is None else args.trajectory_samples
    device = sampling.resolve_device(args.device)
    sm = sampling.load_for_sampling(args.checkpoint, ema=args.ema, device=device, k=args.k,
                                    tokenizer_checkpoint=args.tokenizer_checkpoint)
    labels = sampling.parse_classes(args.classes, args.num, sm.num_classes, args.seed, class_names=sm.class_names)
    seeds = sampling.sample_seeds(args.seed, args.num)
    opts = sampling.SamplingOptions(steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                                    sampler=args.sampler)

    recorder = None
    if args.trajectory:
        from xdlm_vision.viz import TrajectoryRecorder

        recorder = TrajectoryRecorder(sm.grid_shape, sm.mask_id, max_samples=trajectory_samples)
    tokens = sampling.generate(sm, labels, seeds, opts, batch_size=args.batch_size,
                               watch=recorder.watch if recorder else None, progress=True)
    images = sampling.decode_tokens(sm, tokens, args.batch_size)
    written = [save_grid(images, args.out)]
    if args.save_dir:
        written += save_images(images, args.save_dir, labels, seeds, sm.class_names)
    if recorder is not None:
        from xdlm_vision.viz import counts_plot, save_gif, save_png, save_strip

        gif = Path(args.trajectory)
        decode = sampling.decoder(sm.tokenizer, sm.device)
        traj = recorder.trajectory
        written.append(save_gif(traj, decode, gif))
        written.append(save_strip(traj, decode, gif.with_suffix(".png"), max_columns=32))
        written.append(save_png(counts_plot(traj.counts, title=f"{traj.num_samples} images"),
                                gif.with_name(gif.stem + "_counts.png")))
    if hasattr(sm.tokenizer, "report"):  # an official model: its special ids are clamped before decoding
        print(sm.tokenizer.report())
    k_note = "" if sm.space.k == sm.trained_k else f" (trained k {sm.trained_k})"
    print(f"sampled {args.num} images from {sm.path} (step {sm.step}, {'EMA' if sm.ema else 'raw'} weights) "
          f"with {args.sampler}, {args.steps} steps, cfg gamma {args.cfg} ({args.cfg_schedule}), "
          f"k {sm.space.k}{k_note}, device {device}")
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} more file(s)" if len(written) > 1 else ""))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """``--compare``: sample every checkpoint alike, write the summary PNG (and the GIF)."""
    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.viz import TrajectoryRecorder
    from xdlm_vision.viz.compare import CompareColumn, save_compare

    if args.checkpoint is not None:
        raise UserError("--compare names every checkpoint itself; drop --checkpoint")
    if args.save_dir is not None:
        raise UserError("--save-dir is not supported with --compare")
    if args.trajectory is not None and not str(args.trajectory).lower().endswith(".gif"):
        raise UserError(f"--trajectory must name a .gif file, got {args.trajectory!r}")
    if args.num > args.batch_size:
        raise UserError(f"--compare shows every image, so --num ({args.num}) must be <= --batch-size ({args.batch_size})")
    device = sampling.resolve_device(args.device)
    models = sampling.load_compare_models(args.compare, ema=args.ema, device=device, k=args.k,
                                          tokenizer_checkpoint=args.tokenizer_checkpoint)
    labels = sampling.parse_classes(args.classes, args.num, sampling.compare_class_count(models), args.seed,
                                    class_names=sampling.compare_class_names(models))
    seeds = sampling.sample_seeds(args.seed, args.num)
    opts = sampling.SamplingOptions(steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                                    sampler=args.sampler)
    recorders = [TrajectoryRecorder(m.lm.grid_shape, m.lm.mask_id) for m in models]
    sampling.sample_compare(models, labels, seeds, opts, args.batch_size, [r.watch for r in recorders])
    columns = [CompareColumn(m.name, m.subtitle, r.trajectory, sampling.decoder(m.lm.tokenizer, device))
               for m, r in zip(models, recorders)]
    written = save_compare(columns, args.out, args.trajectory)
    print(f"compared {len(models)} checkpoints ({', '.join(m.name for m in models)}) on {args.num} images with "
          f"{args.sampler}, {args.steps} steps, cfg gamma {args.cfg} ({args.cfg_schedule}), device {device}")
    print("wrote " + " and ".join(str(p) for p in written))
    return 0
