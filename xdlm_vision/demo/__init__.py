"""The Gradio demo (an app on top of sampling and viz; see docs/architecture.md).

:mod:`xdlm_vision.demo.app` holds the sampling tab, the request limits and ``launch``; further tabs
live in their own modules of this package and are added by :func:`~xdlm_vision.demo.app.build_demo`.
"""

from xdlm_vision.demo.app import (
    DemoFrame,
    DemoLimits,
    DemoRequest,
    DemoSampler,
    build_demo,
    launch,
    shown_steps,
    validate_request,
)

__all__ = ["DemoFrame", "DemoLimits", "DemoRequest", "DemoSampler", "build_demo", "launch", "shown_steps",
           "validate_request"]
