"""Reading tokenizer weights safely: safetensors, or torch files through ``weights_only=True``.

Nothing is ever unpickled with arbitrary code. Every problem becomes a UserError that names the
flag to fix (``--tokenizer-checkpoint`` by default).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from xdlm_vision.errors import UserError

CHECKPOINT_FLAG = "--tokenizer-checkpoint"
_MAX_LISTED = 8  # keys listed per category in a mismatch message


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path, flag: str = CHECKPOINT_FLAG) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint on the CPU.

    Accepts ``*.safetensors``, a torch file holding a state dict, or a torch file whose ``"model"``
    entry is the state dict (LlamaGen's ``vq_ds16_c2i.pt``).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {str(path)!r}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file means the user picked the wrong path
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{flag} {str(path)!r}: cannot read as safetensors/torch weights ({first})") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{flag} {str(path)!r}: expected a state dict (or a dict with a 'model' state dict)")
    return obj


@dataclass
class KeyReport:
    """Differences between a model's state dict and a checkpoint's."""

    missing: list[str]  # in the model, not in the checkpoint
    unexpected: list[str]  # in the checkpoint, not in the model
    wrong_shape: list[str]  # "name: checkpoint (a, b) vs model (c, d)"

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)


def compare_keys(model: nn.Module, state: dict[str, torch.Tensor]) -> KeyReport:
    """Names and shapes that a ``strict=True`` load would reject."""
    own = model.state_dict()
    wrong = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return KeyReport(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        wrong_shape=wrong,
    )


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"{label} ({len(items)}): {shown}{more}"


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str, hint: str = "") -> None:
    """``model.load_state_dict(state, strict=True)``, but a mismatch is one clear UserError.

    ``source`` names the file; ``hint`` says which flag(s) to fix.
    """
    report = compare_keys(model, state)
    if not report.ok:
        parts = [
            _listing(label, items)
            for label, items in (
                ("missing keys", report.missing),
                ("unexpected keys", report.unexpected),
                ("shape mismatches", report.wrong_shape),
            )
            if items
        ]
        raise UserError(
            f"{source} does not match the tokenizer architecture; " + "; ".join(parts) + f". {hint}"
        )
    model.load_state_dict(state, strict=True)
