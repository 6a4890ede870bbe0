"""From a run config to the objects every consumer shares, built once: backbone, diffusion spec.

* :class:`~xdlm_vision.core.objective.DiffusionSpec` (re-exported here) bundles what the objective and the samplers need besides the model: the
  token space (N data tokens, mixing ratio k), the alpha_t schedule and whether the backbone sees
  t. :func:`diffusion_spec` is the only place a run config (and an optional sampling/evaluation
  ``k`` override) becomes one; trainer, validation, ``sample``, ``eval``, ``sample-text`` and the
  demo all receive it from here (through :class:`~xdlm_vision.checkpoints.LoadedModel` once a
  checkpoint is loaded). Ranges are checked at the edge (config validation, command flags); the
  core's own ValueError stays as a contract check.
* :func:`build_model` builds the backbone of a config for a dataset's vocabulary/grid/classes.
* :func:`make_model_fn` wraps a backbone as the ``model_fn`` the samplers and the NELBO call.

See docs/architecture.md for where this sits among the layers.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from xdlm_vision.config import Config
from xdlm_vision.core import TokenSpace, get_schedule
from xdlm_vision.core.objective import DiffusionSpec
from xdlm_vision.data.meta import DataMeta

ModelFn = Callable[..., torch.Tensor]
__all__ = ["DiffusionSpec", "ModelFn", "build_model", "count_model_parameters", "diffusion_spec", "make_model_fn"]


def diffusion_spec(cfg: Config, num_tokens: int, k: float | None = None) -> DiffusionSpec:
    """The spec of run config ``cfg`` over ``num_tokens`` data tokens (``k`` overrides the trained k)."""
    spec = DiffusionSpec(TokenSpace(int(num_tokens), float(cfg.diffusion.k)), get_schedule(cfg.diffusion.schedule),
                         bool(cfg.model.time_conditioning))
    return spec.with_k(k)


def build_model(cfg: Config, meta: DataMeta) -> nn.Module:
    """The backbone of ``cfg`` for ``meta``'s vocabulary/grid/classes (float32, train mode)."""
    from xdlm_vision.backbones import build_backbone
    from xdlm_vision.errors import UserError

    for key, value in cfg.model.overrides.items():  # sizes must be positive; rates (dropout) may be 0
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                value < 0 or (value == 0 and "drop" not in key) or not math.isfinite(value)):
            raise UserError(f"config key model.overrides.{key} must be a finite number > 0"
                            f"{' (>= 0 for a rate)' if 'drop' in key else ''}, got {value!r}")
    try:
        return build_backbone(
            cfg.model.kind,
            num_tokens=meta.num_tokens,
            grid_shape=tuple(meta.grid_shape),
            num_classes=meta.num_classes,
            size=cfg.model.size,
            time_conditioning=cfg.model.time_conditioning,
            **cfg.model.overrides,
        )
    except UserError:
        raise
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, AssertionError) as exc:
        # a bad model.overrides value (or combination) the backbone constructor refuses
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"cannot build the {cfg.model.kind} {cfg.model.size} backbone with model.overrides="
                        f"{cfg.model.overrides}: {exc.__class__.__name__}: {detail}") from None


def count_model_parameters(cfg: Config, meta: DataMeta) -> int:
    """Parameter count of ``cfg``'s backbone, built on the meta device (no memory, no data)."""
    from xdlm_vision.backbones import count_parameters

    try:
        with torch.device("meta"):
            return count_parameters(build_model(cfg, meta))
    except (NotImplementedError, RuntimeError):  # an op without a meta kernel: build for real
        return count_parameters(build_model(cfg, meta))


def make_model_fn(model: nn.Module, device: torch.device | str, autocast: bool | None = None) -> ModelFn:
    """Wrap a backbone as ``model_fn(z (B, L), labels (B,) | None, t (B,) | None) -> logits (B, L, N)``.

    Inference only (no autograd). On CUDA the forward runs under bf16 autocast (``autocast=None``
    means "on CUDA only"); the logits come back in float32 for the sampler's and the loss's
    arithmetic. The one wrapper used by sampling, the trainer's preview and evaluation.
    """
    device = torch.device(device)
    use_amp = device.type == "cuda" if autocast is None else autocast

    @torch.no_grad()
    def model_fn(z: torch.Tensor, labels: torch.Tensor | None, t: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            return model(z, labels, t).float()  # (B, L, N)

    return model_fn

