"""``xdlm-vision sample``: class-conditional images (PNG grid, per-image PNGs, trajectory GIF/strip).

Image i uses seed ``--seed + i`` and its own random stream, so it is the same image whatever
``--num`` and ``--batch-size`` are. Without ``--checkpoint`` the digits checkpoint that ships with
the package is used.
"""

from __future__ import annotations

import argparse

HELP = "sample class-conditional images from a checkpoint (PNG grid, optional per-image PNGs and trajectory GIF)"

CFG_HELP = (
    "classifier-free guidance gamma in the XDLM convention: log x_hat = (1+gamma) log_softmax(cond) "
    "- gamma log_softmax(null); 0 = plain conditional sampling. LlamaGen/DiT's scale s (u + s(c-u)) "
    "is s = 1 + gamma, so --cfg 2.0 here is LlamaGen's cfg-scale 3.0 (default 0)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default=None, metavar="DIR",
                        help="checkpoint step dir or run dir (default: the packaged digits checkpoint)")
    parser.add_argument("--class", dest="classes", default="0", metavar="ID|ID,ID,..|random",
                        help="class id, a comma list cycled over --num, or 'random' (from each image's seed) "
                             "(default 0)")
    parser.add_argument("--cfg", type=float, default=0.0, metavar="GAMMA", help=CFG_HELP)
    parser.add_argument("--cfg-schedule", choices=["constant", "linear"], default="constant",
                        help="constant gamma, or a linear ramp gamma*(step+1)/T (default constant)")
    parser.add_argument("--steps", type=int, default=8, help="sampling steps (default 8)")
    parser.add_argument("--num", type=int, default=16, help="number of images (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default 0)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--sampler", choices=["ancestral", "confidence"], default="ancestral",
                        help="ancestral XDLM posterior sampling or confidence-based decoding (default ancestral)")
    parser.add_argument("--ema", action=argparse.BooleanOptionalAction, default=True,
                        help="use the EMA weights (default) or the raw ones (--no-ema)")
    parser.add_argument("--k", type=float, default=None,
                        help="override the mixing ratio k for sampling (default: the trained k)")
    parser.add_argument("--tokenizer-checkpoint", default=None, metavar="PATH",
                        help="VQ tokenizer weights to decode with (replaces the path recorded in the checkpoint)")
    parser.add_argument("--out", default="samples.png", help="PNG grid to write (default samples.png)")
    parser.add_argument("--save-dir", default=None, metavar="DIR",
                        help="also write one PNG per image, named with its index, class and seed")
    parser.add_argument("--trajectory", default=None, metavar="PATH.gif",
                        help="write the per-step trajectory of the first images as an animated GIF, plus "
                             "PATH.png (strip: steps x samples) and PATH_counts.png (counts per step)")
    parser.add_argument("--trajectory-samples", type=int, default=8,
                        help="how many images the trajectory shows (default 8)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda (default auto)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError

    sampling.check_sampling_args(args.steps, args.cfg, args.num, args.batch_size)
    if args.trajectory is not None and not str(args.trajectory).lower().endswith(".gif"):
        raise UserError(f"--trajectory must name a .gif file, got {args.trajectory!r}")
    if args.trajectory_samples < 1:
        raise UserError(f"--trajectory-samples must be >= 1, got {args.trajectory_samples}")
    device = sampling.resolve_device(args.device)
    sm = sampling.load_for_sampling(args.checkpoint, ema=args.ema, device=device, k=args.k,
                                    tokenizer_checkpoint=args.tokenizer_checkpoint)
    labels = sampling.parse_classes(args.classes, args.num, sm.num_classes, args.seed)
    seeds = sampling.sample_seeds(args.seed, args.num)
    opts = sampling.SamplingOptions(steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                                    sampler=args.sampler)

    recorder = None
    if args.trajectory:
        from xdlm_vision.viz import TrajectoryRecorder

        recorder = TrajectoryRecorder(sm.grid_shape, sm.mask_id, max_samples=args.trajectory_samples)
    tokens = sampling.generate(sm, labels, seeds, opts, batch_size=args.batch_size,
                               watch=recorder.watch if recorder else None, progress=True)
    images = sampling.decode_tokens(sm, tokens, args.batch_size)
    written = [sampling.save_grid(images, args.out)]
    if args.save_dir:
        written += sampling.save_images(images, args.save_dir, labels, seeds, sm.class_names)
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
