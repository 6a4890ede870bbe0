"""The demo's compare tab: two models, one class, the same seeds — both trajectories side by side.

:class:`DemoCompare` (no gradio) validates a request against the demo's :class:`DemoLimits`,
advances both models' samplers together (:func:`xdlm_vision.sampling.compare_steps`) and yields
one :class:`CompareFrame` per shown step: the side-by-side picture of
:func:`xdlm_vision.viz.compare.compare_frame` (states above transition overlays, per-model
counts), and on the last step the summary (final images above each model's counts plot).
:func:`add_compare_tab` puts it on the page, with a step scrubber that revisits any shown step
once a run has finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from xdlm_vision.demo.app import follow_model_classes, request_widgets, shown_steps, validate_request
from xdlm_vision.demo.models import DemoModels
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.compare import CompareModel, compare_steps
from xdlm_vision.sampling.generate import SamplingOptions, sample_seeds
from xdlm_vision.viz.compare import CompareColumn, compare_frame, compare_summary
from xdlm_vision.viz.trajectory import Trajectory, frame_from_step

MAX_COMPARE_IMAGES = 16  # images per model in the compare tab (at most the demo's max_images)


@dataclass
class CompareFrame:
    """What the compare tab shows after one step."""

    step: int  # 0-based sampler step
    image: Image.Image  # both models at this step, side by side
    caption: str  # "step i/T" and every model's counts
    summary: Image.Image | None  # last step: final images above each model's counts plot


class DemoCompare:
    """Side-by-side sampling of two of the demo's models."""

    def __init__(self, models: DemoModels) -> None:
        self.models = models
        self.limits = models.limits
        self.max_images = min(MAX_COMPARE_IMAGES, self.limits.max_images)

    def stream(self, model_a, model_b, label, cfg, steps, sampler, seed, num_images) -> Iterator[CompareFrame]:
        """Validate, sample both models in lockstep, and yield the shown steps."""
        chosen = [self.models.get(model_a), self.models.get(model_b)]
        num_classes = min(s.sm.num_classes for s in chosen)
        req = validate_request(self.limits, num_classes, label, cfg, steps, sampler, seed, num_images)
        if req.num_images > self.max_images:
            raise UserError(f"number of images must be within 1..{self.max_images} when comparing, "
                            f"got {req.num_images}")
        models = [CompareModel(name, s.sm) for name, s in zip((model_a, model_b), chosen)]
        columns = [CompareColumn(m.name, m.subtitle, Trajectory(), s.decode) for m, s in zip(models, chosen)]
        opts = SamplingOptions(steps=req.steps, cfg=req.cfg, sampler=req.sampler)
        show = shown_steps(req.steps, self.limits.max_frames)
        labels, seeds = [req.label] * req.num_images, sample_seeds(req.seed, req.num_images)
        for both in compare_steps(models, labels, seeds, opts):
            for col, st, m in zip(columns, both, models):
                col.trajectory.frames.append(frame_from_step(st, m.lm.grid_shape, m.lm.mask_id))
            i = both[0].step
            if i not in show:
                continue
            caption = f"step {i + 1}/{req.steps}  " + "  |  ".join(
                f"{m.name}: created {c.created} refined {c.refined} remasked {c.remasked} masked {c.masked}"
                for m, c in ((m, col.trajectory.frames[-1].counts) for m, col in zip(models, columns)))
            last = i == req.steps - 1
            yield CompareFrame(i, compare_frame(columns, i), caption, compare_summary(columns) if last else None)


COMPARE_INTRO = """Two models, the same class, seeds, steps, sampler and CFG: both trajectories advance together.
Each column shows the current images (grey = masked) above the transitions of the step. When the run
has finished, drag **revisit step** to look at any step again."""


def add_compare_tab(models: DemoModels) -> None:
    """The compare tab (call inside a ``gr.Blocks``); API names ``compare`` and ``compare_scrub``."""
    import gradio as gr

    dc = DemoCompare(models)
    lim = dc.limits
    names = models.names
    choices = models.get(models.default).class_choices

    def run(model_a, model_b, label, cfg, steps, sampler_name, seed, num_images):
        shown: list[tuple[str, Image.Image]] = []
        try:
            for f in dc.stream(model_a, model_b, label, cfg, steps, sampler_name, seed, num_images):
                shown.append((f.caption, f.image))
                if f.summary is None:
                    yield f.image, f.caption, None, gr.update(), shown
                else:
                    yield (f.image, f.caption, f.summary,
                           gr.update(minimum=1, maximum=max(len(shown), 2), value=len(shown), interactive=True,
                                     visible=True), shown)
        except UserError as exc:
            raise gr.Error(str(exc)) from None

    def scrub(index, shown):
        if not shown:
            raise gr.Error("run a comparison first")
        i = min(max(int(index), 1), len(shown)) - 1
        caption, image = shown[i]
        return image, caption

    with gr.Tab("Compare", id="compare", elem_id="compare-tab"):
        gr.Markdown(COMPARE_INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model_a = gr.Dropdown(choices=names, value=names[0], label="model A", elem_id="compare-a")
                model_b = gr.Dropdown(choices=names, value=names[1 % len(names)], label="model B",
                                      elem_id="compare-b")
                label, cfg, steps, sampler_name, seed, num = request_widgets(
                    lim, choices, dc.max_images, 4, "images per model", prefix="compare-")
                button = gr.Button("Compare", variant="primary", elem_id="compare-run")
            with gr.Column(scale=3):
                caption = gr.Textbox(label="this step", interactive=False, elem_id="compare-caption")
                gr.Markdown("Side by side, this step: grey = masked; green created, blue refined, red remasked.")
                frame = gr.Image(label="side by side", show_label=False, type="pil", format="png",
                                 interactive=False, elem_id="compare-frame")
                scrubber = gr.Slider(1, 2, value=1, step=1, label="revisit step (after a run)", interactive=False,
                                     elem_id="compare-scrubber")
                gr.Markdown("Final images and the created / refined / remasked counts per step:")
                summary = gr.Image(label="final images and counts per step", show_label=False, type="pil",
                                   format="png", interactive=False, elem_id="compare-summary")
        shown = gr.State([])
        follow_model_classes(models, model_a, label)  # the class list shows model A's classes
        button.click(run, inputs=[model_a, model_b, label, cfg, steps, sampler_name, seed, num],
                     outputs=[frame, caption, summary, scrubber, shown], api_name="compare")
        scrubber.release(scrub, inputs=[scrubber, shown], outputs=[frame, caption], api_name="compare_scrub",
                         concurrency_limit=None)


__all__ = ["MAX_COMPARE_IMAGES", "CompareFrame", "DemoCompare", "add_compare_tab"]
