"""One way for the rest of the toolkit to build a tokenizer and to record which one it used.

A *tokenizer spec* is a small JSON-serialisable dict stored in token manifests and model
checkpoints, so the same tokenizer can be rebuilt later:

- ``{"kind": "pixel", "levels": 256, "channels": 3}``
- ``{"kind": "llamagen", "size": "VQ-16" | null, "config": {...LlamaGenVQConfig fields...},
  "checkpoint": "/abs/path/vq_ds16_c2i.pt", "sha256": "<hex>"}``
- ``{"kind": "diffusers", "path": "/abs/path/to/vqmodel_dir"}``
- ``{"kind": "official", "num_codes": N, "inner": {...one of the above...}}``: an XDLM authors'
  model (``docs/official.md``); decoding clamps its special ids >= N to N - 1
- ``{"kind": "text", "tokenizer": "byte" | "/path/to/hf_tokenizer", "vocab_size": 257, ...}`` (text
  checkpoints; the rest of that spec describes the corpus, see :mod:`xdlm_vision.data.text.dataset`)

``load_tokenizer(spec)`` is the one factory that knows every kind (verifying the LlamaGen
checkpoint's SHA-256 and a text tokenizer's vocabulary size); ``tokenizer_spec(tok)`` produces a
spec; ``open_tokenizer(name, checkpoint)`` turns the CLI's ``--tokenizer`` +
``--tokenizer-checkpoint`` into a spec and loads it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.base import ImageTokenizer
from xdlm_vision.tokenizers.pixel import PixelTokenizer

TOKENIZER_KINDS = ("pixel", "llamagen", "diffusers", "text", "official")


def tokenizer_spec(tok: ImageTokenizer) -> dict:
    """JSON-serialisable description of ``tok`` that :func:`load_tokenizer` turns back into it."""
    from xdlm_vision.tokenizers.diffusers_vq import DiffusersVQTokenizer
    from xdlm_vision.tokenizers.llamagen import LlamaGenTokenizer

    if isinstance(tok, PixelTokenizer):
        return {"kind": "pixel", "levels": tok.levels, "channels": tok.channels}
    if isinstance(tok, LlamaGenTokenizer):
        return {
            "kind": "llamagen",
            "size": tok.size,
            "config": tok.config.to_dict(),
            "checkpoint": tok.checkpoint,
            "sha256": tok.checkpoint_sha256,
        }
    if isinstance(tok, DiffusersVQTokenizer):
        return {"kind": "diffusers", "path": tok.path}
    raise TypeError(f"no spec for tokenizer type {type(tok).__name__}")


WEIGHTED_KINDS = ("llamagen", "diffusers")  # tokenizers whose weights live in a file the spec points at


def weights_spec(spec: dict) -> dict | None:
    """The part of ``spec`` that names a weights file (the spec itself, or an official model's inner
    VQ), or None for tokenizers without weights (pixel, text)."""
    spec = spec or {}
    if spec.get("kind") == "official":
        spec = spec.get("inner") or {}
    return spec if spec.get("kind") in WEIGHTED_KINDS else None


def check_weights_present(spec: dict, checkpoint: str | Path | None = None) -> None:
    """UserError naming --tokenizer-checkpoint when the recorded weights file is gone and none is given."""
    weighted = weights_spec(spec)
    if weighted is None or checkpoint is not None:
        return
    recorded = weighted.get("checkpoint") or weighted.get("path")
    if not (recorded and Path(recorded).exists()):
        what = "an official model" if spec.get("kind") == "official" else "this checkpoint"
        raise UserError(f"{what} decodes with a {weighted['kind']} VQ tokenizer whose weights are not at "
                        f"{recorded!r}; pass them with --tokenizer-checkpoint PATH")


def load_tokenizer(
    spec: dict,
    device: str | torch.device = "cpu",
    checkpoint: str | Path | None = None,  # overrides the recorded path (weights moved); hash still checked
) -> ImageTokenizer:
    """Rebuild a tokenizer from :func:`tokenizer_spec`'s dict (any kind of :data:`TOKENIZER_KINDS`)."""
    kind = spec.get("kind")
    if kind == "pixel":
        return PixelTokenizer(levels=int(spec["levels"]), channels=int(spec["channels"]))
    if kind == "llamagen":
        from xdlm_vision.tokenizers.llamagen import load_llamagen_tokenizer

        path = checkpoint or spec.get("checkpoint")
        if not path:
            raise UserError("the tokenizer spec records no checkpoint; pass --tokenizer-checkpoint")
        arch = spec.get("size") or spec["config"]
        return load_llamagen_tokenizer(path, arch, device=device, expected_sha256=spec.get("sha256"))
    if kind == "diffusers":
        from xdlm_vision.tokenizers.diffusers_vq import load_diffusers_tokenizer

        return load_diffusers_tokenizer(checkpoint or spec["path"], device=device)
    if kind == "official":
        from xdlm_vision.tokenizers.official_clamp import ClampingTokenizer

        inner = dict(spec["inner"])
        check_weights_present(spec, checkpoint)
        return ClampingTokenizer(load_tokenizer(inner, device=device, checkpoint=checkpoint), int(spec["num_codes"]))
    if kind == "text":
        return _text_tokenizer(spec)
    raise UserError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZER_KINDS}")


def _text_tokenizer(spec: dict):
    from xdlm_vision.tokenizers.text import load_text_tokenizer

    tokenizer = load_text_tokenizer(spec["tokenizer"])
    if "vocab_size" in spec and int(tokenizer.vocab_size) != int(spec["vocab_size"]):
        raise UserError(f"tokenizer {spec['tokenizer']} now has {tokenizer.vocab_size} tokens but the checkpoint "
                        f"was trained with {spec['vocab_size']}; restore the original tokenizer files")
    return tokenizer


def open_tokenizer(
    tokenizer: str, checkpoint: str | Path | None, device: str | torch.device = "cpu"
) -> ImageTokenizer:
    """CLI entry: ``--tokenizer`` is "VQ-16", "VQ-8", a LlamaGen config JSON, or "diffusers";
    ``--tokenizer-checkpoint`` is the weights file (LlamaGen) or model directory (diffusers)."""
    if checkpoint is None:
        raise UserError("pass the tokenizer weights with --tokenizer-checkpoint PATH")
    if tokenizer == "diffusers":
        return load_tokenizer({"kind": "diffusers", "path": str(checkpoint)}, device=device)
    return load_tokenizer({"kind": "llamagen", "size": tokenizer, "checkpoint": str(checkpoint)}, device=device)
