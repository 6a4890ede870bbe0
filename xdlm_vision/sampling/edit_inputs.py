"""Geometry of an edit: input image and mask at the model's size, mask -> token cells, outpainting.

The conventions (see docs/editing.md):

- The input image is fitted to the model's image size like training data: resized so its shorter
  side matches, then centre-cropped. The mask goes through the same fit with nearest-neighbour
  resampling, so its pixels stay black or white. White (> 127 in greyscale) = regenerate.
- A token cell is regenerated if *any* of its pixels is white: a VQ cell covers
  ``downsample x downsample`` pixels, a pixel token one pixel (and one channel of it, for pixel
  tokenizers with several channels side by side in the grid).
- Outpainting extends the canvas by N token columns (left/right) or rows (top/bottom). The model
  sees a window of its own grid size that holds the last ``w - N`` known columns next to the N new
  ones; the result is the original grid plus the N generated columns, decoded as one image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from xdlm_vision.errors import UserError

OUTPAINT_SIDES = ("left", "right", "top", "bottom")


def read_image(path: str | Path, flag: str) -> Image.Image:
    """Open an image file fully (so a truncated file fails here), or raise UserError naming ``flag``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{flag} {path}: not a readable image ({type(exc).__name__})") from None


def fit(image: Image.Image, height: int, width: int) -> Image.Image:
    """Resize so the image covers (height, width) with its aspect kept, then centre-crop to it.

    Shrinking uses an area average (BOX: an image upscaled by an integer factor comes back exactly),
    enlarging uses BICUBIC.
    """
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, resample=Image.BOX if scale < 1 else Image.BICUBIC)
    left, top = (image.width - width) // 2, (image.height - height) // 2
    return image.crop((left, top, left + width, top + height))


def image_tensor(image: Image.Image, height: int, width: int, channels: int) -> torch.Tensor:
    """PIL image -> (1, channels, height, width) float in [-1, 1], fitted to the model's size."""
    mode = "L" if channels == 1 else "RGB"
    fitted = fit(image.convert(mode), height, width)
    data = torch.frombuffer(bytearray(fitted.tobytes()), dtype=torch.uint8)  # (H * W * C,)
    pixels = data.reshape(height, width, channels).permute(2, 0, 1).float()  # (C, H, W)
    return (pixels / 127.5 - 1.0)[None]  # (1, C, H, W)


def mask_tensor(mask: Image.Image, image_size: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Mask image -> (height, width) bool (True = regenerate), cropped like the image by :func:`fit`.

    ``image_size``: (width, height) of the input image as read; the mask must have the same size.
    When shrinking, a model pixel is in the region if any mask pixel it covers is white (a thin
    brush stroke is never lost); when enlarging, nearest neighbour.
    """
    if mask.size != image_size:
        raise UserError(f"--mask is {mask.size[0]}x{mask.size[1]} pixels but --image is "
                        f"{image_size[0]}x{image_size[1]}; give a mask of the image's size (white = regenerate)")
    w_in, h_in = mask.size
    data = torch.frombuffer(bytearray(mask.convert("L").tobytes()), dtype=torch.uint8).reshape(h_in, w_in)
    scale = max(height / h_in, width / w_in)
    crop_h, crop_w = min(h_in, round(height / scale)), min(w_in, round(width / scale))
    top, left = (h_in - crop_h) // 2, (w_in - crop_w) // 2
    white = (data[top:top + crop_h, left:left + crop_w] > 127).float()[None, None]  # (1, 1, h', w')
    if scale < 1:
        out = F.adaptive_max_pool2d(white, (height, width))  # (1, 1, H, W)
    else:
        out = F.interpolate(white, size=(height, width), mode="nearest")
    return out[0, 0] > 0.5  # (H, W)


def cells_from_pixels(region: torch.Tensor, grid_shape: tuple[int, int]) -> torch.Tensor:
    """Pixel region (H, W) bool -> token cells (h, w) bool: a cell is in if any of its pixels is.

    Works for VQ grids (H/h x W/w pixels per cell) and pixel-token grids whose width is the image
    width times the number of channels. Raises UserError when the grid does not divide the image.
    """
    height, width = region.shape
    h, w = grid_shape
    if height % h == 0 and width % w == 0:
        pooled = F.max_pool2d(region[None, None].float(), (height // h, width // w))  # (1, 1, h, w)
        return pooled[0, 0] > 0
    if height == h and w % width == 0:  # pixel tokens: channels side by side
        return region.repeat_interleave(w // width, dim=1)  # (h, w)
    raise UserError(f"the mask is {width}x{height} pixels, which the model's {h}x{w} token grid does not "
                    f"divide; the image size must be a multiple of the tokenizer's cell size")


@dataclass(frozen=True)
class Outpaint:
    """Extend the canvas by ``amount`` token columns (left/right) or rows (top/bottom)."""

    side: str
    amount: int

    @classmethod
    def parse(cls, spec: str) -> Outpaint:
        side, _, num = spec.partition(":")
        side = side.strip().lower()
        if side not in OUTPAINT_SIDES or not num.strip().isdigit():
            raise UserError(f"--outpaint must look like SIDE:N with SIDE one of {', '.join(OUTPAINT_SIDES)} and "
                            f"N a number of token columns/rows, got {spec!r}")
        return cls(side, int(num))

    @property
    def horizontal(self) -> bool:
        return self.side in ("left", "right")

    def check(self, grid_shape: tuple[int, int]) -> None:
        extent = grid_shape[1] if self.horizontal else grid_shape[0]
        if not 1 <= self.amount < extent:
            what = "columns" if self.horizontal else "rows"
            raise UserError(f"--outpaint {self.side}:{self.amount}: N must be between 1 and {extent - 1} token {what} "
                            f"(the model needs at least one known {what[:-1]} in its {grid_shape[0]}x{grid_shape[1]} window)")

    def window(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model-sized window: (ids (B, h, w) with the new cells zeroed, keep (B, h, w) bool)."""
        n = self.amount
        dim = 2 if self.horizontal else 1
        extent = ids.shape[dim]
        if self.side in ("right", "bottom"):
            known = ids.narrow(dim, n, extent - n)
            win = torch.cat([known, torch.zeros_like(ids.narrow(dim, 0, n))], dim)
            keep_known = torch.arange(extent) < extent - n
        else:
            known = ids.narrow(dim, 0, extent - n)
            win = torch.cat([torch.zeros_like(ids.narrow(dim, 0, n)), known], dim)
            keep_known = torch.arange(extent) >= n
        shape = [1, 1, 1]
        shape[dim] = extent
        keep = keep_known.reshape(shape).expand_as(win)
        return win, keep.clone()

    def canvas(self, ids: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
        """Original grid (B, h, w) + the generated part of the window -> (B, h, w + N) or (B, h + N, w)."""
        n = self.amount
        dim = 2 if self.horizontal else 1
        extent = window.shape[dim]
        if self.side in ("right", "bottom"):
            return torch.cat([ids, window.narrow(dim, extent - n, n)], dim)
        return torch.cat([window.narrow(dim, 0, n), ids], dim)

    def canvas_region(self, grid_shape: tuple[int, int], batch: int) -> torch.Tensor:
        """(B, h', w') bool: the generated cells of the extended canvas."""
        h, w = grid_shape
        n = self.amount
        shape = (h, w + n) if self.horizontal else (h + n, w)
        region = torch.zeros(shape, dtype=torch.bool)
        if self.side == "right":
            region[:, w:] = True
        elif self.side == "left":
            region[:, :n] = True
        elif self.side == "bottom":
            region[h:, :] = True
        else:
            region[:n, :] = True
        return region[None].expand(batch, *shape).clone()


__all__ = ["OUTPAINT_SIDES", "Outpaint", "cells_from_pixels", "fit", "image_tensor", "mask_tensor", "read_image"]
