"""LlamaGen VQ tokenizer behind the :class:`~xdlm_vision.tokenizers.base.ImageTokenizer` interface.

>>> tok = load_llamagen_tokenizer("vq_ds16_c2i.pt", "VQ-16", device="cuda")  # doctest: +SKIP
>>> ids = tok.encode(images)        # (B, 3, 256, 256) in [-1, 1] -> (B, 16, 16) int64
>>> recon = tok.decode(ids)         # (B, 3, 256, 256) clamped to [-1, 1]
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.checkpoints import CHECKPOINT_FLAG, load_strict, read_state_dict, sha256_file
from xdlm_vision.tokenizers.llamagen_config import LlamaGenVQConfig, resolve_config
from xdlm_vision.tokenizers.llamagen_vq import VQEncoding, VQModel


def check_grid(height: int, width: int, downsample: int, flag: str = "--image-size") -> tuple[int, int]:
    """Token grid (h, w) of an image; UserError unless both sides are multiples of ``downsample``."""
    if height % downsample or width % downsample or height <= 0 or width <= 0:
        raise UserError(
            f"image size {height}x{width} is not a positive multiple of the tokenizer's downsample "
            f"factor {downsample} (fix {flag})"
        )
    return height // downsample, width // downsample


class LlamaGenTokenizer:
    """Wraps a :class:`VQModel` in eval mode; encode/decode run without gradients.

    ``autocast`` runs encoder/decoder convolutions in bf16 on CUDA (the codebook lookup always
    stays in float32, so ids only change where two codes are within bf16 noise of each other).
    """

    def __init__(
        self,
        model: VQModel,
        size: str | None = None,  # registry name, recorded in tokenizer specs
        checkpoint: str | None = None,  # weights file, recorded in tokenizer specs
        checkpoint_sha256: str | None = None,  # its SHA-256
        autocast: bool = False,  # bf16 autocast on CUDA
    ) -> None:
        self.model = model.eval()
        self.config: LlamaGenVQConfig = model.config
        self.size = size
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.autocast = autocast

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def downsample(self) -> int:
        return self.config.downsample

    @property
    def device(self) -> torch.device:
        return self.model.post_quant_conv.weight.device

    def to(self, device: str | torch.device) -> LlamaGenTokenizer:
        self.model.to(device)
        return self

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return check_grid(height, width, self.downsample)

    def _amp(self):
        if self.autocast and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_full(self, images: torch.Tensor) -> VQEncoding:
        """images (B, 3, H, W) in [-1, 1] -> indices (B, h, w), quant and latent (B, D, h, w)."""
        if images.ndim != 4 or images.shape[1] != self.config.in_channels:
            raise UserError(
                f"LlamaGen tokenizer expects images (B, {self.config.in_channels}, H, W), got {tuple(images.shape)}"
            )
        self.grid_shape(images.shape[2], images.shape[3])
        with self._amp():
            enc = self.model.encode(images.to(self.device, torch.float32))
        return enc

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> ids (B, H/d, W/d) int64 on the images' device."""
        return self.encode_full(images).indices.to(images.device)

    @torch.no_grad()
    def decode_raw(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> raw decoder output (B, 3, H, W) in float32, not clamped."""
        if ids.ndim != 3:
            raise UserError(f"LlamaGen tokenizer expects ids (B, h, w), got {tuple(ids.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise UserError(
                f"token ids must lie in 0..{self.codebook_size - 1} (the mask id cannot be decoded)"
            )
        with self._amp():
            out = self.model.decode_code(ids.to(self.device, torch.long))
        return out.float().to(ids.device)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) int64 -> images (B, 3, h*d, w*d) clamped to [-1, 1]."""
        return self.decode_raw(ids).clamp(-1.0, 1.0)


def load_llamagen_tokenizer(
    checkpoint: str | Path,
    tokenizer: str | dict | LlamaGenVQConfig = "VQ-16",
    device: str | torch.device = "cpu",
    expected_sha256: str | None = None,
    autocast: bool = False,
) -> LlamaGenTokenizer:
    """Build the architecture named by ``tokenizer`` (size, JSON file, dict or config) and load
    ``checkpoint`` strictly. ``expected_sha256`` (from a tokenizer spec) guards against a
    different file at the same path."""
    resolved = resolve_config(tokenizer)
    state = read_state_dict(checkpoint)
    digest = sha256_file(checkpoint)
    if expected_sha256 and digest != expected_sha256:
        raise UserError(
            f"{CHECKPOINT_FLAG} {str(checkpoint)!r} has SHA-256 {digest[:12]}..., but the tokenizer spec "
            f"records {expected_sha256[:12]}...: the tokens were made with different weights"
        )
    model = VQModel(resolved.config)
    load_strict(
        model,
        state,
        source=f"{CHECKPOINT_FLAG} {str(checkpoint)!r}",
        hint=f"Pass the weights of this architecture with {CHECKPOINT_FLAG}, or pick the matching "
        f"architecture with --tokenizer (sizes: VQ-16, VQ-8, or a JSON config).",
    )
    tok = LlamaGenTokenizer(model, resolved.size, str(Path(checkpoint).resolve()), digest, autocast)
    return tok.to(device)
