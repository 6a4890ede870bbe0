"""Decoding the samples of an official XDLM model (``docs/official.md``).

The official models predict N + 2 data states: the N codes and two special ids that no image
contains. Their sampler clamps ids >= N to N - 1 before the VQ decoder; :class:`ClampingTokenizer`
does the same around any image tokenizer and counts what it changed.
"""

from __future__ import annotations

import torch

from xdlm_vision.errors import UserError


def clamp_for_decode(ids: torch.Tensor, num_codes: int) -> tuple[torch.Tensor, int]:
    """Ids >= N (special states, or a mask) -> N - 1, as the official sampler does before the VQ.

    Returns (clamped ids, how many were changed)."""
    over = ids >= num_codes
    return torch.where(over, torch.full_like(ids, num_codes - 1), ids), int(over.sum())


class ClampingTokenizer:
    """Wraps the image tokenizer of an official model: ``codebook_size`` = N' (what the model
    samples), decoding clamps ids >= N to N - 1 and adds the count to ``clamped``."""

    def __init__(self, inner, num_codes: int) -> None:
        if int(inner.codebook_size) != int(num_codes):
            raise UserError(f"the official model predicts {num_codes} codes but the tokenizer has "
                            f"{inner.codebook_size}; pass the model's VQ with --tokenizer-checkpoint")
        self.inner = inner
        self.num_codes = int(num_codes)
        self.clamped = 0  # ids clamped so far (reported by the commands)
        self.decoded = 0  # ids decoded so far

    @property
    def codebook_size(self) -> int:
        return self.num_codes + 2

    @property
    def downsample(self) -> int:
        return self.inner.downsample

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return self.inner.grid_shape(height, width)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner.encode(images)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) in 0..N + 1 -> images; ids >= N are clamped to N - 1 first."""
        fixed, count = clamp_for_decode(ids, self.num_codes)
        self.clamped += count
        self.decoded += ids.numel()
        return self.inner.decode(fixed)

    def report(self) -> str:
        """One line for the commands: how many sampled ids were special and clamped."""
        return (f"official process: {self.clamped} of {self.decoded} decoded token ids were special ids "
                f">= {self.num_codes} and were clamped to {self.num_codes - 1} (as the official sampler does)")
