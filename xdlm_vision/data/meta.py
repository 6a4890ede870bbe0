"""What every dataset promises (a leaf module: dataclasses only, no torch import at the top).

* :class:`DataMeta` — vocabulary, token grid, classes and tokenizer spec of a dataset, known
  without reading the data; it is stored in every checkpoint's ``config.json`` under ``data``.
* :class:`DataBundle` — the train/validation datasets of a run plus their :class:`DataMeta`.
* :class:`DatasetEntry` — one row of the registry in :mod:`xdlm_vision.data.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DataMeta:
    num_tokens: int  # N data tokens (mask id N)
    grid_shape: tuple[int, ...]  # token grid (h, w) of one example, or (L,) for text
    num_classes: int  # C (null class id C)
    class_names: list[str]  # C names
    tokenizer_spec: dict = field(default_factory=dict)  # how to decode tokens (xdlm_vision.tokenizers factory)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid_shape"] = list(self.grid_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataMeta:
        return cls(
            num_tokens=int(d["num_tokens"]),
            grid_shape=tuple(int(v) for v in d["grid_shape"]),
            num_classes=int(d["num_classes"]),
            class_names=[str(c) for c in d["class_names"]],
            tokenizer_spec=dict(d.get("tokenizer_spec", {})),
        )


@dataclass
class DataBundle:
    train: Any  # torch Dataset, items (tokens (h, w) int64, label int64)
    val: Any | None  # same; None = no validation split
    meta: DataMeta


@dataclass(frozen=True)
class DatasetEntry:
    """``meta(cfg)`` without reading the data (so ``--dry-run`` works), ``build(cfg)`` the datasets."""

    meta: Callable[[Any], DataMeta]
    build: Callable[[Any], DataBundle]
