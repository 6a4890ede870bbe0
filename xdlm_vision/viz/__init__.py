"""Per-step sampling trajectories made visible.

- :mod:`trajectory`  record a sampler's :class:`~xdlm_vision.core.samplers.SamplerStep` stream as
  token-grid frames with transition masks and counts
- :mod:`render`      decode partly masked states (masked cells grey), transition overlays
  (green mask -> token, blue token -> token, red token -> mask), image grids
- :mod:`export`      per-step frame images, animated GIF, PNG strip (steps x samples)
- :mod:`plot`        created / refined / remasked counts against the step, drawn with Pillow
- :mod:`images`      a batch of images as one PNG grid or one PNG per image
- :mod:`text_trajectory`  a text sample's trajectory as coloured ANSI text or an HTML page

Only Pillow, numpy and torch are needed.
"""

from xdlm_vision.viz.export import (
    FrameImages,
    compose_frame,
    gif_frames,
    render_frame,
    save_gif,
    save_png,
    save_strip,
    trajectory_strip,
)
from xdlm_vision.viz.images import save_grid, save_images, save_trajectory
from xdlm_vision.viz.plot import counts_plot
from xdlm_vision.viz.render import (
    CREATED_RGB,
    REFINED_RGB,
    REMASKED_RGB,
    decode_state,
    image_grid,
    transition_overlay,
)
from xdlm_vision.viz.trajectory import (
    StepCounts,
    Trajectory,
    TrajectoryFrame,
    TrajectoryRecorder,
    frame_from_step,
    record_trajectory,
)

__all__ = [
    "CREATED_RGB",
    "REFINED_RGB",
    "REMASKED_RGB",
    "FrameImages",
    "StepCounts",
    "Trajectory",
    "TrajectoryFrame",
    "TrajectoryRecorder",
    "compose_frame",
    "counts_plot",
    "decode_state",
    "frame_from_step",
    "gif_frames",
    "image_grid",
    "record_trajectory",
    "render_frame",
    "save_gif",
    "save_grid",
    "save_images",
    "save_png",
    "save_strip",
    "save_trajectory",
    "trajectory_strip",
    "transition_overlay",
]
