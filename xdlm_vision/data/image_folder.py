"""ImageNet-style class folders through torchvision ``ImageFolder``, with a pinned class map.

``ImageFolder`` numbers classes by sorted folder name, so a machine missing one folder would shift
every later class id. A class map (JSON ``{"folder_name": index}``) written at extraction time and
checked on every later run keeps class 417 the same class everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

from xdlm_vision.errors import UserError
from xdlm_vision.io import write_json_atomic  # noqa: F401 - re-exported for data.extract


def read_class_map(path: str | Path, flag: str = "--class-map") -> dict[str, int]:
    """``{"name": index}`` from JSON; indices must be exactly 0..C-1."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{flag} {str(path)!r}: cannot read class map JSON ({exc})") from None
    if not isinstance(raw, dict) or sorted(raw.values()) != list(range(len(raw))):
        raise UserError(f'{flag} {str(path)!r}: expected {{"class_name": index}} with indices 0..C-1')
    return {str(k): int(v) for k, v in raw.items()}


def check_class_map(found: dict[str, int], expected: dict[str, int], flag: str = "--class-map") -> None:
    """UserError unless the folders give exactly the recorded names and indices."""
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    moved = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    details = [
        f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("missing folders", missing), ("unknown folders", extra), ("renumbered", moved))
        if items
    ]
    raise UserError(
        f"class folders do not match the class map ({'; '.join(details)}); fix --images or {flag}"
    )


class _loader:
    """ImageFolder's loader with a UserError naming the file when an image cannot be decoded
    (picklable, for DataLoader workers)."""

    def __init__(self, flag: str) -> None:
        self.flag = flag

    def __call__(self, path: str):
        from PIL import Image

        try:
            with open(path, "rb") as f, Image.open(f) as img:
                return img.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise UserError(f"{self.flag}: cannot read image {path} ({exc.__class__.__name__}); "
                            f"remove or replace it and rerun (finished shards are kept)") from None


def worker_error_line(exc: Exception) -> str:
    """The UserError line inside an error re-raised from a DataLoader worker (which carries the
    worker's traceback text), or the message itself."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for line in reversed(lines):
        if "UserError: " in line:
            return line.split("UserError: ", 1)[1]
    return lines[-1] if lines else str(exc)


def open_image_folder(
    root: str | Path, transform=None, class_map: dict[str, int] | None = None, flag: str = "--images"
):
    """torchvision ``ImageFolder`` over ``root`` (one sub-folder per class).

    Missing or empty folders raise UserError naming ``flag``; with ``class_map`` the folder names
    must match it exactly (same names, same indices).
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{flag} {str(root)!r}: no such folder")
    try:
        dataset = ImageFolder(str(root), transform=transform, loader=_loader(flag))
    except FileNotFoundError as exc:  # no class folders, or class folders without images
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{flag} {str(root)!r}: no images in class sub-folders ({first})") from None
    if class_map is not None:
        check_class_map(dataset.class_to_idx, class_map)
    return dataset
