"""Atomic writes: the one home of ``os.replace`` in the toolkit.

Every file or directory the toolkit writes (checkpoints, manifests, shards, metrics, PNG/GIF/HTML)
is first written under a hidden temporary name in the destination folder and then moved into place
with ``os.replace``, so a crash leaves either the old complete file or the new complete one, never
a half-written one. :func:`atomic_path` is the primitive; the ``write_*`` helpers cover the common
payloads.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success move it onto ``path``.

    Write a file (or create a directory) at the yielded path inside the ``with`` block. The parent
    folder is created. If the block raises, the temporary is removed and ``path`` is untouched.
    ``suffix`` keeps the extension for writers that infer the format from it (e.g. ``.npy``).
    A directory can replace only a missing or empty directory; use :func:`replace_dir` to swap
    a full one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.unlink()  # the writer creates it (a file or a directory)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            _remove(tmp)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsynced before the rename); returns ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, obj: Any, default: Callable[[Any], Any] | None = str) -> Path:
    """Write ``obj`` as indented JSON (plus a final newline) atomically; returns ``path``.

    ``default`` converts values JSON cannot hold (paths, numpy scalars) — ``str`` unless given.
    """
    return write_text_atomic(path, json.dumps(obj, indent=2, default=default) + "\n")


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Move the finished directory ``tmp`` onto ``final``, swapping out an existing ``final``.

    Both must be on the same file system (``tmp`` beside ``final``). The old directory is moved
    aside with one ``os.replace`` and deleted only after the new one is in place.
    """
    tmp, final = Path(tmp), Path(final)
    if final.exists():
        old = final.with_name(f".old_{final.name}_{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)
    return final
