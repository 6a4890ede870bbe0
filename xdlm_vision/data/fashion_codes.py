"""Fashion-MNIST encoded once by a VQ tokenizer, in the ``extract-codes`` folder format.

:func:`extract_fashion_codes` writes ``manifest.json``, ``class_map.json``, ``run.json`` and
token/label shards exactly as :mod:`xdlm_vision.data.extract` does for an image folder (one view,
no flips), so :class:`~xdlm_vision.data.codes.CodesDataset` and ``data.name=codes`` read the result.
Images go through :func:`~xdlm_vision.data.fashion.to_signed_padded` (28x28 -> 32x32 in [-1, 1]).
A folder whose ``manifest.json`` records the same tokenizer hash, split and image count is reused;
a shard is rewritten unless its ``done`` marker names this run.

:func:`fashion_codes_dirs` is where the ``fashion`` preset keeps them: ``codes-<sha12>/{train,test}``
beside the tokenizer weights, so codes of different tokenizers never mix.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from xdlm_vision.data.codes import (
    CLASS_MAP,
    FORMAT_VERSION,
    MANIFEST,
    RUN_FILE,
    done_path,
    labels_path,
    save_npy_atomic,
    token_dtype,
    tokens_path,
)
from xdlm_vision.data.fashion import FASHION_CLASS_NAMES, PADDED_SIDE, load_fashion_split, to_signed_padded
from xdlm_vision.errors import UserError
from xdlm_vision.io import write_json_atomic


def fashion_codes_dirs(tokenizer_weights: str | Path, sha256: str) -> dict[str, Path]:
    """``{"train": ..., "test": ...}`` code folders of one tokenizer (next to its weights)."""
    root = Path(tokenizer_weights).resolve().parent / f"codes-{sha256[:12]}"
    return {"train": root / "train", "test": root / "test"}


def _manifest_matches(out: Path, record: dict) -> bool:
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("run") == record


def extract_fashion_codes(
    tokenizer,
    out: str | Path,
    split: str = "train",
    data_dir: str | Path | None = None,
    batch_size: int = 500,
    shard_size: int = 10000,
    progress: bool = True,
    arrays=None,
    flag: str = "data.path",
) -> Path:
    """Encode one split with ``tokenizer`` (a LlamaGenTokenizer) into ``out``; returns ``out``.

    ``arrays`` (a :class:`~xdlm_vision.data.fashion.FashionArrays`) replaces reading the split (tests).
    """
    from tqdm.auto import tqdm

    from xdlm_vision.tokenizers.factory import tokenizer_spec

    if arrays is None:
        arrays = load_fashion_split(split, data_dir, flag=flag)
    spec = tokenizer_spec(tokenizer)
    grid = list(tokenizer.grid_shape(PADDED_SIDE, PADDED_SIDE))
    digest = hashlib.sha256(arrays.images.numpy().tobytes() + arrays.labels.numpy().tobytes()).hexdigest()
    record = {"source": "fashion-mnist", "split": split, "num_images": len(arrays.labels),
              "tokenizer_sha256": spec.get("sha256"), "data_sha256": digest, "shard_size": shard_size}
    out = Path(out)
    if _manifest_matches(out, record):
        return out
    if out.is_file():
        raise UserError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    run_id = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    write_json_atomic(out / RUN_FILE, record)
    n = len(arrays.labels)
    counts = [min(shard_size, n - i) for i in range(0, n, shard_size)]
    dtype = token_dtype(tokenizer.codebook_size)
    bar = tqdm(total=n, desc=f"fashion codes ({split})", unit="img", disable=not progress)
    for shard, count in enumerate(counts):
        marker = done_path(out, shard)
        start = shard * shard_size
        if marker.is_file() and json.loads(marker.read_text()).get("run_id") == run_id:
            bar.update(count)
            continue
        ids = []
        for i in range(start, start + count, batch_size):
            images = to_signed_padded(arrays.images[i: min(i + batch_size, start + count)])  # (b, 1, 32, 32)
            ids.append(tokenizer.encode(images).cpu().numpy().astype(dtype)[:, None])  # (b, 1, h, w)
            bar.update(len(images))
        save_npy_atomic(tokens_path(out, shard), np.concatenate(ids))
        save_npy_atomic(labels_path(out, shard), arrays.labels[start: start + count].numpy().astype(np.int64))
        write_json_atomic(marker, {"run_id": run_id, "count": count})
    bar.close()
    class_to_idx = {name: i for i, name in enumerate(FASHION_CLASS_NAMES)}
    labels = arrays.labels.numpy()
    manifest = {
        "format_version": FORMAT_VERSION, "run": record, "tokenizer": spec, "tokenizer_sha256": spec.get("sha256"),
        "codebook_size": int(tokenizer.codebook_size), "downsample": int(tokenizer.downsample),
        "grid_shape": grid, "image_size": PADDED_SIDE, "flip": False, "views": 1, "view_names": ["padded_32"],
        "token_dtype": np.dtype(dtype).name, "images": f"fashion-mnist {split}", "num_images": n,
        "num_classes": len(FASHION_CLASS_NAMES), "class_to_idx": class_to_idx,
        "class_counts": np.bincount(labels, minlength=len(FASHION_CLASS_NAMES)).tolist(),
        "shard_size": shard_size,
        "shards": [{"index": i, "count": c, "tokens": tokens_path(Path(), i).name, "labels": labels_path(Path(), i).name}
                   for i, c in enumerate(counts)],
    }
    write_json_atomic(out / CLASS_MAP, class_to_idx)
    write_json_atomic(out / MANIFEST, manifest)  # last: marks the extraction complete
    return out


def encode_all(tokenizer, data_dir: str | Path | None, tokenizer_weights: str | Path, progress: bool = True,
               flag: str = "data.path") -> dict[str, Path]:
    """Both splits' code folders for ``tokenizer`` (extracting what is missing)."""
    dirs = fashion_codes_dirs(tokenizer_weights, tokenizer.checkpoint_sha256 or "unhashed")
    for split, folder in dirs.items():
        extract_fashion_codes(tokenizer, folder, split, data_dir, progress=progress, flag=flag)
    return dirs
