"""Recording a sampler's per-step states as a trajectory of token grids.

A sampler yields :class:`~xdlm_vision.core.samplers.SamplerStep` objects with flat (B, L) tensors.
:class:`TrajectoryRecorder` keeps, for each step, the state *after* the step (``z_s``) and the three
transition masks, reshaped to the token grid (B, h, w) and copied to the CPU. One frame per step:
frame ``i`` shows the state after step ``i`` and the transitions that step made.

Transition names follow the sampler: ``created`` = mask -> token, ``refined`` = token -> a
different token, ``remasked`` = token -> mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from xdlm_vision.core.samplers import SamplerStep
from xdlm_vision.errors import UserError


@dataclass(frozen=True)
class StepCounts:
    """Token counts of one step (summed over the samples it covers)."""

    created: int  # mask -> token
    refined: int  # token -> different token
    remasked: int  # token -> mask
    masked: int  # positions still masked after the step

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "refined": self.refined, "remasked": self.remasked, "masked": self.masked}


@dataclass
class TrajectoryFrame:
    """One sampling step for a set of samples; every tensor is (B, h, w) on the CPU."""

    step: int  # 0-based step index
    num_steps: int
    t: float  # time before the step
    s: float  # time after the step
    tokens: torch.Tensor  # int64 state after the step (mask id = mask_id)
    created: torch.Tensor  # bool
    refined: torch.Tensor  # bool
    remasked: torch.Tensor  # bool
    mask_id: int
    region: torch.Tensor | None = None  # bool (B, h, w): the edited cells, outlined when drawn (editing)

    @property
    def num_samples(self) -> int:
        return self.tokens.shape[0]

    @property
    def counts(self) -> StepCounts:
        """Totals over all samples of this frame."""
        return StepCounts(
            int(self.created.sum()), int(self.refined.sum()), int(self.remasked.sum()),
            int((self.tokens == self.mask_id).sum()),
        )

    def sample_counts(self, i: int) -> StepCounts:
        """Counts of sample ``i`` alone."""
        return StepCounts(
            int(self.created[i].sum()), int(self.refined[i].sum()), int(self.remasked[i].sum()),
            int((self.tokens[i] == self.mask_id).sum()),
        )


@dataclass
class Trajectory:
    """All frames of one sampling run, in step order."""

    frames: list[TrajectoryFrame] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def counts(self) -> list[StepCounts]:
        """Per-step totals (one entry per frame)."""
        return [f.counts for f in self.frames]

    @property
    def num_samples(self) -> int:
        return self.frames[0].num_samples if self.frames else 0


def frame_from_step(step: SamplerStep, grid_shape: Sequence[int], mask_id: int, max_samples: int | None = None) -> TrajectoryFrame:
    """Reshape a :class:`SamplerStep` (B, L) to the token grid (B', h, w) on the CPU.

    ``max_samples`` keeps only the first samples of the batch (all when None).
    """
    grid = tuple(int(g) for g in grid_shape)
    b = step.z_s.shape[0] if max_samples is None else min(max_samples, step.z_s.shape[0])

    def grid_of(x: torch.Tensor) -> torch.Tensor:
        return x[:b].detach().to("cpu").reshape(b, *grid).clone()  # (B', h, w)

    if step.z_s.shape[1] != _prod(grid):
        raise UserError(f"grid {grid} does not hold the sampler's {step.z_s.shape[1]} tokens per sample")
    return TrajectoryFrame(
        step=step.step, num_steps=step.num_steps, t=float(step.t), s=float(step.s),
        tokens=grid_of(step.z_s), created=grid_of(step.created), refined=grid_of(step.refined),
        remasked=grid_of(step.remasked), mask_id=int(mask_id),
    )


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for v in shape:
        out *= int(v)
    return out


class TrajectoryRecorder:
    """Collects frames from a stream of steps; use :meth:`watch` to record while passing steps on.

    Example::

        rec = TrajectoryRecorder(grid_shape=(8, 8), mask_id=17, max_samples=8)
        final = sample(rec.watch(ancestral_sampler(...)))
        traj = rec.trajectory
    """

    def __init__(self, grid_shape: Sequence[int], mask_id: int, max_samples: int | None = None,
                 region: torch.Tensor | None = None) -> None:
        self.grid_shape = tuple(grid_shape)
        self.mask_id = int(mask_id)
        self.max_samples = max_samples
        self.region = region  # bool (B, h, w) edited cells of every frame (editing), or None
        self.trajectory = Trajectory()

    def add(self, step: SamplerStep) -> TrajectoryFrame:
        frame = frame_from_step(step, self.grid_shape, self.mask_id, self.max_samples)
        if self.region is not None:
            frame.region = self.region[: frame.num_samples].cpu()
        self.trajectory.frames.append(frame)
        return frame

    def watch(self, steps: Iterable[SamplerStep]) -> Iterator[SamplerStep]:
        """Yield ``steps`` unchanged, recording each one."""
        for step in steps:
            self.add(step)
            yield step


def record_trajectory(
    steps: Iterable[SamplerStep], grid_shape: Sequence[int], mask_id: int, max_samples: int | None = None
) -> Trajectory:
    """Drain ``steps`` and return every frame."""
    rec = TrajectoryRecorder(grid_shape, mask_id, max_samples)
    for step in steps:
        rec.add(step)
    return rec.trajectory
