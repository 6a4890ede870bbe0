"""Training-time sampling of t: antithetic / stratified over the batch (low-variance NELBO)."""

from __future__ import annotations

import torch


def sample_times(
    batch: int,
    *,
    generator: torch.Generator | None = None,
    device=None,
    eps: float = 1e-3,
    antithetic: bool = True,
) -> torch.Tensor:
    """t (B,) in [eps, 1].

    ``antithetic=True`` draws one offset u0 ~ U[0, 1) and uses the stratified points
    (u0 + i / B) mod 1 (MDLM's "antithetic" sampling), so every batch covers [0, 1] evenly;
    otherwise i.i.d. uniforms. t = eps + (1 - eps) u keeps the 1 / beta_t weight finite.
    """
    gen_device = generator.device if generator is not None else "cpu"
    if antithetic:
        u0 = torch.rand((1,), generator=generator, device=gen_device, dtype=torch.float64)
        u = (u0 + torch.arange(batch, device=gen_device, dtype=torch.float64) / batch) % 1.0
    else:
        u = torch.rand((batch,), generator=generator, device=gen_device, dtype=torch.float64)
    return (eps + (1.0 - eps) * u).float().to(device if device is not None else gen_device)
