"""Resumable, sharded sample generation for FID: uint8 PNG shards or ADM-format ``.npz``.

Image ``i`` (0 <= i < num) has seed ``seed + i`` and a label fixed before sampling (per-class:
``i mod C``; random: drawn from ``random.Random(seed + i)``), see :mod:`xdlm_vision.sampling`.
Images are grouped into shards of ``shard_size`` consecutive indices. Shard ``j`` is written
by process ``j mod world`` (accelerate processes each take their own shards) into a temporary
name and renamed into place, so a shard on disk is always complete: an interrupted run,
restarted with the same arguments, keeps every finished shard and samples only the rest. Because
an image depends only on its seed and label, the result does not depend on the number of
processes, the batch size or where the run was interrupted.

Layout of ``OUT``::

    OUT/run.json                     the sampling setup; a rerun with a different setup is refused
    OUT/shards/shard_00000.npz       (npz format) images (n, H, W, 3) uint8, labels, indices, seeds
    OUT/shards/shard_00000/          (png format) 000000_class3_seed0.png ... (RGB uint8)
    OUT/samples.npz                  (npz format) all images: arr_0 (N, H, W, 3) uint8, arr_1 labels
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xdlm_vision.errors import UserError
from xdlm_vision.io import atomic_path, write_json_atomic

FORMATS = ("npz", "png")


@dataclass
class Shard:
    """One shard's images and bookkeeping."""

    images: np.ndarray  # (n, H, W, 3) uint8
    labels: np.ndarray  # (n,) int64 conditioning classes
    indices: np.ndarray  # (n,) int64 global image indices


def shard_ranges(num: int, shard_size: int) -> list[range]:
    """Global index ranges of the shards covering 0..num-1."""
    return [range(s, min(num, s + shard_size)) for s in range(0, num, shard_size)]


def shard_path(out: Path, j: int, fmt: str) -> Path:
    return out / "shards" / (f"shard_{j:05d}.npz" if fmt == "npz" else f"shard_{j:05d}")


def to_uint8_rgb(images: torch.Tensor) -> np.ndarray:
    """images (B, C, H, W) float in [-1, 1], C = 1 or 3 -> (B, H, W, 3) uint8 (grey repeated)."""
    x = ((images.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)  # (B, C, H, W)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()  # (B, H, W, 3)


def png_name(index: int, label: int, seed: int) -> str:
    return f"{index:06d}_class{label}_seed{seed}.png"


def write_shard(path: Path, shard: Shard, seeds: Sequence[int], fmt: str) -> Path:
    """Write one shard atomically (xdlm_vision.io.atomic_path)."""
    with atomic_path(path) as tmp:
        if fmt == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, images=shard.images, labels=shard.labels, indices=shard.indices,
                         seeds=np.asarray(seeds, dtype=np.int64))
        else:
            from PIL import Image

            tmp.mkdir()
            for img, label, index, seed in zip(shard.images, shard.labels, shard.indices, seeds):
                Image.fromarray(img).save(tmp / png_name(int(index), int(label), int(seed)))
    return path


def read_shard(path: Path, fmt: str) -> Shard:
    """Read a shard written by :func:`write_shard`."""
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as data:
            return Shard(data["images"], data["labels"].astype(np.int64), data["indices"].astype(np.int64))
    from PIL import Image

    files = sorted(path.glob("*.png"))
    images, labels, indices = [], [], []
    for f in files:
        index, label, _ = f.stem.split("_")
        with Image.open(f) as im:
            images.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        indices.append(int(index))
        labels.append(int(label.removeprefix("class")))
    return Shard(np.stack(images), np.asarray(labels, np.int64), np.asarray(indices, np.int64))


def shard_is_complete(path: Path, fmt: str, expected: int) -> bool:
    """True when the shard exists with ``expected`` images (a finished shard is never rewritten)."""
    if fmt == "npz":
        if not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                return int(data["indices"].shape[0]) == expected
        except (OSError, ValueError, KeyError):
            return False
    return path.is_dir() and len(list(path.glob("*.png"))) == expected


def check_run_setup(out: Path, setup: dict, clean: bool = True) -> None:
    """Record the sampling setup in OUT/run.json, or refuse to mix shards of a different setup.

    A run.json without any shard beside it (an earlier run stopped before its first shard) or an
    unreadable one with no shards is simply replaced; stale hidden temporaries are removed first.
    """
    from xdlm_vision.io import clean_stale_temps

    path = out / "run.json"
    if clean:  # the main process only: another may be writing a shard already
        clean_stale_temps(out)
        clean_stale_temps(out / "shards")
    has_shards = (out / "shards").is_dir() and any((out / "shards").glob("shard_*"))
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            if not isinstance(old, dict):
                raise TypeError("not a JSON object")
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            if has_shards:
                raise UserError(f"--out {out}: run.json is unreadable ({exc.__class__.__name__}) but shards exist; "
                                "use a new --out") from None
            old = setup
        diff = sorted(k for k in set(old) | set(setup) if old.get(k) != setup.get(k))
        if diff and not has_shards:
            write_json_atomic(path, setup)
            return
        if not diff and old is setup:
            write_json_atomic(path, setup)
            return
        if diff:
            details = ", ".join(f"{k}: {old.get(k)!r} -> {setup.get(k)!r}" for k in diff[:4])
            raise UserError(f"--out {out} holds samples of a different setup ({details}); "
                            "use a new --out or the original flags")
        return
    write_json_atomic(path, setup)


@dataclass
class ShardProgress:
    written: list[int]  # shards this process wrote now
    kept: list[int]  # shards found complete on disk and kept
    stopped_early: bool  # --max-shards reached before this process's shards were all done


def sample_shards(
    sm,
    out: Path,
    labels: Sequence[int],
    seeds: Sequence[int],
    opts,
    *,
    shard_size: int,
    fmt: str,
    batch_size: int,
    rank: int = 0,
    world: int = 1,
    max_shards: int | None = None,
    progress: bool = True,
) -> ShardProgress:
    """Sample this process's missing shards (``j mod world == rank``) into ``out``."""
    from tqdm.auto import tqdm

    from xdlm_vision.sampling import decode_tokens, generate

    ranges = shard_ranges(len(labels), shard_size)
    mine = [j for j in range(len(ranges)) if j % world == rank]
    kept = [j for j in mine if shard_is_complete(shard_path(out, j, fmt), fmt, len(ranges[j]))]
    todo = [j for j in mine if j not in kept]
    stopped = max_shards is not None and len(todo) > max_shards
    if max_shards is not None:
        todo = todo[:max_shards]
    written = []
    for j in tqdm(todo, desc=f"shards (process {rank})", unit="shard", disable=not progress or not todo):
        idx = list(ranges[j])
        lab, sd = [labels[i] for i in idx], [seeds[i] for i in idx]
        tokens = generate(sm, lab, sd, opts, batch_size=batch_size)  # (n, h, w)
        images = to_uint8_rgb(decode_tokens(sm, tokens, batch_size=batch_size))  # (n, H, W, 3)
        shard = Shard(images, np.asarray(lab, np.int64), np.asarray(idx, np.int64))
        write_shard(shard_path(out, j, fmt), shard, sd, fmt)
        written.append(j)
    return ShardProgress(written, kept, stopped)


def iter_shards(out: Path, num: int, shard_size: int, fmt: str) -> Iterator[Shard]:
    """All shards in index order; UserError if one is missing."""
    for j, r in enumerate(shard_ranges(num, shard_size)):
        path = shard_path(out, j, fmt)
        if not shard_is_complete(path, fmt, len(r)):
            raise UserError(f"shard {path} is missing or incomplete; rerun the same command to finish sampling")
        yield read_shard(path, fmt)


def write_adm_npz(path: Path, shards: Iterator[Shard], num: int, image_shape: tuple[int, ...]) -> Path:
    """Stream shards into an ADM-evaluator ``.npz``: arr_0 (N, H, W, 3) uint8, arr_1 (N,) labels.

    Written entry by entry (ZIP64, no compression) so 50,000 ImageNet images never sit in memory.
    """
    labels = []
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        with zf.open("arr_0.npy", "w", force_zip64=True) as f:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": (num, *image_shape)}
            np.lib.format.write_array_header_1_0(f, header)
            count = 0
            for shard in shards:
                if tuple(shard.images.shape[1:]) != tuple(image_shape):
                    raise UserError(f"shard image shape {shard.images.shape[1:]} != {image_shape}")
                f.write(np.ascontiguousarray(shard.images).tobytes())
                labels.append(shard.labels)
                count += shard.images.shape[0]
        if count != num:
            raise UserError(f"expected {num} images in the shards, found {count}")
        with zf.open("arr_1.npy", "w") as f:
            np.lib.format.write_array(f, np.concatenate(labels).astype(np.int64))
    return path
