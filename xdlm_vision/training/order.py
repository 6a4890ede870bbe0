"""Deterministic data order: the examples of optimizer step ``s`` depend only on (seed, s).

Epoch ``e`` is a permutation of the training set drawn from ``torch.Generator().manual_seed(seed
+ e)``; it is cut into global batches of ``batch_size`` examples (the incomplete tail is dropped).
Every global batch is split into ``grad_accum`` micro-batches and each micro-batch into one
contiguous slice per process. Resuming at step ``s`` therefore just starts from step ``s``: no
loader state has to be saved, and an interrupted-then-resumed run sees exactly the same examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from xdlm_vision.errors import UserError


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, step, rank, ...), stable across platforms."""
    digest = hashlib.blake2b("/".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def cpu_generator(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)



@dataclass(frozen=True)
class DataCursor:
    epoch: int  # epoch of step s
    batch: int  # index of step s's global batch within that epoch


@dataclass(frozen=True)
class StepOrder:
    num_examples: int  # size of the training set
    batch_size: int  # global batch per optimizer step
    grad_accum: int = 1  # micro-batches per optimizer step
    world_size: int = 1  # processes
    rank: int = 0  # this process
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size % (self.grad_accum * self.world_size):
            raise UserError(
                f"training.batch_size ({self.batch_size}) must be divisible by grad_accum x processes "
                f"({self.grad_accum} x {self.world_size})"
            )
        if self.num_examples < self.batch_size:
            raise UserError(
                f"the training set has {self.num_examples} examples, fewer than one global batch "
                f"(training.batch_size={self.batch_size}); lower training.batch_size"
            )

    @property
    def batches_per_epoch(self) -> int:
        return self.num_examples // self.batch_size

    @property
    def micro_batch(self) -> int:
        """Examples per process per micro-batch."""
        return self.batch_size // (self.grad_accum * self.world_size)

    def cursor(self, step: int) -> DataCursor:
        return DataCursor(step // self.batches_per_epoch, step % self.batches_per_epoch)

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_examples, generator=g)  # (num_examples,)

    def micro_batches(self, step: int) -> list[list[int]]:
        """This process's example indices for each micro-batch of optimizer step ``step``."""
        return list(_micro_slices(self, step, self.permutation(self.cursor(step).epoch)))


def _micro_slices(order: StepOrder, step: int, perm: torch.Tensor):
    """Yield this process's index lists for the micro-batches of ``step`` given the epoch's ``perm``."""
    start = order.cursor(step).batch * order.batch_size
    for a in range(order.grad_accum):
        micro0 = start + a * order.batch_size // order.grad_accum + order.rank * order.micro_batch
        yield perm[micro0 : micro0 + order.micro_batch].tolist()


class StepBatchSampler(Sampler):
    """Batch sampler for ``DataLoader(batch_sampler=...)`` yielding the micro-batches of steps
    ``start_step, start_step + 1, ..., end_step - 1`` for this process."""

    def __init__(self, order: StepOrder, start_step: int, end_step: int) -> None:
        self.order = order
        self.start_step = start_step
        self.end_step = end_step

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.order.grad_accum

    def __iter__(self):
        perm_cache: dict[int, torch.Tensor] = {}
        for step in range(self.start_step, self.end_step):
            epoch = self.order.cursor(step).epoch
            if epoch not in perm_cache:  # one permutation per epoch, not per step
                perm_cache.clear()
                perm_cache[epoch] = self.order.permutation(epoch)
            yield from _micro_slices(self.order, step, perm_cache[epoch])
