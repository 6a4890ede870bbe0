"""On-disk token shards written by ``xdlm-vision extract-codes`` and the dataset that reads them.

Layout of an output folder::

    run.json                 settings of the run (guards resuming with different flags)
    tokens_00000.npy         (n, V, h, w) uint16/int32 token ids, V = 2 with --flip (original, flipped)
    labels_00000.npy         (n,) int64 class ids
    done_00000.json          written last, atomically: the shard is complete
    ...
    class_map.json           {"folder_name": class_id}
    manifest.json            written last of all by process 0: the extraction is complete

Every file is written to a temp name and moved into place (:mod:`xdlm_vision.io`); a shard without its
``done`` marker is redone on the next run, and a folder without ``manifest.json`` is never read.
"""

from __future__ import annotations

import io
import json
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from xdlm_vision.data.example import TokenExample
from xdlm_vision.errors import UserError
from xdlm_vision.io import write_bytes_atomic

MANIFEST = "manifest.json"
RUN_FILE = "run.json"
CLASS_MAP = "class_map.json"
FORMAT_VERSION = 1


def tokens_path(root: Path, shard: int) -> Path:
    return root / f"tokens_{shard:05d}.npy"


def labels_path(root: Path, shard: int) -> Path:
    return root / f"labels_{shard:05d}.npy"


def done_path(root: Path, shard: int) -> Path:
    return root / f"done_{shard:05d}.json"


def token_dtype(codebook_size: int) -> np.dtype:
    """Smallest unsigned/signed dtype that holds ids 0..N-1."""
    return np.dtype(np.uint16) if codebook_size <= 65536 else np.dtype(np.int32)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (fsynced, xdlm_vision.io)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_bytes_atomic(path, buffer.getvalue())


@dataclass(frozen=True)
class CodesManifest:
    """The facts a trainer needs from ``manifest.json`` (``raw`` holds all of it)."""

    codebook_size: int  # N: token ids are 0..N-1
    grid_shape: tuple[int, int]  # (h, w) token grid per image
    num_classes: int
    class_names: list[str]  # index -> folder name
    views: int  # 2 with --flip (original, mirrored), else 1
    num_images: int
    tokenizer: dict  # tokenizer spec: xdlm_vision.tokenizers.load_tokenizer(spec) rebuilds it
    raw: dict


def read_manifest(root: str | Path, flag: str = "data.path") -> CodesManifest:
    """The manifest of a finished extraction; UserError if the folder is missing or unfinished."""
    raw = _read_manifest_dict(root, flag)
    by_index = sorted(raw["class_to_idx"].items(), key=lambda kv: kv[1])
    return CodesManifest(
        codebook_size=int(raw["codebook_size"]),
        grid_shape=(int(raw["grid_shape"][0]), int(raw["grid_shape"][1])),
        num_classes=int(raw["num_classes"]),
        class_names=[name for name, _ in by_index],
        views=int(raw["views"]),
        num_images=int(raw["num_images"]),
        tokenizer=dict(raw["tokenizer"]),
        raw=raw,
    )


def _read_manifest_dict(root: str | Path, flag: str) -> dict:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        hint = (
            "the extraction is unfinished: rerun `xdlm-vision extract-codes` with the same flags to complete it"
            if (root / RUN_FILE).is_file()
            else "run `xdlm-vision extract-codes` first"
        )
        raise UserError(f"{flag} {str(root)!r}: no {MANIFEST} ({hint})")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{flag} {str(root)!r}: unsupported token format {manifest.get('format_version')!r}")
    return manifest


class CodesDataset(Dataset):
    """Token grids and labels from an ``extract-codes`` folder, memory-mapped.

    ``views`` picks which stored view an item returns when the extraction kept flipped codes:
    ``"random"`` (a fresh coin per access: horizontal-flip augmentation), ``"original"`` (always
    view 0) or ``"all"`` (every view is its own item, ``len`` = images x views).
    """

    def __init__(self, root: str | Path, views: str = "random", flag: str = "data.path") -> None:
        if views not in ("random", "original", "all"):
            raise UserError(f"views must be 'random', 'original' or 'all', got {views!r}")
        self.root = Path(root)
        self.info = read_manifest(self.root, flag)
        self.manifest = self.info.raw
        self.views = views
        self.num_views: int = self.info.views
        self.shard_counts: list[int] = [int(s["count"]) for s in self.manifest["shards"]]
        self._starts = np.concatenate([[0], np.cumsum(self.shard_counts)]).tolist()  # image offsets
        self._tokens: dict[int, np.ndarray] = {}  # shard -> memmap, opened lazily (per worker)
        self._labels: dict[int, np.ndarray] = {}

    # facts the trainer needs, straight from the manifest
    @property
    def codebook_size(self) -> int:
        return self.info.codebook_size

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.info.grid_shape

    @property
    def class_to_idx(self) -> dict[str, int]:
        return dict(self.manifest["class_to_idx"])

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def tokenizer_spec(self) -> dict:
        return dict(self.info.tokenizer)

    @property
    def num_images(self) -> int:
        return self._starts[-1]

    def __len__(self) -> int:
        return self.num_images * (self.num_views if self.views == "all" else 1)

    def _shard(self, shard: int) -> tuple[np.ndarray, np.ndarray]:
        if shard not in self._tokens:
            self._tokens[shard] = np.load(tokens_path(self.root, shard), mmap_mode="r")
            self._labels[shard] = np.load(labels_path(self.root, shard), mmap_mode="r")
        return self._tokens[shard], self._labels[shard]

    def __getitem__(self, i: int) -> TokenExample:
        if not 0 <= i < len(self):
            raise IndexError(i)
        if self.views == "all":
            image, view = divmod(i, self.num_views)
        else:
            image = i
            view = int(torch.randint(self.num_views, ())) if self.views == "random" else 0
        shard = bisect_right(self._starts, image) - 1
        tokens, labels = self._shard(shard)
        row = image - self._starts[shard]
        grid = torch.from_numpy(np.asarray(tokens[row, view], dtype=np.int64))  # (h, w)
        return TokenExample(grid, torch.tensor(int(labels[row]), dtype=torch.long))


TokenShardDataset = CodesDataset  # descriptive alias
