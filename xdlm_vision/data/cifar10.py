"""CIFAR-10 from a local folder in the standard python-pickle layout (no download).

``root`` is the folder that contains ``cifar-10-batches-py/`` (or that folder itself), as made by
unpacking ``cifar-10-python.tar.gz``. torchvision's ``CIFAR10(download=False)`` reads it and checks
the batch files' MD5 sums. Pixel tokens: 256 levels x 3 channels (exactly the stored uint8 values),
32x32 -> (32, 96) grids; fewer ``levels`` quantise the same intensities more coarsely.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision import transforms

from xdlm_vision.data.example import TokenExample
from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.pixel import PixelTokenizer

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_LEVELS = 256
CIFAR_CHANNELS = 3


def cifar10_dataset(root: str | Path, train: bool = True, transform=None, flag: str = "data.path"):
    """torchvision ``CIFAR10`` over a local copy; UserError naming ``flag`` if it is missing/corrupt."""
    from torchvision.datasets import CIFAR10

    root = Path(root)
    if root.name == CIFAR_FOLDER:
        root = root.parent
    if not (root / CIFAR_FOLDER).is_dir():
        raise UserError(
            f"{flag} {str(root)!r}: no {CIFAR_FOLDER}/ folder; unpack cifar-10-python.tar.gz there "
            "(nothing is downloaded)"
        )
    try:
        return CIFAR10(str(root), train=train, transform=transform, download=False)
    except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted."
        reason = str(exc).split(". ")[0]  # drop torchvision's "use download=True" advice
        raise UserError(
            f"{flag} {str(root)!r}: CIFAR-10 batches incomplete or corrupted ({reason})"
        ) from None


class CIFAR10Tokens(Dataset):
    """(pixel tokens (32, 96) int64, label) pairs; random horizontal flips when ``flip``."""

    def __init__(
        self,
        root: str | Path,
        train: bool = True,
        flip: bool = True,  # random horizontal flip per access (training augmentation)
        levels: int = CIFAR_LEVELS,  # pixel token levels; 256 keeps every uint8 value
        flag: str = "data.path",  # what the UserError tells the user to fix
    ) -> None:
        steps = [transforms.RandomHorizontalFlip()] if flip else []
        steps.append(transforms.PILToTensor())  # (3, 32, 32) uint8
        self.data = cifar10_dataset(root, train=train, transform=transforms.Compose(steps), flag=flag)
        self.tokenizer = PixelTokenizer(levels=levels, channels=CIFAR_CHANNELS)
        self.classes = list(self.data.classes)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> TokenExample:
        pixels, label = self.data[i]  # (3, 32, 32) uint8, int
        images = pixels.float().unsqueeze(0) * (2.0 / 255.0) - 1.0  # (1, 3, 32, 32) in [-1, 1]
        tokens = self.tokenizer.encode(images)[0]  # (32, 96); with 256 levels equal to the uint8 values
        return TokenExample(tokens, torch.tensor(label, dtype=torch.long))
