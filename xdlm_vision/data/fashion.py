"""Fashion-MNIST from its four original IDX files (no download).

Debian packages the data: ``apt-get install dataset-fashion-mnist`` puts
``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
``t10k-labels-idx1-ubyte.gz`` under ``/usr/share/datasets/fashion-mnist/``. The same four files
are read from any other folder (``data.path`` / ``--data-dir``), gzipped or not.

IDX layout (big-endian): two zero bytes, a type byte (0x08 = unsigned byte), the number of
dimensions, one uint32 per dimension, then the values. Images are (n, 28, 28) uint8 with 0 =
background; labels are (n,) uint8 in 0..9. Every header is checked (magic number, counts that
agree between images and labels, 28x28 size, file length, label range) and a problem is one
UserError naming the file.

For the VQ tokenizer images are mapped to [-1, 1] and padded with background (-1) to 32x32, so
that a 4x downsampling gives an 8x8 token grid (:func:`to_signed_padded`).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xdlm_vision.errors import UserError
from xdlm_vision.io import write_bytes_atomic

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_HINT = "apt-get install dataset-fashion-mnist"
FASHION_CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IMAGE_SIDE = 28  # stored image side
PADDED_SIDE = 32  # side after padding for the tokenizer (multiple of 4 and 8)
SPLIT_FILES = {  # split -> (images stem, labels stem); the stored names add .gz
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SPLIT_SIZES = {"train": 60000, "test": 10000}  # the published counts (checked only by the slow tests)
IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclass
class FashionArrays:
    """One split in memory."""

    images: torch.Tensor  # (n, 28, 28) uint8, 0 = background
    labels: torch.Tensor  # (n,) int64 in 0..9


def _missing_message(folder: Path, flag: str) -> str:
    names = ", ".join(f"{stem}.gz" for pair in SPLIT_FILES.values() for stem in pair)
    return (f"{flag} {str(folder)!r}: Fashion-MNIST not found; install it with `{APT_HINT}` "
            f"(folder {DEFAULT_DIR}) or pass a folder holding {names} (.gz or not)")


def find_idx_file(folder: Path, stem: str, flag: str) -> Path:
    """``folder/stem.gz`` or ``folder/stem``; UserError naming the apt package when neither exists."""
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise UserError(_missing_message(folder, flag))


def read_idx(path: str | Path, magic: int) -> np.ndarray:
    """Array of one IDX file (gzip or raw) after checking its magic number and length.

    Returns uint8 with the shape the header gives, e.g. (n, 28, 28) for images.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read as an IDX file ({exc})") from None
    if len(raw) < 4:
        raise UserError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise UserError(f"{path}: IDX magic number 0x{found:08x}, expected 0x{magic:08x} (wrong or corrupt file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: IDX header truncated ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def resolve_data_dir(path: str | Path | None) -> Path:
    """``path`` or the Debian package folder."""
    return DEFAULT_DIR if path in (None, "") else Path(path)


def load_fashion_split(split: str = "train", data_dir: str | Path | None = None,
                       flag: str = "data.path") -> FashionArrays:
    """Images and labels of the ``train`` (60k) or ``test`` (10k) split from ``data_dir``.

    ``flag`` is what an error message tells the user to fix (``data.path`` or ``--data-dir``).
    """
    if split not in SPLIT_FILES:
        raise UserError(f"Fashion-MNIST split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
    folder = resolve_data_dir(data_dir)
    img_stem, lab_stem = SPLIT_FILES[split]
    img_path = find_idx_file(folder, img_stem, flag)
    lab_path = find_idx_file(folder, lab_stem, flag)
    images = read_idx(img_path, IMAGES_MAGIC)  # (n, 28, 28)
    labels = read_idx(lab_path, LABELS_MAGIC)  # (n,)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise UserError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if len(images) != len(labels):
        raise UserError(f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels")
    if len(labels) and int(labels.max()) >= len(FASHION_CLASS_NAMES):
        raise UserError(f"{lab_path}: label {int(labels.max())} outside 0..9")
    return FashionArrays(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def to_signed_padded(images: torch.Tensor, side: int = PADDED_SIDE) -> torch.Tensor:
    """uint8 images (B, 28, 28) -> float (B, 1, side, side) in [-1, 1], background-padded evenly."""
    x = images.float()[:, None] * (2.0 / 255.0) - 1.0  # (B, 1, 28, 28)
    p = (side - images.shape[-1]) // 2
    return torch.nn.functional.pad(x, (p, side - images.shape[-1] - p) * 2, value=-1.0)  # (B, 1, S, S)


def crop_to_original(images: torch.Tensor) -> torch.Tensor:
    """(B, C, 32, 32) decoded images -> the central (B, C, 28, 28) that the padding surrounds."""
    p = (images.shape[-1] - IMAGE_SIDE) // 2
    return images[..., p: p + IMAGE_SIDE, p: p + IMAGE_SIDE]


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip if the name ends in .gz); for test fixtures and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    path = Path(path)
    write_bytes_atomic(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


def class_names() -> list[str]:
    """The ten Fashion-MNIST class names, index = label."""
    return list(FASHION_CLASS_NAMES)
