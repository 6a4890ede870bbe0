"""The XDLM authors' noise process expressed exactly in this toolkit's core (``docs/official.md``).

The official code works over all V = N + 3 ids of its vocabulary: N codes, [MASK] = N and two
special ids N + 1, N + 2 that no image contains. Its uniform noise and its prior draw from all V ids
(mask and special ids included) with the mixing constant k1 / V. That is the core's XDLM process
(:class:`~xdlm_vision.core.TokenSpace`) with

    N' = N + 2 data states (codes, then the two special ids), mask id N',
    k' = k1 (N + 2) / (N + 3),

because then every data state gets prior mass k' / N' = k1 / V and the mask 1 - k' = 1 - k1 + k1 / V,
exactly the official stationary distribution. Ids and logit columns are permuted between the two
layouts (official N + 1, N + 2 -> ours N, N + 1; official mask N -> ours N'); the official schedule
is ``loglinear`` (alpha_t = 1 - (1 - 1e-3) t). Before decoding, ids >= N (the special ids, which
the model may sample) are clamped to N - 1, as the official sampler does, and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.backbones.official_dit import official_ids, our_columns
from xdlm_vision.core import TokenSpace
from xdlm_vision.tokenizers.official_clamp import ClampingTokenizer, clamp_for_decode

__all__ = ["ALGOS", "DEFAULT_K1", "SCHEDULE", "ClampingTokenizer", "OfficialProcess", "clamp_for_decode"]

SCHEDULE = "loglinear"
ALGOS = ("mdlm", "udlm", "xdlm")
DEFAULT_K1 = {"mdlm": 0.0, "udlm": 1.0, "xdlm": 0.1}  # used only when the file does not say


@dataclass(frozen=True)
class OfficialProcess:
    """The official process for N codes and mixing constant k1 (0 = MDLM, 1 = UDLM)."""

    num_codes: int  # N codes; official mask id N, special ids N + 1, N + 2
    k1: float  # the official k1 (uniform share, spread over all V ids)

    def __post_init__(self) -> None:
        # contract checks: the importer has already turned a bad file or flag into a UserError
        if self.num_codes < 2:
            raise ValueError(f"the official vocabulary needs at least 2 codes, got {self.num_codes}")
        if not 0.0 <= float(self.k1) <= 1.0:
            raise ValueError(f"k1 must lie in [0, 1], got {self.k1}")

    @property
    def vocab_size(self) -> int:
        """V = N + 3."""
        return self.num_codes + 3

    @property
    def num_states(self) -> int:
        """N' = N + 2 data states of the core's process."""
        return self.num_codes + 2

    @property
    def k_prime(self) -> float:
        """k' = k1 (N + 2) / (N + 3)."""
        return float(self.k1) * (self.num_codes + 2) / (self.num_codes + 3)

    @property
    def space(self) -> TokenSpace:
        return TokenSpace(self.num_states, self.k_prime)

    def to_official(self, z: torch.Tensor) -> torch.Tensor:
        """Our ids (any shape, 0..N') -> official ids (mask N' -> N, N -> N + 1, N + 1 -> N + 2)."""
        return official_ids(z, self.num_codes)

    def to_ours(self, ids: torch.Tensor) -> torch.Tensor:
        """Official ids (0..N + 2) -> ours: the inverse of :meth:`to_official`."""
        n = self.num_codes
        out = torch.where(ids > n, ids - 1, ids)
        return torch.where(ids == n, torch.full_like(ids, n + 2), out)

    def our_logits(self, official_logits: torch.Tensor) -> torch.Tensor:
        """(..., V) official logits -> (..., N') ours: mask column dropped, special columns after the codes."""
        cols = torch.tensor(our_columns(self.num_codes), device=official_logits.device)
        return official_logits.index_select(-1, cols)

    def to_official_columns(self, ours: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(..., N' or N' + 1) per-state values in our order -> (..., V) in the official column order.

        With N' + 1 columns the last one (our mask) goes to the official mask column; with N'
        columns the mask column is ``fill``.
        """
        n = self.num_codes
        out = torch.full((*ours.shape[:-1], self.vocab_size), fill, dtype=ours.dtype, device=ours.device)
        out[..., our_columns(n)] = ours[..., : self.num_states]
        if ours.shape[-1] == self.num_states + 1:
            out[..., n] = ours[..., -1]
        return out
