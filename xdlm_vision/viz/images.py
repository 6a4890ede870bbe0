"""Images to PNG files: a grid of a batch, or one file per image (all writes atomic)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from xdlm_vision.viz.export import Decode, save_gif, save_png, save_strip
from xdlm_vision.viz.plot import counts_plot
from xdlm_vision.viz.render import image_grid, to_uint8, upscale
from xdlm_vision.viz.trajectory import Trajectory


def save_grid(images: torch.Tensor, path: str | Path, ncol: int | None = None, scale: int | None = None) -> Path:
    """PNG grid of (B, C, H, W) images in [-1, 1] (small images are upscaled, nearest)."""
    return save_png(image_grid(images, ncol=ncol, scale=scale), path)


def safe_name(text: str) -> str:
    """A class name reduced to [A-Za-z0-9_-] for file names."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "class"


def save_images(images: torch.Tensor, directory: str | Path, labels: Sequence[int], seeds: Sequence[int],
                class_names: Sequence[str] | None = None, scale: int = 1) -> list[Path]:
    """One PNG per image (B, C, H, W) in [-1, 1], named ``{index:04d}_class{label}[_{name}]_seed{seed}.png``."""
    directory = Path(directory)
    arrays = upscale(to_uint8(images), scale)
    paths = []
    for i, (arr, label, seed) in enumerate(zip(arrays, labels, seeds)):
        name = safe_name(class_names[label]) if class_names and label < len(class_names) else str(label)
        name = "" if name == str(label) else f"_{name}"
        paths.append(save_png(Image.fromarray(arr), directory / f"{i:04d}_class{label}{name}_seed{seed}.png"))
    return paths


def save_trajectory(traj: Trajectory, decode: Decode, gif: str | Path, what: str = "images") -> list[Path]:
    """The three trajectory files of ``--trajectory PATH.gif``: the animated GIF, PATH.png (strip of at
    most 32 steps x samples) and PATH_counts.png (counts per step, titled "<B> <what>")."""
    gif = Path(gif)
    return [save_gif(traj, decode, gif),
            save_strip(traj, decode, gif.with_suffix(".png"), max_columns=32),
            save_png(counts_plot(traj.counts, title=f"{traj.num_samples} {what}"), gif.with_name(gif.stem + "_counts.png"))]

