"""Validation NELBO of the EMA weights during training, in bits per token, with fixed seeds.

The estimate is :func:`xdlm_vision.evaluation.nelbo.nelbo_sums` (the dataset loop of ``eval
nelbo`` over :func:`xdlm_vision.core.batch_nelbo`): batch ``i`` (fixed composition) always uses
the generator ``derive_seed(seed, 77, i)``, so the value does not depend on the number of
processes; processes take every world-th batch and the partial sums are all-reduced.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch
from torch import nn

from xdlm_vision.core import DiffusionSpec
from xdlm_vision.evaluation.nelbo import nelbo_sums
from xdlm_vision.training.order import derive_seed


@torch.no_grad()
def validation_bits_per_token(
    model: nn.Module, dataset, spec: DiffusionSpec, batch_size: int, seed: int, accelerator=None,
) -> float:
    """Mean NELBO over ``dataset`` in bits per token (items (tokens, label), labels always passed)."""
    rank = accelerator.process_index if accelerator is not None else 0
    world = accelerator.num_processes if accelerator is not None else 1
    device = next(model.parameters()).device

    reduce = (lambda total: accelerator.reduce(total, reduction="sum")) if accelerator is not None else None
    was_training = model.training
    model.eval()
    try:
        # the backbone is the model_fn; a fresh autocast context per batch (accelerate's is single-use)
        nats, tokens = nelbo_sums(model, dataset, spec, lambda i: derive_seed(seed, 77, i), batch_size=batch_size,
                                  device=device, rank=rank, world=world, reduce=reduce,
                                  autocast=accelerator.autocast if accelerator is not None else nullcontext)
    finally:
        model.train(was_training)
    return nats / max(tokens, 1) / math.log(2)
