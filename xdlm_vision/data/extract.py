"""One-time tokenisation of an image folder into memory-mappable shards (``extract-codes``).

Images are centre-cropped as LlamaGen does (:func:`~xdlm_vision.data.transforms.center_crop_arr`),
encoded once, and written as shards of ``shard_size`` images in ImageFolder order (sorted class
folders, sorted files). Shard ``i`` belongs to process ``i % world``; a shard counts as finished
only once its ``done`` marker exists (written after its arrays, all atomically), so an interrupted
run redoes only unfinished shards. Process 0 writes ``manifest.json`` after a barrier, last.

With ``flip`` every image stores two views, the centre crop and its horizontal mirror (LlamaGen's
``extract_codes.py`` also stores flipped codes; we keep the single centre crop instead of its
ten-crop option): token arrays are (n, 2, h, w), and the dataset draws one view per access.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

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
from xdlm_vision.data.image_folder import (
    open_image_folder,
    read_class_map,
    worker_error_line,
    write_json_atomic,
)
from xdlm_vision.data.transforms import extraction_transform
from xdlm_vision.errors import UserError
from xdlm_vision.io import clean_stale_temps

VIEW_NAMES = ("center_crop", "center_crop_hflip")


@dataclass
class ExtractConfig:
    """Settings of one extraction (the CLI flags of ``extract-codes``)."""

    images: str  # --images: ImageFolder root (one sub-folder per class)
    checkpoint: str  # --tokenizer-checkpoint: weights file (LlamaGen) or model dir (diffusers)
    out: str  # --out: output folder
    image_size: int = 256  # --image-size: side of the centre crop
    flip: bool = False  # --flip: also store the codes of the mirrored crop
    batch_size: int = 32  # --batch-size: images per encoder call
    shard_size: int = 1024  # --shard-size: images per shard file
    tokenizer: str = "VQ-16"  # --tokenizer: VQ-16, VQ-8, a LlamaGen config JSON, or diffusers
    class_map: str | None = None  # --class-map: JSON {"folder": id} the folders must match
    num_workers: int = 4  # --num-workers: DataLoader worker processes


@dataclass
class ExtractResult:
    """What a call did on this process."""

    out: Path
    num_images: int  # images in the dataset
    num_shards: int  # shards in the dataset
    written: int  # shards this process encoded now
    skipped: int  # shards this process found finished
    complete: bool  # manifest written (process 0) / present


class Distributed(Protocol):
    """The part of ``accelerate.PartialState`` the extraction uses."""

    process_index: int
    num_processes: int
    device: torch.device
    is_local_main_process: bool

    def wait_for_everyone(self) -> None: ...


def _validate_numbers(cfg: ExtractConfig) -> None:
    for flag, value in (
        ("--image-size", cfg.image_size),
        ("--batch-size", cfg.batch_size),
        ("--shard-size", cfg.shard_size),
    ):
        if value < 1:
            raise UserError(f"{flag} must be >= 1, got {value}")
    if cfg.num_workers < 0:
        raise UserError(f"--num-workers must be >= 0, got {cfg.num_workers}")


def _files_digest(samples: list[tuple[str, int]], root: Path) -> str:
    """SHA-256 over (relative path, label) of every sample: the order shards are cut in."""
    h = hashlib.sha256()
    for path, label in samples:
        h.update(f"{Path(path).relative_to(root).as_posix()}\t{label}\n".encode())
    return h.hexdigest()


def _run_record(cfg: ExtractConfig, spec: dict, dataset, root: Path, grid: tuple[int, int]) -> dict:
    """Everything that fixes the content of the shards; resuming requires an identical record."""
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": spec,
        "image_size": cfg.image_size,
        "grid_shape": list(grid),
        "flip": cfg.flip,
        "shard_size": cfg.shard_size,
        "num_images": len(dataset),
        "class_to_idx": dataset.class_to_idx,
        "files_sha256": _files_digest(dataset.samples, root),
    }


def _run_id(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _check_out_dir(out: Path, record: dict) -> None:
    """Refuse to mix two different extractions in one folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder")
    run_file = out / RUN_FILE
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text())
        except json.JSONDecodeError:
            previous = None
        if previous != record:
            changed = sorted(k for k in record if previous is None or previous.get(k) != record[k])
            raise UserError(
                f"--out {str(out)!r} holds an extraction with different settings ({', '.join(changed)}); "
                "use a new --out folder or delete it"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(
            f"--out {str(out)!r} is not empty and holds no extraction; use an empty or new folder"
        )


def _shard_done(out: Path, shard: int, run_id: str, count: int, views: int, grid: tuple[int, int]) -> bool:
    """A shard is finished iff its marker names this run and its arrays have the expected shapes."""
    marker = done_path(out, shard)
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
        tokens = np.load(tokens_path(out, shard), mmap_mode="r")
        labels = np.load(labels_path(out, shard), mmap_mode="r")
    except (OSError, ValueError):
        return False
    return (
        info.get("run_id") == run_id
        and info.get("count") == count
        and tokens.shape == (count, views, *grid)
        and labels.shape == (count,)
    )


def _encode_views(tok, images: torch.Tensor, flip: bool) -> torch.Tensor:
    """images (B, 3, S, S) -> ids (B, V, h, w); V = 2 (original, mirrored) with ``flip``."""
    if not flip:
        return tok.encode(images).unsqueeze(1)  # (B, 1, h, w)
    both = tok.encode(torch.cat([images, images.flip(-1)]))  # (2B, h, w)
    return torch.stack(both.chunk(2), dim=1)  # (B, 2, h, w)


def _write_shard(out: Path, shard: int, tokens: np.ndarray, labels: np.ndarray, run_id: str) -> None:
    """Arrays first, marker last; each through temp file + rename."""
    save_npy_atomic(tokens_path(out, shard), tokens)
    save_npy_atomic(labels_path(out, shard), labels)
    write_json_atomic(done_path(out, shard), {"run_id": run_id, "count": len(labels)})


def _default_distributed() -> Distributed:
    """accelerate's process state; without CUDA it must be asked for CPU (gloo) explicitly, or a
    ``torchrun``-launched CPU process would think it is alone."""
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def extract_codes(cfg: ExtractConfig, dist: Distributed | None = None) -> ExtractResult:
    """Tokenise ``cfg.images`` into ``cfg.out`` (see module docstring). All inputs are checked
    before anything is written, so a bad flag leaves no output behind."""
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    from xdlm_vision.tokenizers.factory import open_tokenizer, tokenizer_spec

    _validate_numbers(cfg)
    dist = dist or _default_distributed()
    rank, world = dist.process_index, dist.num_processes
    root = Path(cfg.images)
    expected_map = read_class_map(cfg.class_map) if cfg.class_map else None
    dataset = open_image_folder(root, extraction_transform(cfg.image_size), expected_map)
    tok = open_tokenizer(cfg.tokenizer, cfg.checkpoint, device=dist.device)
    grid = tok.grid_shape(cfg.image_size, cfg.image_size)
    spec = tokenizer_spec(tok)
    record = _run_record(cfg, spec, dataset, root, grid)
    run_id = _run_id(record)
    out = Path(cfg.out)
    _check_out_dir(out, record)
    dist.wait_for_everyone()  # every process checked before anyone writes
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(out)  # hidden temporaries of a killed earlier run; never read
        if not (out / RUN_FILE).is_file():
            write_json_atomic(out / RUN_FILE, record)
    dist.wait_for_everyone()

    n, size, views = len(dataset), cfg.shard_size, 2 if cfg.flip else 1
    num_shards = (n + size - 1) // size
    counts = [min(size, n - i * size) for i in range(num_shards)]
    mine = [i for i in range(num_shards) if i % world == rank]
    todo = [i for i in mine if not _shard_done(out, i, run_id, counts[i], views, grid)]
    dtype = token_dtype(tok.codebook_size)
    bar = tqdm(
        total=sum(counts[i] for i in todo),
        desc=f"extract-codes [{rank}/{world}]",
        unit="img",
        disable=not dist.is_local_main_process,
    )
    for shard in todo:
        start = shard * size
        loader = DataLoader(
            Subset(dataset, range(start, start + counts[shard])),
            batch_size=cfg.batch_size,
            shuffle=False,
            num_workers=cfg.num_workers,
        )
        ids, labels = [], []
        try:
            for images, y in loader:  # (B, 3, S, S), (B,)
                ids.append(_encode_views(tok, images, cfg.flip).cpu().numpy().astype(dtype))  # (B, V, h, w)
                labels.append(y.numpy().astype(np.int64))
                bar.update(len(y))
        except UserError as exc:  # an unreadable image (maybe raised in a worker): stop, naming the file
            bar.close()
            raise UserError(worker_error_line(exc)) from None
        _write_shard(out, shard, np.concatenate(ids), np.concatenate(labels), run_id)
    bar.close()

    dist.wait_for_everyone()
    complete = (out / MANIFEST).is_file()
    if rank == 0:
        unfinished = [i for i in range(num_shards) if not _shard_done(out, i, run_id, counts[i], views, grid)]
        if unfinished:
            raise UserError(
                f"shards {unfinished[:10]} are unfinished; rerun extract-codes with the same flags"
            )
        manifest = _manifest(record, spec, tok, dataset, counts, views, dtype, root)
        write_json_atomic(out / CLASS_MAP, dataset.class_to_idx)
        write_json_atomic(out / MANIFEST, manifest)  # last: its presence marks a complete extraction
        complete = True
    return ExtractResult(out, n, num_shards, len(todo), len(mine) - len(todo), complete)


def _manifest(record, spec, tok, dataset, counts, views, dtype, root) -> dict:
    labels = np.asarray(dataset.targets, dtype=np.int64)
    return {
        "format_version": FORMAT_VERSION,
        "tokenizer": spec,
        "tokenizer_sha256": spec.get("sha256"),
        "codebook_size": tok.codebook_size,
        "downsample": tok.downsample,
        "grid_shape": record["grid_shape"],
        "image_size": record["image_size"],
        "flip": record["flip"],
        "views": views,
        "view_names": list(VIEW_NAMES[:views]),
        "token_dtype": np.dtype(dtype).name,
        "images": str(root.resolve()),
        "num_images": int(sum(counts)),
        "num_classes": len(dataset.class_to_idx),
        "class_to_idx": dataset.class_to_idx,
        "class_counts": np.bincount(labels, minlength=len(dataset.class_to_idx)).tolist(),
        "files_sha256": record["files_sha256"],
        "shard_size": record["shard_size"],
        "shards": [
            {
                "index": i,
                "count": c,
                "tokens": tokens_path(Path(), i).name,
                "labels": labels_path(Path(), i).name,
            }
            for i, c in enumerate(counts)
        ],
    }
