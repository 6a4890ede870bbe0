"""Image commands as jobs: ``xdlm-vision sample`` (and ``sample --compare``) and ``xdlm-vision edit``.

A job is a plain dataclass whose fields are the command's flags (filled by
:func:`xdlm_vision.commands.flags.options_from` after the flags were checked while parsing);
``run_*`` loads the checkpoint(s), samples or edits through :mod:`xdlm_vision.sampling`, writes the
pictures through :mod:`xdlm_vision.viz`, prints a summary and returns the exit status. Keeping this
here leaves every command as argument parsing plus one call (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ImageJob:
    """The flags ``sample`` and ``edit`` share: which weights, how to sample, where to decode and draw."""

    checkpoint: str | None = None
    cfg: float = 0.0
    cfg_schedule: str = "constant"
    sampler: str = "ancestral"
    steps: int = 8
    seed: int = 0
    batch_size: int = 64
    ema: bool = True
    k: float | None = None
    tokenizer_checkpoint: str | None = None
    trajectory: str | None = None
    device: str = "auto"


@dataclass(frozen=True, kw_only=True)
class SampleJob(ImageJob):
    """``xdlm-vision sample`` (see its --help for every field)."""

    compare: list[str] | None = None  # several checkpoints side by side instead of --checkpoint
    classes: str = "0"
    num: int = 16
    out: str = "samples.png"
    save_dir: str | None = None
    trajectory_samples: int | None = None


@dataclass(frozen=True, kw_only=True)
class EditImageJob(ImageJob):
    """``xdlm-vision edit`` (see its --help for every field)."""

    image: str
    mask: str | None = None
    outpaint: str | None = None
    classes: str | None = None
    strength: float = 1.0
    revise_border: int = 0
    num: int = 4
    out: str = "edit.png"


def _check_gif(trajectory: str | None) -> None:
    if trajectory is not None and not str(trajectory).lower().endswith(".gif"):
        from xdlm_vision.errors import UserError

        raise UserError(f"--trajectory must name a .gif file, got {trajectory!r}")


def _report_written(written: list) -> None:
    print(f"wrote {written[0]}" + (f" and {len(written) - 1} more file(s)" if len(written) > 1 else ""))


def run_sample(job: SampleJob) -> int:
    """Sample a grid (plus per-image PNGs and the trajectory), or compare checkpoints with ``compare``."""
    if job.compare is not None:
        return run_compare(job)
    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.viz import save_grid, save_images, save_trajectory

    _check_gif(job.trajectory)
    if job.trajectory_samples is not None and job.trajectory is None:
        raise UserError("--trajectory-samples needs --trajectory PATH.gif (it sets how many images that shows)")
    trajectory_samples = 8 if job.trajectory_samples is None else job.trajectory_samples
    device = sampling.resolve_device(job.device)
    sm = sampling.load_for_sampling(job.checkpoint, ema=job.ema, device=device, k=job.k,
                                    tokenizer_checkpoint=job.tokenizer_checkpoint)
    labels = sampling.parse_classes(job.classes, job.num, sm.num_classes, job.seed, class_names=sm.class_names)
    seeds = sampling.sample_seeds(job.seed, job.num)
    opts = sampling.SamplingOptions(steps=job.steps, cfg=job.cfg, cfg_schedule=job.cfg_schedule,
                                    sampler=job.sampler)

    recorder = None
    if job.trajectory:
        from xdlm_vision.viz import TrajectoryRecorder

        recorder = TrajectoryRecorder(sm.grid_shape, sm.mask_id, max_samples=trajectory_samples)
    tokens = sampling.generate(sm, labels, seeds, opts, batch_size=job.batch_size,
                               watch=recorder.watch if recorder else None, progress=True)
    images = sampling.decode_tokens(sm, tokens, job.batch_size)
    written = [save_grid(images, job.out)]
    if job.save_dir:
        written += save_images(images, job.save_dir, labels, seeds, sm.class_names)
    if recorder is not None:
        written += save_trajectory(recorder.trajectory, sampling.decoder(sm.tokenizer, sm.device), job.trajectory)
    if hasattr(sm.tokenizer, "report"):  # an official model: its special ids are clamped before decoding
        print(sm.tokenizer.report())
    k_note = "" if sm.space.k == sm.trained_k else f" (trained k {sm.trained_k})"
    print(f"sampled {job.num} images from {sm.path} (step {sm.step}, {'EMA' if sm.ema else 'raw'} weights) "
          f"with {job.sampler}, {job.steps} steps, cfg gamma {job.cfg} ({job.cfg_schedule}), "
          f"k {sm.space.k}{k_note}, device {device}")
    _report_written(written)
    return 0


def run_compare(job: SampleJob) -> int:
    """``--compare``: sample every checkpoint alike, write the summary PNG (and the GIF)."""
    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.viz import TrajectoryRecorder
    from xdlm_vision.viz.compare import CompareColumn, save_compare

    if job.checkpoint is not None:
        raise UserError("--compare names every checkpoint itself; drop --checkpoint")
    if job.save_dir is not None:
        raise UserError("--save-dir is not supported with --compare")
    _check_gif(job.trajectory)
    if job.num > job.batch_size:
        raise UserError(f"--compare shows every image, so --num ({job.num}) must be <= --batch-size ({job.batch_size})")
    device = sampling.resolve_device(job.device)
    models = sampling.load_compare_models(job.compare, ema=job.ema, device=device, k=job.k,
                                          tokenizer_checkpoint=job.tokenizer_checkpoint)
    labels = sampling.parse_classes(job.classes, job.num, sampling.compare_class_count(models), job.seed,
                                    class_names=sampling.compare_class_names(models))
    seeds = sampling.sample_seeds(job.seed, job.num)
    opts = sampling.SamplingOptions(steps=job.steps, cfg=job.cfg, cfg_schedule=job.cfg_schedule,
                                    sampler=job.sampler)
    recorders = [TrajectoryRecorder(m.lm.grid_shape, m.lm.mask_id) for m in models]
    sampling.sample_compare(models, labels, seeds, opts, job.batch_size, [r.watch for r in recorders])
    columns = [CompareColumn(m.name, m.subtitle, r.trajectory, sampling.decoder(m.lm.tokenizer, device))
               for m, r in zip(models, recorders)]
    written = save_compare(columns, job.out, job.trajectory)
    print(f"compared {len(models)} checkpoints ({', '.join(m.name for m in models)}) on {job.num} images with "
          f"{job.sampler}, {job.steps} steps, cfg gamma {job.cfg} ({job.cfg_schedule}), device {device}")
    print("wrote " + " and ".join(str(p) for p in written))
    return 0


def run_edit_image(job: EditImageJob) -> int:
    """Edit the image, write the sheet (input + results, region outlined) and the trajectory."""
    import torch

    from xdlm_vision import sampling
    from xdlm_vision.errors import UserError
    from xdlm_vision.sampling.edit import EditOptions, prepare_edit, run_edit
    from xdlm_vision.sampling.edit_inputs import Outpaint, read_image
    from xdlm_vision.viz import TrajectoryRecorder, save_png, save_trajectory
    from xdlm_vision.viz.outline import edit_sheet

    _check_gif(job.trajectory)
    if not (0.0 <= job.strength <= 1.0):
        raise UserError(f"--strength must lie in [0, 1], got {job.strength}")
    image = read_image(job.image, "--image")
    mask = read_image(job.mask, "--mask") if job.mask is not None else None
    outpaint = Outpaint.parse(job.outpaint) if job.outpaint is not None else None
    device = sampling.resolve_device(job.device)
    lm = sampling.load_for_sampling(job.checkpoint, ema=job.ema, device=device, k=job.k,
                                    tokenizer_checkpoint=job.tokenizer_checkpoint)
    prepared = prepare_edit(lm, image, mask, outpaint, job.revise_border)
    if job.classes is None:
        if job.cfg > 0:
            raise UserError("--cfg needs --class: guidance pushes towards a class, and none was given")
        labels = [lm.null_class] * job.num
    else:
        labels = sampling.parse_classes(job.classes, job.num, lm.num_classes, job.seed, class_names=lm.class_names)
    seeds = sampling.sample_seeds(job.seed, job.num)
    opts = sampling.SamplingOptions(steps=job.steps, cfg=job.cfg, cfg_schedule=job.cfg_schedule,
                                    sampler=job.sampler)
    edit = EditOptions(strength=job.strength, revise_border=job.revise_border)
    if prepared.keep.sum() == 0 and outpaint is None:
        print("note: the mask covers the whole image; this is plain sampling (the same as xdlm-vision sample)")

    recorder = None
    if job.trajectory:
        region = prepared.region[None].expand(job.num, -1, -1)
        recorder = TrajectoryRecorder(prepared.canvas_shape, lm.mask_id, max_samples=8, region=region)
    result = run_edit(lm, prepared, labels, seeds, opts, edit, batch_size=job.batch_size,
                      watch=recorder.watch if recorder else None)
    images = sampling.decode_tokens(lm, result.tokens, job.batch_size)
    input_region = ~prepared.keep if outpaint is None else torch.zeros_like(prepared.keep)
    written = [save_png(edit_sheet(prepared.input_image, input_region, images, prepared.region), job.out)]
    if recorder is not None and recorder.trajectory.frames:
        written += save_trajectory(recorder.trajectory, sampling.decoder(lm.tokenizer, lm.device), job.trajectory,
                                   "edits")
    what = f"outpaint {outpaint.side}:{outpaint.amount}" if outpaint else f"{int((~prepared.keep).sum())} token cells"
    print(f"edited {job.num} image(s) ({what}, strength {job.strength}, {job.steps} {job.sampler} steps, "
          f"cfg gamma {job.cfg}) with {lm.path} (k {lm.space.k}); held tokens unchanged: "
          f"{result.held_unchanged:.1%} of {result.num_held} per image")
    _report_written(written)
    return 0


__all__ = ["EditImageJob", "ImageJob", "SampleJob", "run_compare", "run_edit_image", "run_sample"]
