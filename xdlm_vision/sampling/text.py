"""Sampling text with the core samplers (ancestral or confidence), keeping the trajectory.

Sample i uses its own generator seeded with ``seed + i`` (``core.seeded_generators``), so a text
depends only on its seed, not on how many are drawn together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from xdlm_vision.build import make_model_fn
from xdlm_vision.core import SAMPLERS, DiffusionSpec, sample, seeded_generators
from xdlm_vision.errors import UserError


@dataclass
class TextSamples:
    tokens: torch.Tensor  # (B, L) int64 final tokens (no mask left)
    texts: list[str]  # decoded samples (end-of-text ids written as the tokenizer shows them)
    steps: list  # SamplerStep per step, tensors on CPU ([] unless keep_steps)


@torch.no_grad()
def generate_text(
    model: nn.Module,
    tokenizer,
    spec: DiffusionSpec,
    *,
    num_samples: int,
    seq_len: int,
    num_steps: int,
    sampler: str = "ancestral",
    seed: int = 0,
    class_labels: torch.Tensor | None = None,
    cfg: float = 0.0,
    null_class: int | None = None,
    keep_steps: bool = False,
    device: str | torch.device = "cpu",
) -> TextSamples:
    """Draw ``num_samples`` sequences of ``seq_len`` tokens with ``num_steps`` sampler steps.

    model: forward(z (B, L), class_labels (B,) | None, t (B,) | None) -> logits (B, L, N);
    ``spec`` the diffusion spec (token space, schedule, time conditioning) of the checkpoint.
    """
    if sampler not in SAMPLERS:
        raise UserError(f"unknown --sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    device = torch.device(device)
    model_fn = make_model_fn(model, device)
    kwargs = {"num_samples": num_samples, "seq_len": seq_len, "space": spec.space, "num_steps": num_steps,
              "class_labels": class_labels, "cfg": cfg, "null_class": null_class,
              "generator": seeded_generators([seed + i for i in range(num_samples)]), "device": device,
              "track_x0": keep_steps, "pass_time": spec.time_conditioning}
    if sampler == "ancestral":
        kwargs["schedule"] = spec.schedule
    steps = SAMPLERS[sampler](model_fn, **kwargs)
    kept = [_to_cpu(st) for st in steps] if keep_steps else []
    tokens = (kept[-1].z_s if keep_steps else sample(steps)).cpu()  # (B, L)
    texts = [tokenizer.decode(row) for row in tokens.tolist()]
    return TextSamples(tokens, texts, kept)


def _to_cpu(step):
    return replace(
        step, z_t=step.z_t.cpu(), z_s=step.z_s.cpu(),
        x0_argmax=None if step.x0_argmax is None else step.x0_argmax.cpu(),
        created=step.created.cpu(), refined=step.refined.cpu(), remasked=step.remasked.cpu(),
    )
