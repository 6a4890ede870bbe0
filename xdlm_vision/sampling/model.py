"""A checkpoint ready to sample from: device choice, loading, and the tokenizer that decodes it.

:func:`load_for_sampling` is :func:`xdlm_vision.checkpoints.load_checkpoint` (the one
:class:`~xdlm_vision.checkpoints.LoadedModel`, with its diffusion spec and ``model_fn``) plus the
image tokenizer opened through the tokenizer factory and checked against the model's vocabulary.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xdlm_vision.checkpoints import LoadedModel, load_checkpoint
from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers import load_tokenizer
from xdlm_vision.tokenizers.factory import check_weights_present, weights_spec


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cpu`` / ``cuda`` / ``cuda:1`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was requested but CUDA is not available; use --device cpu or auto")
    return device


def one_line(message: str, limit: int = 400) -> str:
    """Join a multi-line message into one line of at most ``limit`` characters."""
    text = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def checkpoint_tokenizer(spec: dict, num_tokens: int, device: torch.device,
                         tokenizer_checkpoint: str | Path | None = None):
    """The tokenizer a checkpoint decodes with; UserError if it is missing or its codebook does
    not match ``num_tokens``. ``tokenizer_checkpoint`` (``--tokenizer-checkpoint``) replaces the
    recorded weights path."""
    spec = dict(spec or {})
    if spec.get("kind") == "text":
        raise UserError("this is a text model (a text-LM checkpoint); sample it with `xdlm-vision sample-text`")
    if not spec.get("kind"):
        raise UserError("the checkpoint's config.json records no tokenizer; it cannot be decoded")
    if tokenizer_checkpoint is not None and weights_spec(spec) is None:
        raise UserError(f"--tokenizer-checkpoint: this checkpoint decodes with the {spec.get('kind')} tokenizer, "
                        f"which has no weights to replace; drop the flag")
    check_weights_present(spec, tokenizer_checkpoint)
    if tokenizer_checkpoint is not None and not Path(tokenizer_checkpoint).exists():
        raise UserError(f"--tokenizer-checkpoint {tokenizer_checkpoint}: no such file or directory")
    tok = load_tokenizer(spec, device=device, checkpoint=tokenizer_checkpoint)
    if int(tok.codebook_size) != int(num_tokens):
        raise UserError(
            f"tokenizer/codebook size mismatch: the model predicts {num_tokens} tokens but the tokenizer "
            f"has {tok.codebook_size} codes; pass the tokenizer the model was trained with "
            f"(--tokenizer-checkpoint)"
        )
    return tok


def load_for_sampling(
    checkpoint: str | Path | None = None,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
    k: float | None = None,
    tokenizer_checkpoint: str | Path | None = None,
    load_tokenizer: bool = True,
) -> LoadedModel:
    """Load ``checkpoint`` (a step dir, a run dir, or None for the packaged digits checkpoint).

    ``k`` overrides the trained mixing ratio for sampling experiments (``--k``); the default is
    the trained one. Missing/corrupt files and mismatched tokenizers raise UserError (one line).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    try:
        lm = load_checkpoint(checkpoint, ema=ema, device=device, k=k)
    except UserError as exc:  # keep whatever the loader said to one line
        raise UserError(one_line(str(exc))) from None
    if load_tokenizer:
        lm.tokenizer = checkpoint_tokenizer(lm.tokenizer_spec, lm.num_tokens, device, tokenizer_checkpoint)
    return lm
