"""The embedded real dataset: scikit-learn's 8x8 handwritten digits (no download).

1797 grey images, 10 classes, integer intensities 0..16 -> 17 pixel tokens, 64 tokens per image.
Fixed split: a stratified shuffle with seed 0 (numpy default_rng) takes round(20 %) of every class
for validation: 1438 train and 359 validation images; the split never changes between machines
or versions (a test pins the counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from xdlm_vision.data.example import TokenExample
from xdlm_vision.errors import UserError

DIGITS_LEVELS = 17  # intensities 0..16
DIGITS_SHAPE = (8, 8)
DIGITS_CLASSES = 10
DIGITS_CLASS_NAMES = [str(i) for i in range(10)]
SPLIT_SEED = 0
VAL_FRACTION = 0.2


@dataclass
class DigitsArrays:
    tokens: torch.Tensor  # (M, 8, 8) int64 in 0..16
    labels: torch.Tensor  # (M,) int64 in 0..9


def load_digits_split(split: str = "train") -> DigitsArrays:
    """Token grids and labels of the fixed ``train`` or ``val`` split."""
    if split not in ("train", "val", "all"):
        raise UserError(f"digits split must be 'train', 'val' or 'all', got {split!r}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.int64)  # (1797, 8, 8) in 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)  # (1797,)
    if split == "all":
        idx = np.arange(len(labels))
    else:
        rng = np.random.default_rng(SPLIT_SEED)
        val_idx = []
        for c in range(DIGITS_CLASSES):  # stratified: 20 % of every class
            members = np.flatnonzero(labels == c)
            members = members[rng.permutation(len(members))]
            val_idx.append(members[: round(VAL_FRACTION * len(members))])
        val = np.sort(np.concatenate(val_idx))
        idx = val if split == "val" else np.setdiff1d(np.arange(len(labels)), val)
    return DigitsArrays(torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy()))


class DigitsTokens(Dataset):
    """(tokens (8, 8) int64, label int64) pairs of one split; optional horizontal flips are off
    by default because flipped digits are not digits."""

    def __init__(self, split: str = "train") -> None:
        arrays = load_digits_split(split)
        self.tokens = arrays.tokens
        self.labels = arrays.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> TokenExample:
        return TokenExample(self.tokens[i], self.labels[i])
