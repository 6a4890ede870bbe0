"""Images to PNG files: a grid of a batch, or one file per image (all writes atomic)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from xdlm_vision.viz.export import save_png
from xdlm_vision.viz.render import image_grid, to_uint8, upscale


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
