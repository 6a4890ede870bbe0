"""xdlm-vision: class-conditional discrete diffusion (XDLM) over image tokens.

``import xdlm_vision`` needs only the base dependencies; heavy optional packages (gradio,
transformers, torch-fidelity, diffusers) are imported lazily where they are used.
"""

__version__ = "0.1.0"

from xdlm_vision.errors import UserError

__all__ = ["UserError", "__version__"]
