"""The Gradio demo (an app on top of sampling and viz; see docs/architecture.md).

:mod:`xdlm_vision.demo.app` holds the sampling tab and the request limits, :mod:`~xdlm_vision.demo.edit`
the Edit tab; :mod:`~xdlm_vision.demo.server` puts the tabs together and serves them.
"""

from xdlm_vision.demo.app import (
           DemoFrame,
           DemoLimits,
           DemoRequest,
           DemoSampler,
           shown_steps,
           validate_request,
)
from xdlm_vision.demo.edit import EditSession
from xdlm_vision.demo.server import build_demo, launch

__all__ = ["DemoFrame", "DemoLimits", "DemoRequest", "DemoSampler", "EditSession", "build_demo", "launch", "shown_steps",
           "validate_request"]
