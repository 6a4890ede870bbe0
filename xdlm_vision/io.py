"""Atomic writes: the one home of ``os.replace`` in the toolkit.

Every file or directory the toolkit writes (checkpoints, manifests, shards, metrics, PNG/GIF/HTML)
is first written under a hidden temporary name in the destination folder and then moved into place
with ``os.replace``, so a crash leaves either the old complete file or the new complete one, never
a half-written one. :func:`atomic_path` is the primitive; the ``write_*`` helpers cover the common
payloads.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
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


# ---------------------------------------------------------------------------------------------
# checks before work, stale temporaries, line-atomic appends

# errno values that mean "the disk/folder refused the write" (one `error:` line in the CLI)
WRITE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG", "EISDIR", "ENOTDIR")
    if hasattr(errno, name)
)
# hidden temporaries the toolkit leaves only when a process dies mid-write
STALE_PATTERNS = (".tmp_step_*", ".tmp_shard_*", ".old_step_*", ".*.tmp")


def output_path_problem(path: str | Path, kind: str = "file") -> str | None:
    """Why ``path`` cannot be written as a ``kind`` (``"file"`` or ``"dir"``), or None if it can.

    Checked before any work: an empty name, a file where a directory is wanted (or the reverse),
    a parent that is a file, and a folder that refuses a probe file (read-only, full, no
    permission) are refused. Nothing is created except a probe file that is deleted at once.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if not str(path).strip():
        return "is empty"
    p = Path(path)
    if kind == "file" and (p.is_dir() or str(path).endswith(os.sep)):
        return "is a directory; name a file"
    if kind == "dir" and p.exists() and not p.is_dir():
        return "is a file; name a directory"
    if kind == "file" and p.exists() and not os.access(p, os.W_OK):
        return "is not writable"
    probe_dir = p if kind == "dir" else p.parent
    while not probe_dir.exists():
        if probe_dir.is_symlink() or probe_dir == probe_dir.parent:
            return "has no existing parent folder"
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"cannot be created: {probe_dir} is a file"
    try:
        fd, name = tempfile.mkstemp(prefix=".xdlm_probe_", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"cannot be written ({probe_dir}: {exc.strerror or exc})"
    return None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(folder: str | Path, patterns: tuple[str, ...] = STALE_PATTERNS) -> list[Path]:
    """Delete hidden temporaries left in ``folder`` by a writer that died; returns what was removed.

    A name ending in ``_<pid>`` of a live process is kept (another process may be writing it);
    everything else matching ``patterns`` is stale: an atomic write never leaves one behind when
    it finishes or fails with an exception.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for pattern in patterns:
        for entry in folder.glob(pattern):
            if pattern == ".*.tmp" and not re.fullmatch(r"\..+\.[a-z0-9_]{8}\.tmp", entry.name):
                continue  # not a name atomic_path makes (``.<name>.<8 random chars>.tmp``): not ours
            tail = entry.name.rsplit("_", 1)[-1]
            if tail.isdigit() and _pid_alive(int(tail)):
                continue
            if not tail.isdigit() and pattern == ".*.tmp" and time.time() - entry.stat().st_mtime < 60:
                continue  # a concurrent atomic write of another process may still be running
            _remove(entry)
            removed.append(entry)
    return removed


def append_line(path: str | Path, line: str) -> None:
    """Append one text line to ``path`` all-or-nothing: on a failed or short write the file is cut
    back to its previous length, so a full disk never leaves half a line."""
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write (disk full?)", str(path))
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def repair_last_line(path: str | Path) -> bool:
    """Cut a line-oriented file back to its last complete line (after a crash mid-append);
    True if something was cut."""
    path = Path(path)
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    write_bytes_atomic(path, data[: data.rfind(b"\n") + 1])
    return True
