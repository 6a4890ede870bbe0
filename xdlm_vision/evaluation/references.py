"""Reference sets for FID, given by path, and their checksums.

Accepted forms (``--reference PATH``):

* an ADM-style ``.npz`` with ``mu`` and ``sigma`` (pool_3 statistics, e.g. the ADM evaluator's
  ``VIRTUAL_imagenet256_labeled.npz``); its ``arr_0`` images, when present, are used only for
  precision/recall;
* an ``.npz`` holding only ``arr_0``: uint8 images (M, H, W, C), NHWC (the ADM sample format);
* a CIFAR-10 folder (``cifar-10-batches-py/`` or the folder holding it): the 50,000 training
  images, read locally (no download);
* any other folder: every .png/.jpg/.jpeg/.bmp/.webp below it (sorted by relative path), as RGB.

The checksum recorded in the protocol card is the sha256 of the file, or for folders the sha256 of
the sorted list of (relative path, file sha256) lines.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.frechet import GaussianStats
from xdlm_vision.tokenizers.checkpoints import sha256_file  # one file-checksum helper for the toolkit

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
FLAG = "--reference"


@dataclass
class Reference:
    """A reference set: precomputed statistics and/or images to run through Inception."""

    path: Path
    kind: str  # adm-stats | npz-images | cifar10-train | image-folder
    sha256: str
    stats: GaussianStats | None  # pool_3 statistics read from the file (adm-stats), else None
    images: np.ndarray | None  # (M, H, W, C) uint8 reference images (None if only stats)



def sha256_files(root: Path, files: list[Path]) -> str:
    """Checksum of a file set: sha256 over ``relative-path  file-sha256`` lines."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(root).as_posix()}  {sha256_file(f)}\n".encode())
    return h.hexdigest()


def _check_images(arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] not in (1, 3):
        raise UserError(f"{FLAG} {where}: images must be uint8 (M, H, W, 1|3) NHWC, got {arr.dtype} {arr.shape}")
    return arr


def _load_npz(path: Path, need_images: bool) -> Reference:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            stats = None
            if {"mu", "sigma"} <= keys:
                mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
                if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
                    raise UserError(f"{FLAG} {path}: mu {mu.shape} / sigma {sigma.shape} are not (D,) / (D, D)")
                stats = GaussianStats(mu, sigma, 0)
            load_images = "arr_0" in keys and (stats is None or need_images)  # skip 2 GB of pixels if unused
            images = _check_images(data["arr_0"], str(path)) if load_images else None
    except (OSError, ValueError) as exc:
        raise UserError(f"{FLAG} {path}: cannot read the .npz ({exc})") from None
    if stats is None and images is None:
        raise UserError(f"{FLAG} {path}: the .npz holds neither mu/sigma nor arr_0 images (keys {sorted(keys)})")
    kind = "adm-stats" if stats is not None else "npz-images"
    return Reference(path, kind, sha256_file(path), stats, images)


def _cifar_root(path: Path) -> Path | None:
    for cand in (path, path / CIFAR_FOLDER):
        if all((cand / f).is_file() for f in CIFAR_TRAIN_FILES):
            return cand
    return None


def _load_cifar(batches: Path) -> Reference:
    from xdlm_vision.data.cifar10 import cifar10_dataset

    ds = cifar10_dataset(batches.parent, train=True, flag=FLAG)
    images = np.ascontiguousarray(ds.data, dtype=np.uint8)  # (50000, 32, 32, 3)
    files = [batches / f for f in CIFAR_TRAIN_FILES]
    return Reference(batches, "cifar10-train", sha256_files(batches, files), None, images)


def _load_folder(path: Path) -> Reference:
    from PIL import Image

    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{FLAG} {path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    arrays = []
    for f in files:
        with Image.open(f) as im:
            arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))  # (H, W, 3)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise UserError(f"{FLAG} {path}: images of different sizes {sorted(shapes)[:3]}; resize them to one size first")
    return Reference(path, "image-folder", sha256_files(path, files), None, np.stack(arrays))


def load_reference(path: str | Path, need_images: bool = False) -> Reference:
    """Open ``--reference PATH`` (see the module docstring); UserError if it is missing or unusable.

    ``need_images``: also read ``arr_0`` from an ``.npz`` that has mu/sigma (for precision/recall).
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"{FLAG} {path}: no such file or directory")
    if p.is_file():
        if p.suffix != ".npz":
            raise UserError(f"{FLAG} {path}: expected an .npz file, a CIFAR-10 folder or a folder of images")
        return _load_npz(p, need_images)
    cifar = _cifar_root(p)
    return _load_cifar(cifar) if cifar is not None else _load_folder(p)
