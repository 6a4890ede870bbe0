"""Monte-Carlo NELBO (bits per token) of a model on a dataset, with a standard error.

The NELBO is an expectation over t ~ U(0, 1) and z_t ~ q(z_t | x). We draw ``num_t`` independent
replicates: in replicate r every batch b draws its times (antithetic over the batch, the core's
``sample_times``) and its corruption from a CPU generator seeded by (seed, r, b). Each replicate
is an unbiased estimate of the dataset's mean NELBO per token; the reported value is their mean and
the standard error is their sample standard deviation / sqrt(num_t). The same (model, data, seed,
num_t, batch_size) gives the same numbers on any device up to float rounding; the batch size
matters because it decides which examples share an antithetic time grid (it is recorded).

Any ``k`` can be evaluated (``spec.with_k(k)``), not only the one the model was trained with:
the bound is valid for any noise process; it is only tight for the trained one.

:func:`nelbo_sums` is the dataset loop shared with the trainer's validation
(:mod:`xdlm_vision.training.validation`): sharded over processes with an all-reduce.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from xdlm_vision.core import DiffusionSpec, batch_nelbo
from xdlm_vision.errors import UserError


@dataclass
class NelboEstimate:
    bits_per_token: float  # mean over replicates of the dataset-mean NELBO / ln 2
    stderr_bits: float  # standard error of that mean (std over replicates / sqrt(num_t)); nan if num_t = 1
    nats_per_token: float  # bits_per_token * ln 2
    perplexity_bound: float  # exp(nats_per_token): upper bound on the per-token perplexity
    replicates: list[float] = field(default_factory=list)  # bits per token of each replicate
    num_examples: int = 0  # examples evaluated
    num_tokens: int = 0  # tokens per replicate
    num_t: int = 0  # replicates (independent draws of t and z_t per example)


def replicate_seed(seed: int, replicate: int, batch: int) -> int:
    """Seed of batch ``batch`` in replicate ``replicate`` (a fixed, collision-resistant mix)."""
    return int(np.random.SeedSequence([int(seed), int(replicate), int(batch), 0xE7A1]).generate_state(1)[0])


def summarize(replicates: list[float], num_examples: int, num_tokens: int) -> NelboEstimate:
    """Mean and standard error over per-replicate bits-per-token estimates."""
    arr = np.asarray(replicates, dtype=np.float64)
    mean = float(arr.mean())
    se = float(arr.std(ddof=1) / math.sqrt(len(arr))) if len(arr) > 1 else float("nan")
    nats = mean * math.log(2)
    return NelboEstimate(mean, se, nats, math.exp(min(nats, 700.0)), [float(v) for v in arr],
                         num_examples, num_tokens, len(arr))


def collate(dataset, idx: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Items ``idx`` of ``dataset`` as (tokens (B, L) int64, labels (B,) int64)."""
    items = [dataset[i] for i in idx]
    tokens = torch.stack([torch.as_tensor(it[0]) for it in items]).long()  # (B, *grid)
    labels = torch.as_tensor([int(it[1]) for it in items], dtype=torch.long)  # (B,)
    return tokens.reshape(len(items), -1), labels  # (B, L), (B,)


@torch.no_grad()
def nelbo_sums(
    model_fn: Callable[..., torch.Tensor],
    dataset,
    spec: DiffusionSpec,
    batch_seed: Callable[[int], int],
    *,
    batch_size: int,
    count: int | None = None,
    conditional: bool = True,
    device: str | torch.device = "cpu",
    rank: int = 0,
    world: int = 1,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
    bar=None,
) -> tuple[float, int]:
    """Sum of the NELBO (nats) over the first ``count`` examples, and the number of tokens.

    Batch ``b`` (examples ``b * batch_size ...``, a fixed composition) draws t and z_t from a CPU
    generator seeded with ``batch_seed(b)`` (:func:`xdlm_vision.core.batch_nelbo`), so the sums do
    not depend on the number of processes: process ``rank`` of ``world`` takes every world-th
    batch and ``reduce`` (e.g. an accelerate all-reduce sum of a (2,) float64 tensor) adds the
    partial sums of all processes. ``conditional=False`` passes labels None. ``autocast`` makes a
    fresh mixed-precision context around each batch (the trainer's ``accelerator.autocast``).
    """
    count = len(dataset) if count is None else min(len(dataset), int(count))
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum nats, tokens)
    for b in range(rank, math.ceil(count / batch_size), world):
        x0, lab = collate(dataset, range(b * batch_size, min(count, (b + 1) * batch_size)))
        if int(x0.max()) >= spec.space.num_tokens or int(x0.min()) < 0:
            raise UserError(f"data tokens must lie in 0..{spec.space.num_tokens - 1} for this checkpoint")
        x0 = x0.to(device)  # (B, L)
        lab = lab.to(device) if conditional else None  # (B,)
        gen = torch.Generator(device="cpu").manual_seed(batch_seed(b))
        with autocast():
            loss = batch_nelbo(model_fn, x0, lab, spec, gen)  # (B, L)
        total += torch.stack([loss.double().sum(), torch.tensor(float(loss.numel()), device=device)])
        if bar is not None:
            bar.update(1)
    if reduce is not None and world > 1:
        total = reduce(total)
    return float(total[0]), int(total[1])


def monte_carlo_nelbo(
    model_fn: Callable[..., torch.Tensor],
    dataset,
    spec: DiffusionSpec,
    *,
    num_t: int = 8,
    seed: int = 0,
    batch_size: int = 256,
    conditional: bool = True,
    max_examples: int | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> NelboEstimate:
    """NELBO of ``model_fn`` on ``dataset`` (items (tokens (h, w) or (L,) int64, label)).

    model_fn(z (B, L), labels (B,) | None, t (B,) | None) -> logits (B, L, N); ``conditional=False``
    passes labels None. ``spec`` is the diffusion spec (its k is the k evaluated). The dataset is
    read batch by batch, once per replicate; replicate r, batch b uses ``replicate_seed(seed, r, b)``.
    """
    if num_t < 1:
        raise ValueError(f"num_t must be >= 1, got {num_t}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    m = len(dataset) if max_examples is None else min(len(dataset), int(max_examples))
    if m == 0:
        raise UserError("no examples to evaluate (empty split)")
    from tqdm.auto import tqdm

    bar = tqdm(total=num_t * math.ceil(m / batch_size), desc="nelbo", unit="batch", disable=not progress)
    replicates, num_tokens = [], 0
    for r in range(num_t):
        total, num_tokens = nelbo_sums(model_fn, dataset, spec, lambda b, r=r: replicate_seed(seed, r, b),
                                       batch_size=batch_size, count=m, conditional=conditional, device=device,
                                       bar=bar)
        replicates.append(total / num_tokens / math.log(2))
    bar.close()
    return summarize(replicates, m, num_tokens)
