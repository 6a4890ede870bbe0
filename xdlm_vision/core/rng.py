"""Random numbers that depend only on each sample's own seed.

Every public sampler takes ``generator``: ``None`` (global RNG), one ``torch.Generator`` (fast,
but draws depend on the batch layout), or a list of one Generator per sample. With a list, each
sample's random numbers come from its own stream in a fixed order, so an image depends only on its
seed — not on the batch size, the other samples, or the number of devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def seeded_generators(seeds: Sequence[int], device="cpu") -> list[torch.Generator]:
    """One Generator per sample, seeded with ``seeds[i]`` (CPU generators work for any device)."""
    gens = []
    for s in seeds:
        g = torch.Generator(device="cpu")
        g.manual_seed(int(s))
        gens.append(g)
    return gens


class RandomSource:
    """Uniform draws for a batch of ``batch`` samples from one or per-sample generators."""

    def __init__(self, generator, batch: int, device=None) -> None:
        self.batch = batch
        self.device = device
        if isinstance(generator, Sequence) and not isinstance(generator, torch.Generator):
            if len(generator) != batch:
                raise ValueError(f"got {len(generator)} per-sample generators for a batch of {batch}")
            self.per_sample = list(generator)
        else:
            self.per_sample = None
            self.generator = generator

    def uniform(self, per_sample_shape, dtype=torch.float64) -> torch.Tensor:
        """U[0, 1) of shape (B, *per_sample_shape)."""
        shape = (self.batch, *per_sample_shape)
        if self.per_sample is None:
            gen_device = self.generator.device if self.generator is not None else self.device
            u = torch.rand(shape, generator=self.generator, dtype=dtype, device=gen_device)
            return u.to(self.device)
        rows = [torch.rand(tuple(per_sample_shape), generator=g, dtype=dtype, device=g.device) for g in self.per_sample]
        return torch.stack(rows).to(self.device)

    def uniform_ragged(self, counts: Sequence[int], dtype=torch.float64) -> torch.Tensor:
        """Concatenated U[0, 1) draws: ``counts[b]`` numbers from sample b's stream, in batch order."""
        total = int(sum(counts))
        if self.per_sample is None:
            gen_device = self.generator.device if self.generator is not None else self.device
            return torch.rand((total,), generator=self.generator, dtype=dtype, device=gen_device).to(self.device)
        parts = [torch.rand((int(c),), generator=g, dtype=dtype, device=g.device) for g, c in zip(self.per_sample, counts)]
        return torch.cat(parts).to(self.device) if parts else torch.empty(0, dtype=dtype, device=self.device)
