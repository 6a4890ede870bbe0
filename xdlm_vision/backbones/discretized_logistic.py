"""Discretised logistic over N ordered intensity levels (the paper's U-Net output for pixels).

Level ``v`` in ``0..N-1`` sits at ``x_v = 2 v / (N - 1) - 1`` in [-1, 1] and owns the bin
``[x_v - h, x_v + h]`` with ``h = 1 / (N - 1)``. A logistic with mean ``mu`` and scale
``s = exp(log_scale)`` gives each level the CDF mass of its bin; the two edge bins take the tails
(level 0 gets ``(-inf, x_0 + h]``, level N-1 gets ``[x_{N-1} - h, inf)``), so the N masses
sum to exactly one and the whole distribution lives on the level grid (truncated to [-1, 1] in
the sense that no mass is lost outside it). Returned as log-masses, i.e. logits whose
``log_softmax`` is themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_LOG_SCALE = -7.0  # floor on log s; keeps 1/s finite when the net is very confident


def level_centres(num_levels: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(N,) bin centres 2 v / (N - 1) - 1 in [-1, 1]."""
    return torch.linspace(-1.0, 1.0, num_levels, device=device, dtype=dtype)


def discretized_logistic_logits(mean: torch.Tensor, log_scale: torch.Tensor, num_levels: int) -> torch.Tensor:
    """Log bin masses of a logistic: mean, log_scale (...,) -> (..., N), logsumexp over N = 0.

    Stable form of ``log(sigmoid(a) - sigmoid(b))`` for ``a > b``:
    ``-softplus(-a) - softplus(b) + log(-expm1(b - a))`` (no cancellation for tiny bins, no
    overflow for far tails). Computed in float32 at least, whatever the input dtype.
    """
    dtype = torch.promote_types(mean.dtype, torch.float32)
    mean = mean.to(dtype)[..., None]  # (..., 1)
    inv_s = torch.exp(-log_scale.to(dtype).clamp(min=MIN_LOG_SCALE))[..., None]  # (..., 1)
    half = 1.0 / (num_levels - 1)
    centres = level_centres(num_levels, mean.device, dtype)  # (N,)
    upper = (centres + half - mean) * inv_s  # (..., N): a, standardised upper bin edge
    lower = (centres - half - mean) * inv_s  # (..., N): b, standardised lower bin edge
    log_cdf_upper = -F.softplus(-upper)  # log sigmoid(a)
    log_sf_lower = -F.softplus(lower)  # log (1 - sigmoid(b))
    log_width = torch.log(-torch.expm1(-2.0 * half * inv_s))  # (..., 1): log(1 - e^{b - a})
    interior = log_cdf_upper + log_sf_lower + log_width  # (..., N)
    # edge bins take the tails: level 0 -> log sigmoid(a_0); level N-1 -> log(1 - sigmoid(b_{N-1}))
    first = log_cdf_upper[..., :1]
    last = log_sf_lower[..., -1:]
    return torch.cat([first, interior[..., 1:-1], last], dim=-1)  # (..., N)
