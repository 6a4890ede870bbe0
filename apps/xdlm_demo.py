"""Gradio demo of xdlm-vision: class-conditional sampling with every step made visible.

Run it either way (identical):

    xdlm-vision demo [--checkpoint DIR ...] [--host 127.0.0.1] [--port 7860]
    python apps/xdlm_demo.py [--checkpoint DIR ...] [--host 127.0.0.1] [--port 7860]

The app itself lives in :mod:`xdlm_vision.demo` so that the installed ``xdlm-vision demo``
works without this checkout; this file is the repository's entry point (and ``gradio
apps/xdlm_demo.py`` reload mode, which looks for the module-level ``demo``, when XDLM_DEMO_RELOAD=1).
The model picker offers every checkpoint given with ``--checkpoint`` (repeatable) and every
checkpoint packaged with xdlm-vision (``packaged:digits``, ``digits-mdlm``, ``fashion``, ``fashion-mdlm``).
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    from xdlm_vision.cli import main

    sys.exit(main(["demo", *sys.argv[1:]]))
elif os.environ.get("XDLM_DEMO_RELOAD"):  # `gradio apps/xdlm_demo.py` imports the module and serves `demo`
    from xdlm_vision.demo import DemoModels, build_site

    given = os.environ.get("XDLM_DEMO_CHECKPOINT")
    demo = build_site(DemoModels.build([given] if given else []))
