"""Pixel tokenizer: every (pixel, channel) intensity quantised to one of ``levels`` tokens.

CIFAR-10 uses 256 levels x 3 channels (32x32 -> 3072 tokens); the embedded digits data uses
17 levels x 1 channel (8x8 -> 64 tokens). Token grids have shape (B, H, W*C): the channels of a
pixel sit next to each other, so the row-major flattening at the backbone boundary is the
(h, w, c) order described in docs/backbones.md and docs/tokenizers.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.errors import UserError


@dataclass
class PixelTokenizer:
    """Uniform quantiser with exact round trip on the level grid.

    Level ``v`` in 0..levels-1 maps to the intensity ``2 v / (levels - 1) - 1`` in [-1, 1].
    """

    levels: int = 256  # number of intensity levels = codebook size N
    channels: int = 3  # colour channels per pixel

    def __post_init__(self) -> None:
        if self.levels < 2:
            raise UserError(f"PixelTokenizer needs levels >= 2, got {self.levels}")
        if self.channels < 1:
            raise UserError(f"PixelTokenizer needs channels >= 1, got {self.channels}")

    @property
    def codebook_size(self) -> int:
        return self.levels

    @property
    def downsample(self) -> int:
        return 1

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return height, width * self.channels

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [-1, 1] -> ids (B, H, W*C) int64 (nearest level)."""
        if images.ndim != 4 or images.shape[1] != self.channels:
            raise UserError(
                f"PixelTokenizer(channels={self.channels}) expects images (B, {self.channels}, H, W), "
                f"got {tuple(images.shape)}"
            )
        levels = torch.round((images.float().clamp(-1, 1) + 1) * 0.5 * (self.levels - 1))  # (B, C, H, W)
        ids = levels.long().permute(0, 2, 3, 1)  # (B, H, W, C)
        return ids.reshape(ids.shape[0], ids.shape[1], -1)  # (B, H, W*C)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, H, W*C) -> images (B, C, H, W) in [-1, 1]."""
        if ids.ndim != 3 or ids.shape[-1] % self.channels:
            raise UserError(f"PixelTokenizer expects ids (B, H, W*{self.channels}), got {tuple(ids.shape)}")
        b, h, wc = ids.shape
        grid = ids.reshape(b, h, wc // self.channels, self.channels).permute(0, 3, 1, 2)  # (B, C, H, W)
        return grid.float() * (2.0 / (self.levels - 1)) - 1.0
