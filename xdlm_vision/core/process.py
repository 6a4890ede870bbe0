"""The XDLM forward noise process on N data tokens plus one [MASK] state.

State space: data tokens 0..N-1 and the mask m = N. The stationary distribution is
``pi_e = k / N`` for data tokens and ``pi_m = 1 - k``: uniform noise (weight k) is spread over the
*data tokens only*, absorbing noise (weight 1 - k) goes to the mask. k = 0 is MDLM, k = 1 is UDLM.

Forward marginal for a clean distribution x over data tokens (x_m = 0):
    q(z_t = e | x) = f_t(x, e) = alpha_t x_e + beta_t pi_e,        beta_t = 1 - alpha_t.
Sampling from it: keep the token with probability alpha_t, otherwise draw from pi (a uniform data
token with probability k, the mask with probability 1 - k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.core.rng import RandomSource


@dataclass(frozen=True)
class TokenSpace:
    """N data tokens, mask id N, mixing ratio k in [0, 1]."""

    num_tokens: int  # N, number of data tokens
    k: float = 0.1  # weight of uniform noise in the stationary distribution (0 = MDLM, 1 = UDLM)

    def __post_init__(self) -> None:
        if int(self.num_tokens) < 2:
            raise ValueError(f"TokenSpace needs num_tokens >= 2, got {self.num_tokens}")
        if not (0.0 <= float(self.k) <= 1.0):
            raise ValueError(f"k must lie in [0, 1], got {self.k}")

    @property
    def mask_id(self) -> int:
        return self.num_tokens

    @property
    def num_states(self) -> int:
        """N + 1: data tokens plus the mask."""
        return self.num_tokens + 1

    @property
    def data_prior(self) -> float:
        """pi_e = k / N for every data token e."""
        return self.k / self.num_tokens

    @property
    def mask_prior(self) -> float:
        """pi_m = 1 - k."""
        return 1.0 - self.k

    def stationary(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """pi as a dense vector (N + 1,) — for analysis and tests, never on the hot path."""
        pi = torch.full((self.num_states,), self.data_prior, dtype=dtype, device=device)
        pi[self.mask_id] = self.mask_prior
        return pi

    def prior_of(self, z: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
        """pi evaluated at the states z (any shape) -> same shape, float."""
        mask = torch.tensor(self.mask_prior, dtype=dtype, device=z.device)
        data = torch.tensor(self.data_prior, dtype=dtype, device=z.device)
        return torch.where(z == self.mask_id, mask, data)


def forward_marginal(x: torch.Tensor, alpha: torch.Tensor, space: TokenSpace) -> torch.Tensor:
    """Dense q(z_t | x) = alpha x + (1 - alpha) pi over all N + 1 states.

    x: (..., N) distribution over data tokens; alpha broadcastable to x[..., 0].
    Returns (..., N + 1). For analysis and tests; training never materialises this.
    """
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)[..., None]  # (..., 1)
    x_full = torch.nn.functional.pad(x, (0, 1))  # (..., N + 1), x_m = 0
    return alpha * x_full + (1 - alpha) * space.stationary(x.dtype, x.device)


def sample_prior(
    shape: tuple[int, ...], space: TokenSpace, generator=None, device=None
) -> torch.Tensor:
    """Draw z_1 ~ pi independently per position. ``generator``: see :class:`RandomSource`."""
    rng = RandomSource(generator, shape[0], device)
    u = rng.uniform(shape[1:], dtype=torch.float64)  # (B, ...)
    return _draw_from_pi(u, rng, space)


def _draw_from_pi(u: torch.Tensor, rng: RandomSource, space: TokenSpace) -> torch.Tensor:
    """Given u ~ U[0,1) per position, map to a draw from pi: mask if u >= k, else a uniform data
    token. The data token is read off the same u (u / k is uniform on [0, 1) given u < k), so one
    uniform number per position suffices and the draw depends only on this sample's stream."""
    k = space.k
    if k <= 0:
        return torch.full(u.shape, space.mask_id, dtype=torch.long, device=u.device)
    token = torch.floor(u / k * space.num_tokens).long().clamp_max(space.num_tokens - 1)
    return torch.where(u < k, token, torch.full_like(token, space.mask_id))


def corrupt(
    x0: torch.Tensor,
    t: torch.Tensor,
    space: TokenSpace,
    schedule,
    generator=None,
) -> torch.Tensor:
    """Sample z_t ~ q(z_t | x0): keep with probability alpha_t, else draw from pi.

    x0: (B, L) int64 data tokens; t: (B,) times in [0, 1]. Returns z_t (B, L) int64.
    Uses two uniform numbers per position from ``generator`` (a Generator or one per sample).
    """
    if x0.ndim < 2:
        raise ValueError(f"corrupt expects x0 of shape (B, L, ...), got {tuple(x0.shape)}")
    rng = RandomSource(generator, x0.shape[0], x0.device)
    alpha = schedule.alpha(t.double()).reshape(-1, *([1] * (x0.ndim - 1)))  # (B, 1)
    u_keep = rng.uniform(x0.shape[1:], dtype=torch.float64)  # (B, L)
    u_noise = rng.uniform(x0.shape[1:], dtype=torch.float64)  # (B, L)
    noise = _draw_from_pi(u_noise, rng, space)  # (B, L)
    return torch.where(u_keep < alpha, x0, noise)
