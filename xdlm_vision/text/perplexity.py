"""Validation NELBO and perplexity of a text model, with the core's loss (no copy of it).

For packed sequences x (B, L) the NELBO per token is estimated exactly as in training:
t ~ antithetic U(eps, 1) (``core.sample_times``), z_t ~ q(z_t | x) (``core.corrupt``), and the
continuous-time bound ``core.nelbo`` averaged over all tokens. Every batch/repeat uses its own
seeded generator, so the figure depends only on (model, data, seed, num_time_samples).

Perplexity = exp(NELBO in nats per token). The NELBO is an upper bound on -log p(x) per token,
so this is an upper bound on the model's true perplexity (the convention of MDLM/UDLM/XDLM
papers). Bits per token = NELBO / ln 2.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass
class PerplexityResult:
    nats_per_token: float  # mean NELBO per token (nats)
    bits_per_token: float  # nats_per_token / ln 2
    perplexity: float  # exp(nats_per_token), an upper bound on the true perplexity
    uniform_nats: float  # log N: the NELBO of a model that guesses uniformly
    num_tokens: int  # tokens evaluated (sequences x length x time samples / time samples)
    num_sequences: int
    num_time_samples: int  # t draws per sequence


@torch.no_grad()
def text_nelbo(
    model: nn.Module,
    dataset,
    space,
    schedule,
    *,
    batch_size: int = 64,
    num_time_samples: int = 1,
    seed: int = 0,
    time_conditioning: bool = False,
    conditional: bool = False,
    max_sequences: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """NELBO / perplexity of ``model`` on ``dataset`` (items (tokens (L,), label)).

    model: forward(z (B, L), class_labels (B,) | None, t (B,) | None) -> logits (B, L, N).
    conditional: pass the dataset labels to the model (else None = the null class).
    On CUDA the forward runs under bf16 autocast; the loss is float32. The estimate itself is
    :func:`xdlm_vision.evaluation.nelbo.monte_carlo_nelbo` (one replicate per time sample).
    """
    from xdlm_vision.errors import UserError
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo

    if batch_size < 1 or num_time_samples < 1:
        raise UserError("need --batch-size >= 1 and --time-samples >= 1")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    count = len(dataset) if max_sequences is None else min(len(dataset), int(max_sequences))
    if count == 0:
        raise UserError("no sequences to evaluate")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def model_fn(z, labels, t=None):
        with autocast:
            return model(z, labels, t if time_conditioning else None)  # (B, L, N)

    was_training = model.training
    model.eval()
    try:
        est = monte_carlo_nelbo(model_fn, dataset, space, schedule, num_t=num_time_samples, seed=seed,
                                batch_size=batch_size, conditional=conditional, pass_time=True,
                                max_examples=count, device=device, progress=progress)
    finally:
        model.train(was_training)
    nats = est.nats_per_token
    return PerplexityResult(
        nats_per_token=nats,
        bits_per_token=nats / math.log(2),
        perplexity=math.exp(min(nats, 700.0)),
        uniform_nats=math.log(space.num_tokens),
        num_tokens=est.num_tokens,
        num_sequences=count,
        num_time_samples=num_time_samples,
    )


def is_text_checkpoint(meta: dict) -> bool:
    """True for a checkpoint's config.json (or its ``tokenizer`` spec) from a text run."""
    spec = meta.get("tokenizer", meta)
    return isinstance(spec, dict) and spec.get("kind") == "text"


def checkpoint_perplexity(
    checkpoint: str | Path,
    data_path: str | None = None,
    *,
    batch_size: int = 64,
    num_time_samples: int = 1,
    seed: int = 0,
    max_sequences: int | None = None,
    ema: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> PerplexityResult:
    """Perplexity of a text checkpoint on its validation split (or on ``data_path``, used whole).

    The entry point for ``xdlm-vision eval nelbo`` on text checkpoints.
    """
    from xdlm_vision.core import TokenSpace, get_schedule
    from xdlm_vision.errors import UserError
    from xdlm_vision.text.dataset import evaluation_set_from_spec
    from xdlm_vision.training import load_checkpoint

    loaded = load_checkpoint(checkpoint, ema=ema, device=device)
    if not is_text_checkpoint(loaded.meta):
        raise UserError(f"--checkpoint {loaded.path} is not a text checkpoint")
    dataset = evaluation_set_from_spec(loaded.tokenizer_spec, data_path, loaded.class_names)
    cfg = loaded.config
    space = TokenSpace(num_tokens=loaded.num_tokens, k=cfg.diffusion.k)
    return text_nelbo(
        loaded.model, dataset, space, get_schedule(cfg.diffusion.schedule), batch_size=batch_size,
        num_time_samples=num_time_samples, seed=seed, time_conditioning=cfg.model.time_conditioning,
        conditional=loaded.num_classes > 0, max_sequences=max_sequences, device=device, progress=progress,
    )
