"""The demo's Edit tab: paint a region on an image and watch only that region being denoised.

:class:`EditSession` (no gradio) turns an image editor's value (a background plus painted layers)
into an edit of the demo's model and yields one :class:`~xdlm_vision.demo.app.DemoFrame` per shown
step: the states with the region outlined (held tokens never move), the transition overlay, the
counts plot and, at the end, the input next to the results. The request is bounded by the demo's
:class:`~xdlm_vision.demo.app.DemoLimits`. :func:`add_edit_tab` lays it out with gradio.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from xdlm_vision.demo.app import (
    DemoFrame,
    DemoSampler,
    follow_model_classes,
    shown_steps,
    step_widgets,
    validate_request,
)
from xdlm_vision.errors import UserError

EDITOR_SIDE = 256  # pixels: examples are shown this large so small images can be painted on


def _as_image(value) -> Image.Image | None:
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value
    arr = np.asarray(value)
    return Image.fromarray(arr.astype(np.uint8)) if arr.size else None


def editor_inputs(value) -> tuple[Image.Image, Image.Image]:
    """(background RGB image, mask 'L' image: 255 where anything was painted) from an editor value."""
    if not isinstance(value, dict):
        raise UserError("upload or generate an image, then paint the region to regenerate")
    background = _as_image(value.get("background"))
    if background is None:
        raise UserError("upload or generate an image first")
    painted = np.zeros((background.height, background.width), dtype=bool)
    for layer in value.get("layers") or []:
        img = _as_image(layer)
        if img is None:
            continue
        arr = np.asarray(img.convert("RGBA").resize(background.size, Image.NEAREST))
        painted |= arr[..., 3] > 0
    if not painted.any():
        raise UserError("paint the region to regenerate on the image (the brush tool)")
    rgb = background.convert("RGBA")
    flat = Image.new("RGBA", rgb.size, (0, 0, 0, 255))
    flat.alpha_composite(rgb)
    return flat.convert("RGB"), Image.fromarray((painted * 255).astype(np.uint8), mode="L")


class EditSession:
    """Edits with the demo's loaded model; no gradio in here."""

    def __init__(self, sampler: DemoSampler) -> None:
        self.sampler = sampler

    @property
    def sm(self):
        return self.sampler.sm

    def example(self, label, seed) -> Image.Image:
        """A sample of ``label`` from the model itself (8 steps, CFG 1), enlarged for painting."""
        from xdlm_vision.sampling import SamplingOptions, decode_tokens, generate
        from xdlm_vision.viz.render import to_uint8

        req = validate_request(self.sampler.limits, self.sm.num_classes, label, 1.0, 8, "ancestral", seed, 1)
        tokens = generate(self.sm, [req.label], [req.seed], SamplingOptions(steps=8, cfg=1.0))
        image = Image.fromarray(to_uint8(decode_tokens(self.sm, tokens))[0])
        scale = max(1, EDITOR_SIDE // max(image.size))
        return image.resize((image.width * scale, image.height * scale), Image.NEAREST)

    def stream(self, editor_value, label, strength, steps, cfg, seed, revise_border, num_images) -> Iterator[DemoFrame]:
        """Validate, edit, and yield the frames of the shown steps."""
        from xdlm_vision.sampling import SamplingOptions, decode_tokens, sample_seeds
        from xdlm_vision.sampling.edit import EditOptions, canvas_steps, edit_steps, prepare_edit
        from xdlm_vision.viz.export import render_frame, step_caption
        from xdlm_vision.viz.outline import edit_sheet
        from xdlm_vision.viz.plot import counts_plot
        from xdlm_vision.viz.trajectory import frame_from_step

        req = validate_request(self.sampler.limits, self.sm.num_classes, label, cfg, steps, "ancestral", seed,
                               num_images)
        try:
            strength = float(strength)
            border = int(revise_border)
        except (TypeError, ValueError):
            raise UserError("strength and border must be numbers") from None
        if not (0.0 < strength <= 1.0):
            raise UserError(f"strength must be within (0, 1], got {strength}")
        if not (0 <= border <= EDITOR_SIDE):
            raise UserError(f"border must be within 0..{EDITOR_SIDE} pixels, got {border}")
        image, mask = editor_inputs(editor_value)
        job = prepare_edit(self.sm, image, mask, None, border)
        labels = [req.label] * req.num_images
        opts = SamplingOptions(steps=req.steps, cfg=req.cfg, sampler="ancestral")
        show = shown_steps(req.steps, self.sampler.limits.max_frames)
        region = job.region[None].expand(req.num_images, -1, -1)
        counts = []
        for st in canvas_steps(job, edit_steps(self.sm, job, labels, sample_seeds(req.seed, req.num_images), opts,
                                               EditOptions(strength=strength, revise_border=border))):
            frame = frame_from_step(st, job.canvas_shape, self.sm.mask_id)
            frame.region = region
            counts.append(frame.counts)
            if st.step not in show:
                continue
            images = render_frame(frame, self.sampler.decode)
            final = None
            if st.is_last:
                results = decode_tokens(self.sm, frame.tokens)
                final = edit_sheet(job.input_image, ~job.keep, results, job.region)
            yield DemoFrame(state=images.state, overlay=images.overlay,
                            plot=counts_plot(counts, title=f"{req.num_images} edit(s)"),
                            caption=step_caption(st.step, st.num_steps, frame.counts), final=final)


EDIT_INTRO = """Generate an example (or upload an image), **paint the region to regenerate** with the brush,
choose the class it should show, and press **Edit**. Only the painted token cells are sampled (outlined in
orange); everything else is held. Strength < 1 starts the region from the image re-noised to that time
(variations); a border > 0 lets a k > 0 model also revise the held tokens next to the region."""


def add_edit_tab(models) -> None:
    """Add the Edit tab to the enclosing gr.Blocks (``models``: the demo's model picker source,
    see :mod:`xdlm_vision.demo.models`; every request edits with the model picked in the tab)."""
    import gradio as gr

    sampler = models.get(models.default)
    lim = sampler.limits
    choices = sampler.class_choices

    def session(model) -> EditSession:
        return EditSession(models.get(model))

    def make_example(label, seed, model=models.default):
        try:
            image = session(model).example(label, seed)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        return {"background": image, "layers": [], "composite": image}

    def run(editor_value, label, strength, steps, cfg, seed, border, num_images, model=models.default):
        try:
            for f in session(model).stream(editor_value, label, strength, steps, cfg, seed, border, num_images):
                yield f.state, f.overlay, f.plot, f.caption, f.final
        except UserError as exc:
            raise gr.Error(str(exc)) from None


    with gr.Tab("Edit", id="edit", elem_id="edit-tab"):
        gr.Markdown(EDIT_INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=260):
                model = gr.Dropdown(choices=list(models.names), value=models.default, label="model",
                                    elem_id="edit-model")
                label = gr.Dropdown(choices=choices, value=choices[0][1], label="class of the region",
                                    elem_id="edit-class")
                seed = gr.Number(value=0, precision=0, minimum=0, maximum=lim.max_seed, label="seed",
                                 elem_id="edit-seed")
                example = gr.Button("Generate an example image", elem_id="edit-example")
                strength = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="strength", elem_id="edit-strength")
                steps = gr.Slider(1, lim.max_steps, value=8, step=1, label="steps", elem_id="edit-steps")
                cfg = gr.Slider(0, lim.max_cfg, value=1.0, step=0.1, label="CFG γ", elem_id="edit-cfg")
                border = gr.Slider(0, 64, value=0, step=1, label="revise border (pixels, k > 0)",
                                   elem_id="edit-border")
                num = gr.Slider(1, min(8, lim.max_images), value=4, step=1, label="number of edits",
                                elem_id="edit-num")
                button = gr.Button("Edit", variant="primary", elem_id="edit-run")
            with gr.Column(scale=3):
                editor = gr.ImageEditor(label="image: paint the region to regenerate", type="pil",
                                        image_mode="RGBA", sources=("upload", "clipboard"), layers=False,
                                        transforms=(), brush=gr.Brush(default_size=16, colors=["#ff00ff"],
                                                                      color_mode="fixed"),
                                        canvas_size=(EDITOR_SIDE, EDITOR_SIDE), elem_id="edit-editor")
                state, overlay, plot, caption, final = step_widgets("current state (region outlined)",
                                                                    "input | results", prefix="edit-")
        example.click(make_example, inputs=[label, seed, model], outputs=[editor], api_name="edit_example")
        button.click(run, inputs=[editor, label, strength, steps, cfg, seed, border, num, model],
                     outputs=[state, overlay, plot, caption, final], api_name="edit")
        follow_model_classes(models, model, label)


__all__ = ["EDITOR_SIDE", "EditSession", "add_edit_tab", "editor_inputs"]
