"""The whole demo app: its tabs in one gr.Blocks, the queue, and serving it.

Tabs: **Sample** (:func:`xdlm_vision.demo.app.build_sample_tab`) and **Edit**
(:func:`xdlm_vision.demo.edit.build_edit_tab`). One job runs at a time; the queue holds at most 16.
"""

from __future__ import annotations

from pathlib import Path

from xdlm_vision.demo.app import DemoSampler, build_sample_tab
from xdlm_vision.demo.edit import build_edit_tab
from xdlm_vision.errors import UserError


def build_demo(sampler: DemoSampler):
    """The gr.Blocks app (queue: one job at a time, at most 16 waiting)."""
    import gradio as gr

    with gr.Blocks(title="xdlm-vision demo") as demo:
        with gr.Tab("Sample", id="sample"):
            build_sample_tab(sampler)
        with gr.Tab("Edit", id="edit"):
            build_edit_tab(sampler)
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def launch(checkpoint: str | Path | None = None, host: str = "127.0.0.1", port: int = 7860,
           block: bool = True, **load_kwargs):
    """Load the checkpoint, build the app and serve it; returns the Blocks when ``block=False``."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the server
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the demo needs gradio: pip install 'xdlm-vision[demo]'") from None
    from xdlm_vision.sampling import resolve_device

    device = resolve_device(load_kwargs.pop("device", "auto"))
    demo = build_demo(DemoSampler.from_checkpoint(checkpoint, device=device, **load_kwargs))
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False,
                show_error=True, quiet=not block)
    return demo


__all__ = ["build_demo", "launch"]
