"""Trajectory exports: per-step frame images, an animated GIF and a PNG strip.

- :func:`render_frame`: for one step, the grid of decoded states (masked cells grey) and the grid
  of transition overlays, plus the step's counts — what the Gradio demo streams.
- :func:`gif_frames` / :func:`save_gif`: one GIF frame per step: a header line with the counts,
  states on the left, overlays on the right.
- :func:`trajectory_strip` / :func:`save_strip`: steps left to right, samples top to bottom; with
  ``overlay=True`` every sample takes two rows (state, then its overlay).

All writes are atomic (:mod:`xdlm_vision.io`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from xdlm_vision.io import atomic_path
from xdlm_vision.viz.outline import draw_outline
from xdlm_vision.viz.render import (
    BACKGROUND,
    CREATED_RGB,
    REFINED_RGB,
    REMASKED_RGB,
    Decode,
    auto_scale,
    decode_state,
    tile,
    to_uint8,
    transition_overlay,
    upscale,
)
from xdlm_vision.viz.trajectory import StepCounts, Trajectory, TrajectoryFrame

HEADER_HEIGHT = 18  # pixels of the text band above a GIF frame
LABEL_HEIGHT = 14  # pixels of the step-number band above a strip
TEXT_RGB = (20, 20, 20)


@dataclass
class FrameImages:
    """What one step looks like."""

    state: Image.Image  # grid of decoded states, masked cells grey
    overlay: Image.Image  # grid of transition overlays
    counts: StepCounts  # totals over the samples shown
    step: int  # 0-based
    num_steps: int

    @property
    def caption(self) -> str:
        return step_caption(self.step, self.num_steps, self.counts)


def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's built-in font (scalable when FreeType is available); no font files needed."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def step_caption(step: int, num_steps: int, counts: StepCounts) -> str:
    return (
        f"step {step + 1}/{num_steps}  created {counts.created}  refined {counts.refined}  "
        f"remasked {counts.remasked}  masked {counts.masked}"
    )


def frame_arrays(frame: TrajectoryFrame, decode: Decode, scale: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(states, overlays): uint8 (B, H*scale, W*scale, 3) each for one frame."""
    images = decode_state(frame.tokens, decode, frame.mask_id)  # (B, C, H, W)
    scale = scale or auto_scale(*images.shape[-2:])
    states = upscale(to_uint8(images), scale)
    overlays = upscale(transition_overlay(images, frame.created, frame.refined, frame.remasked), scale)
    if frame.region is not None:  # an edit: outline the region so the held tokens read as context
        states, overlays = draw_outline(states, frame.region), draw_outline(overlays, frame.region)
    return states, overlays


def render_frame(frame: TrajectoryFrame, decode: Decode, ncol: int | None = None, scale: int | None = None) -> FrameImages:
    """Grids (``ncol`` per row, default ceil(sqrt(B))) of the states and overlays of one step."""
    states, overlays = frame_arrays(frame, decode, scale)
    ncol = ncol or int(np.ceil(np.sqrt(states.shape[0])))
    return FrameImages(
        state=Image.fromarray(tile(states, ncol)),
        overlay=Image.fromarray(tile(overlays, ncol)),
        counts=frame.counts,
        step=frame.step,
        num_steps=frame.num_steps,
    )


def compose_frame(images: FrameImages, gap: int = 6) -> Image.Image:
    """One picture: caption on top, states left, overlays right."""
    fnt = font()
    caption = images.caption
    text_w = int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(caption, font=fnt)) + 8
    body_w = images.state.width + gap + images.overlay.width
    width = max(body_w, text_w)
    height = HEADER_HEIGHT + max(images.state.height, images.overlay.height)
    canvas = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    ImageDraw.Draw(canvas).text((4, 3), caption, fill=TEXT_RGB, font=fnt)
    canvas.paste(images.state, (0, HEADER_HEIGHT))
    canvas.paste(images.overlay, (images.state.width + gap, HEADER_HEIGHT))
    return canvas


def gif_frames(traj: Trajectory, decode: Decode, ncol: int | None = None, scale: int | None = None) -> list[Image.Image]:
    """One composed frame per step."""
    return [compose_frame(render_frame(f, decode, ncol, scale)) for f in traj.frames]


def _atomic_save(image: Image.Image, path: str | Path, fmt: str, **kwargs) -> Path:
    with atomic_path(path) as tmp:
        image.save(tmp, format=fmt, **kwargs)
    return Path(path)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically."""
    return _atomic_save(image, path, "PNG")


def save_gif(
    traj: Trajectory,
    decode: Decode,
    path: str | Path,
    ncol: int | None = None,
    scale: int | None = None,
    duration_ms: int = 400,
    hold_last_ms: int = 1500,
) -> Path:
    """Animated GIF, one frame per step, looping; the last frame is held ``hold_last_ms``."""
    frames = gif_frames(traj, decode, ncol, scale)
    if not frames:
        raise ValueError("empty trajectory: nothing to animate")
    durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
    return _atomic_save(
        frames[0], path, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0, disposal=1,
    )


def strip_columns(num_steps: int, max_columns: int | None) -> list[int]:
    """Steps shown in a strip: all, or ``max_columns`` evenly spaced ones ending at the last step."""
    if max_columns is None or num_steps <= max_columns:
        return list(range(num_steps))
    picks = np.linspace(0, num_steps - 1, max_columns).round().astype(int)
    return sorted({int(p) for p in picks})


def trajectory_strip(
    traj: Trajectory,
    decode: Decode,
    scale: int | None = None,
    overlay: bool = True,
    pad: int = 2,
    max_columns: int | None = None,
) -> Image.Image:
    """Steps left to right, samples top to bottom (two rows per sample with ``overlay``).

    Size: width = pad + T' (w + pad), height = LABEL_HEIGHT + pad + R (h + pad), with T' the
    number of steps shown, R = B (x2 with overlay) and (h, w) the upscaled image size.
    """
    cols = strip_columns(len(traj), max_columns)
    per_step = [frame_arrays(traj.frames[i], decode, scale) for i in cols]  # [(states, overlays)]
    b, h, w, _ = per_step[0][0].shape
    rows_per_sample = 2 if overlay else 1
    canvas = np.full((LABEL_HEIGHT + pad + b * rows_per_sample * (h + pad), pad + len(cols) * (w + pad), 3),
                     BACKGROUND, dtype=np.uint8)
    for c, (states, overlays) in enumerate(per_step):
        x = pad + c * (w + pad)
        for i in range(b):
            y = LABEL_HEIGHT + pad + i * rows_per_sample * (h + pad)
            canvas[y : y + h, x : x + w] = states[i]
            if overlay:
                canvas[y + h + pad : y + 2 * h + pad, x : x + w] = overlays[i]
    image = Image.fromarray(canvas)
    draw, fnt = ImageDraw.Draw(image), font(10)
    for c, step in enumerate(cols):
        draw.text((pad + c * (w + pad) + 1, 1), str(step + 1), fill=TEXT_RGB, font=fnt)
    return image


def save_strip(traj: Trajectory, decode: Decode, path: str | Path, **kwargs) -> Path:
    """Write :func:`trajectory_strip` as a PNG."""
    return save_png(trajectory_strip(traj, decode, **kwargs), path)


def legend_text() -> str:
    return "green: mask -> token (created)   blue: token -> token (refined)   red: token -> mask (remasked)"


__all__ = [
    "CREATED_RGB",
    "REFINED_RGB",
    "REMASKED_RGB",
    "FrameImages",
    "compose_frame",
    "gif_frames",
    "legend_text",
    "render_frame",
    "save_gif",
    "save_png",
    "save_strip",
    "step_caption",
    "trajectory_strip",
]
