"""``xdlm-vision edit``: inpaint, outpaint, re-generate a region or make variations of an image.

The image is fitted to the model's size and tokenized; the mask (white = regenerate, same size as
the image) marks the token cells to generate, every other cell is held at the input's token.
``--strength t`` < 1 starts the region from the input re-noised to time t instead of from noise
(variations; with ``--class`` another class: a class swap). ``--revise-border PIXELS`` lets a
k > 0 model also revise the held tokens next to the region (it repairs the seam). Image i uses seed
``--seed + i``. See docs/editing.md.
"""

from __future__ import annotations

import argparse

HELP = "edit an image: regenerate a masked region (inpaint), extend it (outpaint) or make variations"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xdlm_vision.commands import flags

    flags.add_checkpoint(parser, required=False)
    parser.add_argument("--image", required=True, metavar="PATH", type=flags.IN_PATH, help="the image to edit (PNG, JPEG, ...)")
    parser.add_argument("--mask", default=None, metavar="PATH", type=flags.IN_PATH,
                        help="mask image of the same size as --image: white = regenerate, black = keep; a token "
                             "cell is regenerated if any of its pixels is white")
    parser.add_argument("--outpaint", default=None, metavar="SIDE:N",
                        help="instead of --mask: extend the canvas by N token columns/rows on SIDE "
                             "(left, right, top or bottom), e.g. right:2")
    flags.add_class(parser, None, "the class of the regenerated content; default: unconditional (the null "
                                  "class), which allows no --cfg")
    parser.add_argument("--strength", type=flags.float_in(0.0, 1.0), default=1.0, metavar="T",
                        help="1 (default): the region starts from noise; T in (0, 1): from the input re-noised to "
                             "time T (variations, class swap; ancestral sampler); 0: the input unchanged")
    parser.add_argument("--revise-border", type=flags.int_in(0, 4096), default=0, metavar="PIXELS",
                        help="also let the sampler revise the held tokens within PIXELS of the region "
                             "(k > 0 models only; rounded up to whole token cells; default 0)")
    flags.add_cfg(parser)
    flags.add_sampler(parser, steps=8)
    parser.add_argument("--num", type=flags.int_in(1, 4096), default=4,
                        help="number of edits, image i with seed SEED+i (1..4096, default 4)")
    flags.add_seed(parser, help="edit i uses seed SEED+i (default 0)")
    parser.add_argument("--batch-size", type=flags.int_in(1, 65536), default=64,
                        help="images per forward pass (default 64)")
    flags.add_ema(parser)
    flags.add_k(parser)
    flags.add_image_outputs(
        parser, "VQ tokenizer weights to encode/decode with (replaces the path recorded in the checkpoint)",
        "edit.png", "PNG: the input with the region outlined, then every result",
        "also write the per-step trajectory as an animated GIF (the region outlined; held tokens do not move), "
        "plus PATH.png (strip) and PATH_counts.png")
    flags.add_device(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.sampling.edit import EditOptions, prepare_edit, run_edit
    from xdlm_vision.sampling.edit_inputs import Outpaint, read_image
    from xdlm_vision.viz import TrajectoryRecorder, counts_plot, save_gif, save_png, save_strip
    from xdlm_vision.viz.outline import edit_sheet

    if args.trajectory is not None and not str(args.trajectory).lower().endswith(".gif"):
        raise UserError(f"--trajectory must name a .gif file, got {args.trajectory!r}")
    if not (0.0 <= args.strength <= 1.0):
        raise UserError(f"--strength must lie in [0, 1], got {args.strength}")
    image = read_image(args.image, "--image")
    mask = read_image(args.mask, "--mask") if args.mask is not None else None
    outpaint = Outpaint.parse(args.outpaint) if args.outpaint is not None else None
    device = sampling.resolve_device(args.device)
    lm = sampling.load_for_sampling(args.checkpoint, ema=args.ema, device=device, k=args.k,
                                    tokenizer_checkpoint=args.tokenizer_checkpoint)
    job = prepare_edit(lm, image, mask, outpaint, args.revise_border)
    if args.classes is None:
        if args.cfg > 0:
            raise UserError("--cfg needs --class: guidance pushes towards a class, and none was given")
        labels = [lm.null_class] * args.num
    else:
        labels = sampling.parse_classes(args.classes, args.num, lm.num_classes, args.seed, class_names=lm.class_names)
    seeds = sampling.sample_seeds(args.seed, args.num)
    opts = sampling.SamplingOptions(steps=args.steps, cfg=args.cfg, cfg_schedule=args.cfg_schedule,
                                    sampler=args.sampler)
    edit = EditOptions(strength=args.strength, revise_border=args.revise_border)
    if job.keep.sum() == 0 and outpaint is None:
        print("note: the mask covers the whole image; this is plain sampling (the same as xdlm-vision sample)")

    recorder = None
    if args.trajectory:
        region = job.region[None].expand(args.num, -1, -1)
        recorder = TrajectoryRecorder(job.canvas_shape, lm.mask_id, max_samples=8, region=region)
    result = run_edit(lm, job, labels, seeds, opts, edit, batch_size=args.batch_size,
                      watch=recorder.watch if recorder else None)
    images = sampling.decode_tokens(lm, result.tokens, args.batch_size)
    input_region = ~job.keep if outpaint is None else torch.zeros_like(job.keep)
    written = [save_png(edit_sheet(job.input_image, input_region, images, job.region), args.out)]
    if recorder is not None and recorder.trajectory.frames:
        gif = Path(args.trajectory)
        decode = sampling.decoder(lm.tokenizer, lm.device)
        traj = recorder.trajectory
        written.append(save_gif(traj, decode, gif))
        written.append(save_strip(traj, decode, gif.with_suffix(".png"), max_columns=32))
        written.append(save_png(counts_plot(traj.counts, title=f"{traj.num_samples} edits"),
                                gif.with_name(gif.stem + "_counts.png")))
    what = f"outpaint {outpaint.side}:{outpaint.amount}" if outpaint else f"{int((~job.keep).sum())} token cells"
    print(f"edited {args.num} image(s) ({what}, strength {args.strength}, {args.steps} {args.sampler} steps, "
          f"cfg gamma {args.cfg}) with {lm.path} (k {lm.space.k}); held tokens unchanged: "
          f"{result.held_unchanged:.1%} of {result.num_held} per image")
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} more file(s)" if len(written) > 1 else ""))
    return 0
