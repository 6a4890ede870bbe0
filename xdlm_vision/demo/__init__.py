"""The Gradio demo (an app on top of sampling and viz; see docs/architecture.md).

- :mod:`app`      the sampling tab (:class:`DemoSampler`, request limits) and ``build_demo``
- :mod:`models`   the model picker: every packaged checkpoint plus every ``--checkpoint`` given
- :mod:`compare`  the compare tab: two models side by side, step by step, with a step scrubber
- :mod:`edit`     the edit tab: paint a region of an image and watch only it being denoised
- :mod:`site`     the whole app (``build_site``) and ``launch``; new tabs are listed in ``site.TABS``
"""

from xdlm_vision.demo.app import (
    DemoFrame,
    DemoLimits,
    DemoRequest,
    DemoSampler,
    build_demo,
    shown_steps,
    validate_request,
)
from xdlm_vision.demo.compare import CompareFrame, DemoCompare, add_compare_tab
from xdlm_vision.demo.edit import EditSession, add_edit_tab
from xdlm_vision.demo.models import DemoModels
from xdlm_vision.demo.site import build_site, launch

__all__ = ["CompareFrame", "DemoCompare", "DemoFrame", "DemoLimits", "DemoModels", "DemoRequest", "DemoSampler",
           "EditSession", "add_compare_tab", "add_edit_tab", "build_demo", "build_site", "launch", "shown_steps",
           "validate_request"]
