"""Side-by-side trajectories of several models: one column per model, same classes and seeds.

A :class:`CompareColumn` is one model's run: a title, its recorded :class:`Trajectory` and the
decode callable of its tokenizer. From a list of them:

- :func:`compare_frame`: step ``i`` of every model next to each other — title, the decoded states
  (masked cells grey) and below them the transition overlays (green created, blue refined, red
  remasked) with that step's counts;
- :func:`compare_summary`: the final images of every model above its created / refined / remasked
  counts plot — the PNG a paper figure would use;
- :func:`save_compare`: the summary as PNG and, optionally, the per-step frames as a looping GIF.

Columns may differ in image size (e.g. digits next to fashion); each keeps its own scale and
shorter columns are padded with the background colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from xdlm_vision.viz.export import TEXT_RGB, _atomic_save, font, frame_arrays, save_png, step_caption
from xdlm_vision.viz.plot import counts_plot
from xdlm_vision.viz.render import BACKGROUND, Decode, auto_scale, tile, to_uint8, upscale
from xdlm_vision.viz.trajectory import Trajectory

TITLE_HEIGHT = 34  # two text lines above every column
GAP = 12  # pixels between columns


@dataclass
class CompareColumn:
    """One model's part of a comparison."""

    title: str  # first line above the column (e.g. the run name)
    subtitle: str  # second line (e.g. "k 0.1, step 800, EMA")
    trajectory: Trajectory  # frames of the shown samples (same seeds and classes in every column)
    decode: Decode  # token ids (B, h, w) -> images (B, C, H, W) in [-1, 1]


def _check(columns: Sequence[CompareColumn]) -> int:
    if len(columns) < 1:
        raise ValueError("a comparison needs at least one column")
    lengths = {len(c.trajectory) for c in columns}
    if len(lengths) != 1 or 0 in lengths:
        raise ValueError(f"every column needs the same, non-zero number of steps; got {sorted(lengths)}")
    return lengths.pop()


def _ncol(num_samples: int) -> int:
    return int(np.ceil(np.sqrt(num_samples)))


def _stack(parts: Sequence[Image.Image], gap: int = 4) -> Image.Image:
    """Images top to bottom, left-aligned, on the background colour."""
    width = max(p.width for p in parts)
    height = sum(p.height for p in parts) + gap * (len(parts) - 1)
    canvas = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    y = 0
    for p in parts:
        canvas.paste(p, (0, y))
        y += p.height + gap
    return canvas


def _titled(column: CompareColumn, body: Image.Image, extra: str | None = None) -> Image.Image:
    fnt = font(12)
    lines = [column.title, column.subtitle] + ([extra] if extra else [])
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(int(measure.textlength(line, font=fnt)) for line in lines) + 8
    header = 16 * len(lines) + 2
    canvas = Image.new("RGB", (max(body.width, text_w), header + body.height), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(canvas)
    for j, line in enumerate(lines):
        draw.text((2, 1 + 16 * j), line, fill=TEXT_RGB, font=fnt)
    canvas.paste(body, (0, header))
    return canvas


def _side_by_side(parts: Sequence[Image.Image], gap: int = GAP) -> Image.Image:
    width = sum(p.width for p in parts) + gap * (len(parts) - 1)
    height = max(p.height for p in parts)
    canvas = Image.new("RGB", (width, height), (BACKGROUND,) * 3)
    x = 0
    for p in parts:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    return canvas


def compare_frame(columns: Sequence[CompareColumn], step: int, scale: int | None = None) -> Image.Image:
    """Step ``step`` (0-based) of every column: states above overlays, captioned with the counts."""
    _check(columns)
    parts = []
    for col in columns:
        frame = col.trajectory.frames[step]
        states, overlays = frame_arrays(frame, col.decode, scale)
        ncol = _ncol(states.shape[0])
        body = _stack([Image.fromarray(tile(states, ncol)), Image.fromarray(tile(overlays, ncol))])
        # the frame's own step and total: a trajectory still being recorded holds only its first steps
        parts.append(_titled(col, body, step_caption(frame.step, frame.num_steps, frame.counts)))
    return _side_by_side(parts)


def compare_summary(columns: Sequence[CompareColumn], scale: int | None = None,
                    plot_size: tuple[int, int] = (360, 220)) -> Image.Image:
    """Final images of every column above its counts plot (created / refined / remasked per step)."""
    _check(columns)
    parts = []
    for col in columns:
        last = col.trajectory.frames[-1]
        images = col.decode(last.tokens)  # (B, C, H, W)
        s = scale or auto_scale(*images.shape[-2:])
        grid = Image.fromarray(tile(upscale(to_uint8(images), s), _ncol(images.shape[0])))
        plot = counts_plot(col.trajectory.counts, size=plot_size, title=None)
        parts.append(_titled(col, _stack([grid, plot])))
    return _side_by_side(parts)


def save_compare(columns: Sequence[CompareColumn], png: str | Path, gif: str | Path | None = None,
                 scale: int | None = None, duration_ms: int = 500, hold_last_ms: int = 2000) -> list[Path]:
    """Write the summary PNG and, with ``gif``, one GIF frame per step (last frame held)."""
    written = [save_png(compare_summary(columns, scale), png)]
    if gif is not None:
        frames = [compare_frame(columns, i, scale) for i in range(_check(columns))]
        size = (max(f.width for f in frames), max(f.height for f in frames))
        frames = [_pad(f, size) for f in frames]
        durations = [duration_ms] * (len(frames) - 1) + [hold_last_ms]
        written.append(_atomic_save(frames[0], gif, "GIF", save_all=True, append_images=frames[1:],
                                    duration=durations, loop=0, disposal=1))
    return written


def _pad(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    canvas = Image.new("RGB", size, (BACKGROUND,) * 3)
    canvas.paste(image, (0, 0))
    return canvas


__all__ = ["CompareColumn", "compare_frame", "compare_summary", "save_compare"]
