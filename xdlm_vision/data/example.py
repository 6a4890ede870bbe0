"""The item every token dataset yields."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TokenExample(NamedTuple):
    """One training example; default ``collate`` batches it into a TokenExample of stacked tensors."""

    tokens: torch.Tensor  # (h, w) int64 token grid (pixel tokens: (H, W*C))
    label: torch.Tensor  # () int64 class id in 0..C-1
