"""The whole demo: the model picker, the sampling tab and the further tabs; ``launch`` serves it.

:func:`build_site` hands :func:`xdlm_vision.demo.app.build_demo` the models
(:class:`~xdlm_vision.demo.models.DemoModels`: every packaged checkpoint plus every
``--checkpoint`` given) and the further tabs in :data:`TABS`. A new tab is a module of this
package with an ``add_..._tab(models)`` function, listed in :data:`TABS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xdlm_vision.demo.app import DemoLimits, build_demo
from xdlm_vision.demo.compare import add_compare_tab
from xdlm_vision.demo.edit import add_edit_tab
from xdlm_vision.demo.models import DemoModels
from xdlm_vision.errors import UserError

TABS = (add_compare_tab, add_edit_tab)  # added after the sampling tab, in this order


def build_site(models: DemoModels):
    """The gr.Blocks app of ``xdlm-vision demo``."""
    return build_demo(models=models, tabs=TABS)


def launch(checkpoints: Sequence[str | Path] | str | Path | None = None, host: str = "127.0.0.1",
           port: int = 7860, block: bool = True, limits: DemoLimits | None = None, **load_kwargs):
    """Offer ``checkpoints`` (first = default; none: the packaged ones) plus every packaged checkpoint,
    build the app and serve it; returns the Blocks when ``block=False``."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the server
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the demo needs gradio: pip install 'xdlm-vision[demo]'") from None
    from xdlm_vision.sampling import resolve_device

    if checkpoints is None:
        checkpoints = []
    elif isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    load_kwargs["device"] = resolve_device(load_kwargs.pop("device", "auto"))
    models = DemoModels.build(checkpoints, limits, **load_kwargs)
    models.get(models.default)  # load the default now: a broken checkpoint fails before serving
    demo = build_site(models)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=not block, ssr_mode=False,
                show_error=True, quiet=not block)
    return demo


__all__ = ["TABS", "build_site", "launch"]
