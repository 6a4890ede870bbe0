"""The Gradio demo: sample class-conditional images and watch every step of the sampler.

Served by ``xdlm-vision demo`` (and ``apps/xdlm_demo.py``). It is an app on top of sampling and viz
(docs/architecture.md) and lives inside the package so that the installed command works without the
repository checkout; gradio is imported only in :func:`build_demo`.

The sampling side (:class:`DemoSampler`) has no gradio dependency: ``stream(...)`` validates the
request against :class:`DemoLimits` and yields one :class:`DemoFrame` per shown step — the grid of
current states (masked cells grey), the transition overlay (green mask -> token, blue
token -> token, red token -> mask), the counts plot so far, a counts line, and on the last step
the final grid. Inputs never reach a file path: the checkpoints are fixed when the app starts (the
model picker offers names) and images go back to the browser through Gradio's own cache. Serving (``launch``, the model picker
over every packaged checkpoint and the further tabs) is :mod:`xdlm_vision.demo.site`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from xdlm_vision.errors import UserError
from xdlm_vision.sampling.generate import SAMPLER_CHOICES


@dataclass(frozen=True)
class DemoLimits:
    """Bounds on what one request may ask for."""

    max_steps: int = 1000  # sampler steps
    max_images: int = 64  # images per request
    max_cfg: float = 20.0  # guidance gamma (XDLM convention), lower bound 0
    max_seed: int = 2**31 - 1  # seeds are 0..max_seed
    max_frames: int = 100  # frames streamed per request (long runs show every k-th step + the last)
    max_work: int = 4096  # steps x images per request (64 images x 64 steps, or 4 images x 1000 steps)
    max_requests_per_client: int = 4  # requests one client (IP) may run per window; more are refused at once
    client_window_s: float = 60.0  # that window, in seconds


@dataclass
class DemoRequest:
    """A validated request."""

    label: int
    cfg: float
    steps: int
    sampler: str
    seed: int
    num_images: int


@dataclass
class DemoFrame:
    """What the page shows after one step."""

    state: Image.Image  # grid of current states
    overlay: Image.Image  # grid of transition overlays
    plot: Image.Image  # counts against the step so far
    caption: str  # counts of this step
    final: Image.Image | None  # final grid (last step only)


def _as_int(value, name: str) -> int:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise UserError(f"{name} must be a whole number, got {value!r}")
    return int(f)


def validate_request(limits: DemoLimits, num_classes: int, label, cfg, steps, sampler, seed, num_images) -> DemoRequest:
    """UserError for anything out of bounds; returns the typed request."""
    label_i = _as_int(label, "class")
    if not 0 <= label_i < num_classes:
        raise UserError(f"class must be within 0..{num_classes - 1}, got {label_i}")
    try:
        cfg_f = float(cfg)
    except (TypeError, ValueError):
        raise UserError(f"CFG must be a number, got {cfg!r}") from None
    if not (math.isfinite(cfg_f) and 0.0 <= cfg_f <= limits.max_cfg):
        raise UserError(f"CFG must be within [0, {limits.max_cfg}], got {cfg!r}")
    steps_i = _as_int(steps, "steps")
    if not 1 <= steps_i <= limits.max_steps:
        raise UserError(f"steps must be within 1..{limits.max_steps}, got {steps_i}")
    if sampler not in SAMPLER_CHOICES:
        raise UserError(f"sampler must be one of {list(SAMPLER_CHOICES)}, got {sampler!r}")
    seed_i = _as_int(seed, "seed")
    if not 0 <= seed_i <= limits.max_seed:
        raise UserError(f"seed must be within 0..{limits.max_seed}, got {seed_i}")
    num_i = _as_int(num_images, "number of images")
    if not 1 <= num_i <= limits.max_images:
        raise UserError(f"number of images must be within 1..{limits.max_images}, got {num_i}")
    if steps_i * num_i > limits.max_work:
        raise UserError(f"steps x images must be at most {limits.max_work} per request, got {steps_i} x {num_i} = "
                        f"{steps_i * num_i}; lower the steps or the number of images")
    return DemoRequest(label_i, cfg_f, steps_i, sampler, seed_i, num_i)


class ClientBudget:
    """At most ``limits.max_requests_per_client`` requests per client in any ``client_window_s``
    seconds: a client that fills the queue gets its extra requests refused as soon as they are
    dequeued (no sampling), so one client cannot hold the single worker for long."""

    def __init__(self, limits: DemoLimits) -> None:
        import threading

        self.limits = limits
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = {}

    def admit(self, client: str, now: float | None = None) -> None:
        """Record a request of ``client``; UserError if it is over its budget."""
        import time

        now = time.monotonic() if now is None else now
        window = self.limits.client_window_s
        with self._lock:
            recent = [t for t in self._times.get(client, []) if now - t < window]
            if len(recent) >= self.limits.max_requests_per_client:
                self._times[client] = recent
                raise UserError(f"too many requests from this client: at most {self.limits.max_requests_per_client} "
                                f"every {window:g} s; try again shortly")
            self._times[client] = [*recent, now]
            if len(self._times) > 10_000:  # forget idle clients
                self._times = {c: ts for c, ts in self._times.items() if ts and now - ts[-1] < window}


def shown_steps(num_steps: int, max_frames: int) -> set[int]:
    """Steps that produce a frame: all, or every k-th plus the last when there are too many."""
    every = max(1, math.ceil(num_steps / max_frames))
    return {i for i in range(num_steps) if i % every == every - 1 or i == num_steps - 1}


class DemoSampler:
    """A loaded checkpoint plus the per-step rendering; no gradio in here."""

    def __init__(self, sm, limits: DemoLimits = DemoLimits()) -> None:
        from xdlm_vision.sampling import decoder

        self.sm = sm
        self.limits = limits
        self.decode = decoder(sm.tokenizer, sm.device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None = None, limits: DemoLimits = DemoLimits(), **kwargs) -> DemoSampler:
        from xdlm_vision.sampling import load_for_sampling

        return cls(load_for_sampling(checkpoint, **kwargs), limits)

    @property
    def class_choices(self) -> list[tuple[str, int]]:
        """(label shown, class id) for the dropdown: "id: name" when the checkpoint has names."""
        names = self.sm.class_names
        out = []
        for i in range(self.sm.num_classes):
            name = names[i] if i < len(names) else ""
            out.append((f"{i}: {name}" if name and name != str(i) else str(i), i))
        return out

    def stream(self, label, cfg, steps, sampler, seed, num_images) -> Iterator[DemoFrame]:
        """Validate, sample, and yield the frames (see the module docstring)."""
        from xdlm_vision.sampling import SamplingOptions, sample_seeds, sampler_steps
        from xdlm_vision.viz.export import render_frame, step_caption
        from xdlm_vision.viz.plot import counts_plot
        from xdlm_vision.viz.render import image_grid
        from xdlm_vision.viz.trajectory import frame_from_step

        req = validate_request(self.limits, self.sm.num_classes, label, cfg, steps, sampler, seed, num_images)
        seeds = sample_seeds(req.seed, req.num_images)
        opts = SamplingOptions(steps=req.steps, cfg=req.cfg, sampler=req.sampler)
        show = shown_steps(req.steps, self.limits.max_frames)
        counts = []
        for st in sampler_steps(self.sm, [req.label] * req.num_images, seeds, opts):
            frame = frame_from_step(st, self.sm.grid_shape, self.sm.space.mask_id)
            counts.append(frame.counts)
            if st.step not in show:
                continue
            images = render_frame(frame, self.decode)
            final = None
            if st.is_last:
                final = image_grid(self.decode(frame.tokens))
            yield DemoFrame(
                state=images.state,
                overlay=images.overlay,
                plot=counts_plot(counts, title=f"{req.num_images} image(s)"),
                caption=step_caption(st.step, st.num_steps, frame.counts),
                final=final,
            )


INTRO = """### XDLM discrete diffusion: watch the tokens
Pick a class and press **Generate**. Each step shows the current images (grey = still masked) and which
tokens changed: <span style="color:#00c800">green</span> mask → token,
<span style="color:#1e5aff">blue</span> token → token, <span style="color:#e61e1e">red</span> token → mask.
CFG is γ in the XDLM convention (γ = 0: plain conditional; LlamaGen/DiT scale = 1 + γ)."""


def request_widgets(lim: DemoLimits, choices, max_images: int, num_value: int, num_label: str, prefix: str = ""):
    """The widgets of one request (class, CFG, steps, sampler, seed, image count) with ``prefix``
    on their element ids; call inside a gr.Blocks column."""
    import gradio as gr

    label = gr.Dropdown(choices=choices, value=choices[0][1], label="class", elem_id=f"{prefix}class")
    cfg = gr.Slider(0, lim.max_cfg, value=1.0, step=0.1, label="CFG γ", elem_id=f"{prefix}cfg")
    steps = gr.Slider(1, lim.max_steps, value=8, step=1, label="steps", elem_id=f"{prefix}steps")
    sampler = gr.Radio(list(SAMPLER_CHOICES), value="ancestral", label="sampler", elem_id=f"{prefix}sampler")
    seed = gr.Number(value=0, precision=0, minimum=0, maximum=lim.max_seed, label="seed", elem_id=f"{prefix}seed")
    num = gr.Slider(1, max_images, value=num_value, step=1, label=num_label, elem_id=f"{prefix}num")
    return label, cfg, steps, sampler, seed, num


def step_widgets(state_label: str, final_label: str, prefix: str = ""):
    """The outputs of a streamed run (state, overlay, counts plot, caption, final image), with
    ``prefix`` on their element ids; call inside a gr.Blocks column. Returned in stream order."""
    import gradio as gr

    def image(label, name):
        return gr.Image(label=label, type="pil", format="png", interactive=False, elem_id=f"{prefix}{name}")

    caption = gr.Textbox(label="this step", interactive=False, elem_id=f"{prefix}caption")
    with gr.Row():
        state = image(state_label, "state")
        overlay = image("transitions of this step", "overlay")
    with gr.Row():
        plot = image("counts per step", "plot")
        final = image(final_label, "final")
    return state, overlay, plot, caption, final


def private_event() -> dict:
    """Keyword arguments that keep a UI-only event (e.g. a model dropdown refilling the class list)
    off the server's API. Gradio 6 replaced ``api_name=False`` by ``api_visibility`` and reads
    ``False`` as the endpoint name "false"."""
    import inspect

    import gradio as gr

    if "api_visibility" in inspect.signature(gr.Dropdown.change).parameters:
        return {"api_visibility": "private"}
    return {"api_name": False}


def class_picker(models):
    """Event handler for a model dropdown: the picked model's classes for the class dropdown."""
    import gradio as gr

    def pick(model):
        try:
            options = models.get(model).class_choices
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        return gr.update(choices=options, value=options[0][1])

    return pick


def follow_model_classes(models, model, label) -> None:
    """Wire a model dropdown to its class dropdown (call inside a ``gr.Blocks``): picking a model
    refills the class list with that model's classes; a UI-only event, kept off the API."""
    model.change(class_picker(models), inputs=[model], outputs=[label], **private_event())


class SingleModel:
    """The model picker's source when the app serves one loaded sampler (see demo/models.py)."""

    def __init__(self, sampler: DemoSampler, name: str | None = None) -> None:
        name = name or Path(sampler.sm.path).name  # e.g. digits_default
        self.sampler, self.names, self.default, self.limits = sampler, [name], name, sampler.limits

    def get(self, name) -> DemoSampler:
        if name not in self.names:
            raise UserError(f"model must be one of {self.names}, got {name!r}")
        return self.sampler


def build_demo(sampler: DemoSampler | None = None, models=None, tabs: Sequence[Callable] = ()):
    """The gr.Blocks app (queue: one sampling job at a time).

    ``models`` feeds the model picker (``names``, ``default``, ``get(name) -> DemoSampler``, e.g.
    :class:`xdlm_vision.demo.models.DemoModels`); without it the picker offers ``sampler`` alone.
    ``tabs`` are further tabs: each ``tab(models)`` is called inside the Blocks after the sampling
    tab (e.g. :func:`xdlm_vision.demo.compare.add_compare_tab`).
    """
    import gradio as gr

    if models is None:
        if sampler is None:
            raise ValueError("build_demo needs a sampler or models")
        models = SingleModel(sampler)
    sampler = models.get(models.default)
    lim = sampler.limits
    choices = sampler.class_choices
    budget = ClientBudget(lim)

    def run(label, cfg, steps, sampler_name, seed, num_images, model=models.default, request: gr.Request = None):
        try:
            chosen = models.get(model)
            client = getattr(getattr(request, "client", None), "host", None) or "unknown"
            validate_request(lim, chosen.sm.num_classes, label, cfg, steps, sampler_name, seed, num_images)
            budget.admit(client)
            for f in chosen.stream(label, cfg, steps, sampler_name, seed, num_images):
                yield f.state, f.overlay, f.plot, f.caption, f.final
        except UserError as exc:
            raise gr.Error(str(exc)) from None


    with gr.Blocks(title="xdlm-vision demo") as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Sample", id="sample", elem_id="sample-tab"):
            with gr.Row():
                with gr.Column(scale=1, min_width=260):
                    model = gr.Dropdown(choices=list(models.names), value=models.default, label="model",
                                        elem_id="model")
                    label, cfg, steps, sampler_name, seed, num = request_widgets(
                        lim, choices, lim.max_images, 16, "number of images")
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=3):
                    state, overlay, plot, caption, final = step_widgets("current state (grey = masked)",
                                                                        "final grid")
            button.click(run, inputs=[label, cfg, steps, sampler_name, seed, num, model],
                         outputs=[state, overlay, plot, caption, final], api_name="generate")
            follow_model_classes(models, model, label)
        for tab in tabs:
            tab(models)
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo
