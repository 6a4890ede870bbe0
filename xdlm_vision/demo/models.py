"""The demo's model picker: every packaged checkpoint plus every ``--checkpoint`` given, by name.

Checkpoints are loaded on first use and kept (a digits model is ~5 MB); the names are what the
dropdowns show, and a request naming anything else is refused, so inputs never become file paths.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from xdlm_vision.checkpoints import PACKAGED, packaged_names, packaged_path, resolve_checkpoint_dir
from xdlm_vision.checkpoints.packaged import PREFIX
from xdlm_vision.demo.app import DemoLimits, DemoSampler
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.compare import run_name


def _packaged_name(path: Path) -> str | None:
    for name, where in PACKAGED.items():
        if Path(path).resolve() == where.resolve():
            return name
    return None


class DemoModels:
    """Name -> checkpoint, loaded lazily into :class:`DemoSampler` objects (thread-safe)."""

    def __init__(self, sources: dict[str, str | Path], limits: DemoLimits | None = None,
                 loaded: dict[str, DemoSampler] | None = None, **load_kwargs) -> None:
        if not sources:
            raise UserError("the demo needs at least one checkpoint")
        self.sources = dict(sources)
        self.limits = limits or DemoLimits()
        self.load_kwargs = load_kwargs
        self._loaded = dict(loaded or {})
        self._lock = threading.Lock()

    @classmethod
    def build(cls, checkpoints: Sequence[str | Path] = (), limits: DemoLimits | None = None,
              **load_kwargs) -> DemoModels:
        """The given checkpoints (first = default selection), then every packaged one not given."""
        sources: dict[str, str | Path] = {}
        covered = set()  # packaged checkpoints already among the given ones
        for ckpt in checkpoints:
            if isinstance(ckpt, str) and ckpt.startswith(PREFIX):
                name = packaged = ckpt[len(PREFIX):]
                packaged_path(name)  # UserError now for an unknown name, not at the first request
            else:
                ckpt_dir = resolve_checkpoint_dir(ckpt)
                packaged = _packaged_name(ckpt_dir)
                name = packaged or run_name(ckpt, ckpt_dir)
            covered.add(packaged)
            sources[cls._unique(name, sources)] = ckpt
        for name in packaged_names():
            if name not in covered:
                sources[cls._unique(name, sources)] = PREFIX + name
        return cls(sources, limits, **load_kwargs)

    @classmethod
    def around(cls, sampler: DemoSampler) -> DemoModels:
        """An already loaded sampler (first) plus every other packaged checkpoint, loaded alike."""
        name = _packaged_name(sampler.sm.path) or run_name(sampler.sm.path, sampler.sm.path)
        sources: dict[str, str | Path] = {name: sampler.sm.path}
        for other in packaged_names():
            if other != name:
                sources[other] = PREFIX + other
        return cls(sources, sampler.limits, loaded={name: sampler}, ema=sampler.sm.ema, device=sampler.sm.device)

    @staticmethod
    def _unique(name: str, taken: dict) -> str:
        out, i = name, 2
        while out in taken:
            out, i = f"{name} ({i})", i + 1
        return out

    @property
    def names(self) -> list[str]:
        return list(self.sources)

    @property
    def default(self) -> str:
        return self.names[0]

    def get(self, name) -> DemoSampler:
        """The loaded sampler of ``name``; UserError for a name that is not offered."""
        if name not in self.sources:
            raise UserError(f"model must be one of {self.names}, got {name!r}")
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = DemoSampler.from_checkpoint(self.sources[name], self.limits, **self.load_kwargs)
            return self._loaded[name]


__all__ = ["DemoModels"]
