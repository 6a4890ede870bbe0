"""Several checkpoints sampled alike: same classes, seeds, steps, sampler and CFG for every model.

Used by ``xdlm-vision sample --compare RUN_A RUN_B ...`` and the demo's compare tab; the
side-by-side pictures are :mod:`xdlm_vision.viz.compare`.

- :func:`load_compare_models`: load every checkpoint (``packaged:NAME`` short names work) as a
  :class:`CompareModel` with a column title (run name) and subtitle (k, step, EMA/raw);
- :func:`compare_class_count`: the number of classes every model knows (labels must fit them all);
- :func:`sample_compare`: all images of every model, one model after the other, each stream
  optionally watched (e.g. by a trajectory recorder);
- :func:`compare_steps`: the models' step streams in lockstep, one list of
  :class:`~xdlm_vision.core.SamplerStep` per step (the demo streams these).

Because image ``i`` uses its own generator seeded with ``seeds[i]`` (docs/sampling.md), the same
checkpoint listed twice gives identical columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from xdlm_vision.checkpoints import CHECKPOINTS, LoadedModel
from xdlm_vision.checkpoints.packaged import PREFIX
from xdlm_vision.core import SamplerStep
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.generate import SamplingOptions, generate, sampler_steps
from xdlm_vision.sampling.model import load_for_sampling

Watch = Callable[[Iterator[SamplerStep]], Iterator[SamplerStep]]


@dataclass
class CompareModel:
    """One loaded checkpoint of a comparison."""

    name: str  # run name: packaged short name, or the run directory's name
    lm: LoadedModel  # with its tokenizer

    @property
    def subtitle(self) -> str:
        """``k 0.1, step 800, EMA`` (the sampling k; the trained one in brackets if overridden)."""
        k = f"k {self.lm.space.k:g}" + ("" if self.lm.space.k == self.lm.trained_k else f" (trained {self.lm.trained_k:g})")
        return f"{k}, step {self.lm.step}, {'EMA' if self.lm.ema else 'raw'}"


def run_name(checkpoint: str | Path, ckpt_dir: Path) -> str:
    """Column title of a checkpoint: ``digits-mdlm`` for ``packaged:digits-mdlm``, the run directory's
    name for ``RUN/checkpoints/step_XXXXXXX``, else the directory's own name."""
    if isinstance(checkpoint, str) and checkpoint.startswith(PREFIX):
        return checkpoint[len(PREFIX):]
    if ckpt_dir.parent.name == CHECKPOINTS:
        return ckpt_dir.parent.parent.name
    return ckpt_dir.name


def load_compare_models(checkpoints: Sequence[str | Path], *, ema: bool = True, device: str | torch.device = "cpu",
                        k: float | None = None, tokenizer_checkpoint: str | Path | None = None,
                        flag: str = "--compare") -> list[CompareModel]:
    """Load every checkpoint for sampling; UserError naming ``flag`` for fewer than two or a text one."""
    if len(checkpoints) < 2:
        raise UserError(f"{flag} needs two or more checkpoints, got {len(checkpoints)}")
    models = []
    for ckpt in checkpoints:
        lm = load_for_sampling(ckpt, ema=ema, device=device, k=k, tokenizer_checkpoint=tokenizer_checkpoint)
        if lm.is_text:
            raise UserError(f"{flag} {ckpt} is a text checkpoint; compare image checkpoints (or use sample-text)")
        models.append(CompareModel(run_name(ckpt, lm.path), lm))
    return models


def compare_class_count(models: Sequence[CompareModel]) -> int:
    """Classes every model knows: the smallest class count (labels are checked against it)."""
    return min(m.lm.num_classes for m in models)


def compare_class_names(models: Sequence[CompareModel]) -> list[str] | None:
    """The class names all models share (so ``--class Sneaker`` works), else None (ids only)."""
    first = models[0].lm.class_names
    return first if all(m.lm.class_names == first for m in models) else None


def sample_compare(models: Sequence[CompareModel], labels: Sequence[int], seeds: Sequence[int], opts: SamplingOptions,
                   batch_size: int = 64, watches: Sequence[Watch | None] | None = None) -> list[torch.Tensor]:
    """Tokens (num, h, w) of every model, sampled with the same labels, seeds and options.

    ``watches[j]`` (optional) wraps the step stream of model j's first batch.
    """
    watches = list(watches) if watches is not None else [None] * len(models)
    if len(watches) != len(models):
        raise ValueError("one watch (or None) per model is needed")
    return [generate(m.lm, labels, seeds, opts, batch_size=batch_size, watch=w) for m, w in zip(models, watches)]


def compare_steps(models: Sequence[CompareModel], labels: Sequence[int], seeds: Sequence[int],
                  opts: SamplingOptions) -> Iterator[list[SamplerStep]]:
    """One batch per model, advanced together: yields ``[step of model 0, step of model 1, ...]``."""
    streams = [sampler_steps(m.lm, labels, seeds, opts) for m in models]
    yield from (list(steps) for steps in zip(*streams, strict=True))


__all__ = ["CompareModel", "compare_class_count", "compare_steps", "load_compare_models", "run_name",
           "sample_compare"]
