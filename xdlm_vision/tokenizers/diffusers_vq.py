"""A diffusers ``VQModel`` saved in a local directory, behind the ImageTokenizer interface.

Loaded with ``VQModel.from_pretrained(path, local_files_only=True)``: never the hub. diffusers
is imported only when this adapter is used.
"""

from __future__ import annotations

from pathlib import Path

import torch

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.llamagen import check_grid


class DiffusersVQTokenizer:
    """encode: encoder + quant_conv + nearest code; decode: code rows + post_quant_conv + decoder."""

    def __init__(self, model, path: str | None = None) -> None:
        self.model = model.eval()
        self.path = path

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.num_vq_embeddings)

    @property
    def downsample(self) -> int:
        # diffusers' Encoder halves the resolution in every down block but the last
        return 2 ** (len(self.model.config.block_out_channels) - 1)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> DiffusersVQTokenizer:
        self.model.to(device)
        return self

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        return check_grid(height, width, self.downsample)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) in [-1, 1] -> ids (B, H/d, W/d) int64 on the images' device."""
        if images.ndim != 4:
            raise UserError(f"diffusers VQ tokenizer expects images (B, C, H, W), got {tuple(images.shape)}")
        h, w = self.grid_shape(images.shape[2], images.shape[3])
        latent = self.model.encode(images.to(self.device, torch.float32)).latents  # (B, D, h, w)
        _, _, info = self.model.quantize(latent)
        return info[2].reshape(images.shape[0], h, w).to(images.device)  # (B, h, w)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, h, w) -> images (B, C, H, W) clamped to [-1, 1]."""
        if ids.ndim != 3:
            raise UserError(f"diffusers VQ tokenizer expects ids (B, h, w), got {tuple(ids.shape)}")
        b, h, w = ids.shape
        dim = self.model.quantize.embedding.weight.shape[1]
        quant = self.model.quantize.get_codebook_entry(
            ids.reshape(-1).to(self.device, torch.long), (b, h, w, dim)
        )  # (B, D, h, w)
        # post_quant_conv + decoder, as VQModel.decode does after its own lookup (calling them
        # directly also works for models saved with lookup_from_codebook=True)
        spatial = quant if self.model.config.norm_type == "spatial" else None
        out = self.model.decoder(self.model.post_quant_conv(quant), spatial)  # (B, C, H, W)
        return out.float().clamp(-1.0, 1.0).to(ids.device)


def load_diffusers_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> DiffusersVQTokenizer:
    """``VQModel.from_pretrained(path)`` from local files only; UserError naming
    ``--tokenizer-checkpoint`` if the directory is missing or not a VQModel."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(
            f"--tokenizer-checkpoint {str(path)!r}: not a diffusers model directory (no config.json)"
        )
    try:
        from diffusers import VQModel
    except ImportError:
        raise UserError("the diffusers tokenizer needs `pip install diffusers`") from None
    try:
        model = VQModel.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types for a bad folder
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"--tokenizer-checkpoint {str(path)!r}: cannot load a diffusers VQModel ({first})"
        ) from None
    return DiffusersVQTokenizer(model, str(path.resolve())).to(device)
