"""Exponential moving average of model weights, kept in float32 beside the trained model.

``decay_n = min(decay, (1 + n) / (10 + n))`` after ``n`` updates when warm-up is on, so early
averages are not dominated by the random initialisation (the TensorFlow/DiT convention). Buffers
are copied, not averaged.
"""

from __future__ import annotations

import torch
from torch import nn


def ema_decay_at(num_updates: int, decay: float, warmup: bool = True) -> float:
    """Effective decay of update number ``num_updates`` (0-based)."""
    if not warmup:
        return decay
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class EMA:
    """EMA of a module's floating-point parameters.

    ``shadow`` is a float32 copy of the module (same structure, eval mode, no gradients); use it
    directly for validation and sampling. ``num_updates`` is saved with the training state.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        import copy

        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).float().eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Blend ``model``'s current weights into the shadow; returns the decay used."""
        d = ema_decay_at(self.num_updates, self.decay, self.warmup)
        ema_params = [p for p in self.shadow.parameters()]
        cur_params = [p.detach().float() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, cur_params, 1.0 - d)  # ema += (1 - d) (cur - ema)
        for b_ema, b_cur in zip(self.shadow.buffers(), model.buffers()):
            b_ema.copy_(b_cur)
        self.num_updates += 1
        return d

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow.load_state_dict(state, strict=True)
