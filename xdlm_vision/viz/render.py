"""Turning token grids into pictures: masked cells in grey, transitions in colour, image grids.

Everything here works on CPU tensors / uint8 numpy arrays and returns Pillow images at the end.
A *decode* callable maps token ids (B, h, w) int64 to images (B, C, H, W) float in [-1, 1] (a
tokenizer's ``decode``, or :func:`xdlm_vision.sampling.decoder` which also handles devices).

Masked positions: the ids are replaced by a valid id (0) before decoding, then the image area of
each masked token is painted neutral grey. The area of a token is found from the shapes alone:
a grid cell covers ``H/h x W/w`` pixels (VQ tokens: the downsample factor; pixel tokens of one
channel: one pixel); for pixel tokens with ``c`` channels side by side (grid width ``W*c``) a pixel
is grey/coloured if any of its channel tokens is.

Transition overlay: the state image in dimmed greyscale with every token that changed in this
step painted in a solid colour — green mask -> token, blue token -> token, red token -> mask
(on a pixel hit by several, red wins over green over blue). Greys never equal these colours,
so the colours in the overlay can be counted exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Decode = Callable[[torch.Tensor], torch.Tensor]

CREATED_RGB = (0, 200, 0)  # mask -> token
REFINED_RGB = (30, 90, 255)  # token -> different token
REMASKED_RGB = (230, 30, 30)  # token -> mask
MASK_GREY = 0.0  # value in [-1, 1] painted over masked cells (uint8 128)
BACKGROUND = 255  # padding between tiles


def cells_to_pixels(cells: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Spread a per-token boolean grid (B, h, w) to the image plane (B, H, W)."""
    b, h, w = cells.shape
    height, width = size
    if height % h == 0 and width % w == 0:  # VQ grids, single-channel pixel tokens
        return cells.repeat_interleave(height // h, 1).repeat_interleave(width // w, 2)  # (B, H, W)
    if height == h and w % width == 0:  # pixel tokens with w/W channels side by side
        return cells.reshape(b, h, width, w // width).any(-1)  # (B, H, W)
    return F.interpolate(cells[:, None].float(), size=(height, width), mode="nearest")[:, 0] > 0.5


def decode_state(tokens: torch.Tensor, decode: Decode, mask_id: int) -> torch.Tensor:
    """Decode a partly masked state: (B, h, w) ids -> (B, C, H, W) in [-1, 1], masked areas grey."""
    masked = tokens == mask_id  # (B, h, w)
    safe = torch.where(masked, torch.zeros_like(tokens), tokens)
    images = decode(safe).float().cpu().clamp(-1, 1)  # (B, C, H, W)
    if masked.any():
        area = cells_to_pixels(masked.cpu(), tuple(images.shape[-2:]))  # (B, H, W)
        images = images.masked_fill(area[:, None], MASK_GREY)
    return images


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] with C in {1, 3} -> uint8 RGB (B, H, W, 3)."""
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def transition_overlay(
    images: torch.Tensor, created: torch.Tensor, refined: torch.Tensor, remasked: torch.Tensor
) -> np.ndarray:
    """Overlay (B, H, W, 3) uint8 of one step.

    images: (B, C, H, W) decoded state after the step; created/refined/remasked: (B, h, w) bool.
    """
    rgb = to_uint8(images).astype(np.float32)  # (B, H, W, 3)
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (B, H, W)
    grey = np.round(64 + 0.5 * lum).astype(np.uint8)  # dimmed greyscale base in [64, 192]
    out = np.repeat(grey[..., None], 3, axis=-1)  # (B, H, W, 3)
    size = tuple(images.shape[-2:])
    for cells, colour in ((refined, REFINED_RGB), (created, CREATED_RGB), (remasked, REMASKED_RGB)):
        area = cells_to_pixels(cells.cpu(), size).numpy()  # (B, H, W)
        out[area] = colour
    return out


def upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (B, H, W, 3) by an integer factor."""
    if scale == 1:
        return images
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def auto_scale(height: int, width: int, target: int = 64) -> int:
    """Integer upscale so that small images (8x8 digits) are visible: at least ``target`` pixels."""
    return max(1, target // max(1, min(height, width)))


def tile(images: np.ndarray, ncol: int, pad: int = 2, background: int = BACKGROUND) -> np.ndarray:
    """Arrange (B, H, W, 3) uint8 images in rows of ``ncol``; returns one (H', W', 3) array.

    Size: width = pad + ncol * (W + pad), height = pad + nrow * (H + pad), nrow = ceil(B / ncol).
    """
    b, h, w, _ = images.shape
    ncol = max(1, min(ncol, b))
    nrow = -(-b // ncol)
    canvas = np.full((pad + nrow * (h + pad), pad + ncol * (w + pad), 3), background, dtype=np.uint8)
    for i in range(b):
        r, c = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y : y + h, x : x + w] = images[i]
    return canvas


def image_grid(images: torch.Tensor, ncol: int | None = None, scale: int | None = None, pad: int = 2) -> Image.Image:
    """A Pillow grid of (B, C, H, W) images in [-1, 1]; ``ncol`` defaults to ceil(sqrt(B))."""
    b, _, h, w = images.shape
    ncol = ncol or int(np.ceil(np.sqrt(b)))
    scale = scale or auto_scale(h, w)
    return Image.fromarray(tile(upscale(to_uint8(images), scale), ncol, pad))
