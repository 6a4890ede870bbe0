"""The one tokenizer interface every image tokenizer implements.

Images are float tensors in [-1, 1] of shape (B, C, H, W); token grids are int64 (B, h, w).
Nothing downstream branches on which tokenizer it holds.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageTokenizer(Protocol):
    """encode/decode between images in [-1, 1] and integer token grids."""

    #: number of data tokens N (ids 0..N-1); the diffusion mask id is N
    codebook_size: int
    #: spatial downsample factor from image pixels to token grid cells (1 for pixel tokens)
    downsample: int

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """Token grid (h, w) for an image of the given size; raises UserError if not divisible."""
        ...

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) float in [-1, 1] -> ids (B, h, w) int64."""
        ...

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) int64 -> images (B, C, H, W) float in [-1, 1]."""
        ...
