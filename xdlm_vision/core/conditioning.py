"""Sampling conditioned on known tokens: inpainting, outpainting, region re-generation, variations.

A :class:`KnownTokens` tells a sampler which positions to hold at given ids. Three sets of
positions (all (B, L) boolean):

- ``keep``:   positions whose ids are given (the rest is generated);
- ``revise``: a subset of ``keep`` (e.g. a border around the region) that the sampler starts at
  the given ids but may move like any other token — only meaningful for k > 0, where the uniform
  component of XDLM lets a token turn into another one (an MDLM never revises a placed token);
- ``held = keep & ~revise``: positions equal to the given ids at every step, whatever the model says.

What the samplers do with it (see docs/editing.md):

- ancestral: the state starts as the prior draw (or the re-noised input, for ``t_start < 1``) with
  every ``keep`` position set to its id; after every posterior step the ``held`` positions are set
  back to their ids. The free positions are therefore drawn, at every step, from the model's reverse
  transition p(z_s | z_t) given a z_t in which the known tokens are clean. This is the conditioning
  MaskGIT and MDLM use for inpainting; the held tokens are reproduced exactly (a hard constraint),
  and for an empty ``keep`` the sampler is bit-identical to unconditioned sampling with the same
  seeds.
- confidence: known positions start at their ids instead of [MASK]; the absorb schedule counts the
  free positions of each row only, and refinement (k > 0) never touches ``held`` positions.

Partial re-noising ("variations", ``--strength t``): :func:`renoise` draws z_t ~ q(z_t | x0) with
the forward process at time t for the positions that are not held; an ancestral sampler started at
``t_start = t`` then runs the reverse process from there (any class may be requested: a class swap).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.core.process import TokenSpace, corrupt


@dataclass(frozen=True)
class KnownTokens:
    """Tokens a sampler must respect (all tensors (B, L), on any device)."""

    ids: torch.Tensor  # (B, L) int64 data-token ids; values at positions outside ``keep`` are ignored
    keep: torch.Tensor  # (B, L) bool: True = the id is given
    revise: torch.Tensor | None = None  # (B, L) bool subset of keep that may be revised (k > 0)

    @property
    def held(self) -> torch.Tensor:
        """(B, L) bool: positions fixed at their ids at every step."""
        return self.keep if self.revise is None else self.keep & ~self.revise

    def check(self, num_samples: int, seq_len: int, space: TokenSpace) -> None:
        """Raise ValueError unless the shapes, dtypes and ids fit a batch of (num_samples, seq_len)."""
        shape = (num_samples, seq_len)
        if tuple(self.ids.shape) != shape or tuple(self.keep.shape) != shape:
            raise ValueError(f"known ids and keep must have shape {shape}, got "
                             f"{tuple(self.ids.shape)} and {tuple(self.keep.shape)}")
        if self.keep.dtype != torch.bool or (self.revise is not None and self.revise.dtype != torch.bool):
            raise TypeError("keep and revise must be boolean tensors")
        if self.ids.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"known ids must be integer, got {self.ids.dtype}")
        given = self.ids[self.keep]
        if given.numel() and (int(given.min()) < 0 or int(given.max()) >= space.num_tokens):
            raise ValueError(f"known ids must be data tokens in [0, {space.num_tokens}); the mask cannot be held")
        if self.revise is not None:
            if tuple(self.revise.shape) != shape:
                raise ValueError(f"revise must have shape {shape}, got {tuple(self.revise.shape)}")
            if bool((self.revise & ~self.keep).any()):
                raise ValueError("revise must be a subset of keep (only given tokens can be revised)")
            if space.k == 0 and bool(self.revise.any()):
                raise ValueError("revising known tokens needs k > 0: a k = 0 (MDLM) model never moves a placed token")

    def to(self, device) -> KnownTokens:
        revise = None if self.revise is None else self.revise.to(device)
        return KnownTokens(self.ids.to(device).long(), self.keep.to(device), revise)

    def start(self, z: torch.Tensor) -> torch.Tensor:
        """Initial state: every ``keep`` position (held or revisable) set to its id. z (B, L)."""
        return torch.where(self.keep, self.ids, z)

    def hold(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, L) with the ``held`` positions put back to their ids."""
        return torch.where(self.held, self.ids, z)


def border(keep: torch.Tensor, grid_shape: tuple[int, int], width: int) -> torch.Tensor:
    """Known cells within ``width`` cells (Chebyshev distance) of a free cell.

    keep: (B, L) bool over a row-major (h, w) grid. Returns (B, L) bool, a subset of ``keep``;
    ``width = 0`` gives no border. Used to let the sampler repair the seam around a region.
    """
    h, w = grid_shape
    if keep.shape[-1] != h * w:
        raise ValueError(f"keep has {keep.shape[-1]} positions, the grid {h}x{w} has {h * w}")
    if width < 0:
        raise ValueError(f"border width must be >= 0, got {width}")
    if width == 0:
        return torch.zeros_like(keep)
    free = (~keep).reshape(-1, 1, h, w).float()  # (B, 1, h, w)
    near = torch.nn.functional.max_pool2d(free, 2 * width + 1, stride=1, padding=width)  # (B, 1, h, w)
    return keep & (near.reshape(keep.shape) > 0)


def renoise(
    x0: torch.Tensor,
    t: float,
    space: TokenSpace,
    schedule,
    known: KnownTokens | None = None,
    generator=None,
) -> torch.Tensor:
    """z_t ~ q(z_t | x0) at one time t in (0, 1] for every sample, held positions kept clean.

    x0: (B, L) int64 data tokens. With t = 1 the draw is from the prior pi (the input is forgotten).
    ``generator``: a Generator or one per sample, as for the samplers.
    """
    if not (0.0 < t <= 1.0):
        raise ValueError(f"re-noising strength t must lie in (0, 1], got {t}")
    times = torch.full((x0.shape[0],), float(t), dtype=torch.float64, device=x0.device)  # (B,)
    z = corrupt(x0, times, space, schedule, generator)  # (B, L)
    return z if known is None else known.hold(z)


__all__ = ["KnownTokens", "border", "renoise"]
