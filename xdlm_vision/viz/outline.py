"""Outlines of an edited region, drawn on uint8 images (edit results and edit trajectories).

The region is a boolean pixel mask; its outline is the set of region pixels with a 4-neighbour
outside the region (or on the image border next to outside cells, which cannot happen here, so
image borders are not outlined). Drawn after upscaling, so the line is one display pixel wide.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xdlm_vision.viz.render import BACKGROUND, auto_scale, to_uint8, upscale

OUTLINE_RGB = (255, 150, 0)  # orange: not a grey and not one of the transition colours


def region_outline(region: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool region -> (B, H, W) bool boundary pixels inside the region."""
    outside = (~region).float()[:, None]  # (B, 1, H, W)
    cross = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    touches = F.conv2d(F.pad(outside, (1, 1, 1, 1), value=0.0), cross)[:, 0] > 0  # (B, H, W)
    return region & touches


def draw_outline(images: np.ndarray, region: torch.Tensor, rgb: tuple[int, int, int] = OUTLINE_RGB) -> np.ndarray:
    """Copy of uint8 images (B, H, W, 3) with the outline of ``region`` painted in ``rgb``.

    ``region`` (B, h, w) bool at any size that divides (H, W); it is spread to (H, W) first.
    """
    height, width = images.shape[1:3]
    if region.shape[-2:] != (height, width):
        rh, rw = region.shape[-2:]
        if height % rh or width % rw:
            region = F.interpolate(region[:, None].float(), size=(height, width), mode="nearest")[:, 0] > 0.5
        else:
            region = region.repeat_interleave(height // rh, 1).repeat_interleave(width // rw, 2)
    line = region_outline(region.bool()).numpy()  # (B, H, W)
    out = images.copy()
    out[line] = rgb
    return out




def edit_sheet(inputs: torch.Tensor, input_region: torch.Tensor, results: torch.Tensor, result_region: torch.Tensor,
               scale: int | None = None, pad: int = 4) -> Image.Image:
    """One row: the input with the edited region outlined, then every result with it outlined.

    inputs (1, C, H, W) and results (K, C, H', W') in [-1, 1] (H', W' larger than H, W when
    outpainting); input_region (h, w) and result_region (h', w') bool token cells.
    """
    scale = scale or auto_scale(*results.shape[-2:], target=96)
    first = draw_outline(upscale(to_uint8(inputs), scale), input_region[None])  # (1, H*s, W*s, 3)
    rest = draw_outline(upscale(to_uint8(results), scale), result_region[None].expand(results.shape[0], -1, -1))
    height = max(first.shape[1], rest.shape[1])
    width = pad + first.shape[2] + 3 * pad + rest.shape[0] * (rest.shape[2] + pad)
    canvas = np.full((height + 2 * pad, width, 3), BACKGROUND, dtype=np.uint8)
    canvas[pad:pad + first.shape[1], pad:pad + first.shape[2]] = first[0]
    x = pad + first.shape[2] + 3 * pad
    for img in rest:
        canvas[pad:pad + img.shape[0], x:x + img.shape[1]] = img
        x += img.shape[1] + pad
    return Image.fromarray(canvas)


__all__ = ["OUTLINE_RGB", "draw_outline", "edit_sheet", "region_outline"]
