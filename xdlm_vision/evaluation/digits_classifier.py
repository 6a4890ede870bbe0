"""A small CNN that recognises 8x8 digit token grids: the judge of generated digits.

Trained by ``scripts/train_digits_classifier.py`` on the fixed training split of the embedded
digits data only; weights ship as ``xdlm_vision/assets/digits_classifier.safetensors`` with a JSON
beside them (architecture, seed, measured validation accuracy). ``classify_digits`` gives the
predicted labels, class probabilities and the penultimate features (for a "digits-FID").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.errors import UserError

LEVELS = 17  # token ids 0..16
ASSET_NAME = "digits_classifier.safetensors"


@dataclass
class DigitsClassifierConfig:
    """Architecture of the digits CNN."""

    channels: tuple[int, int, int] = (16, 32, 64)  # conv widths at 8x8, 8x8 (then pool), 4x4 (then pool)
    feature_dim: int = 64  # penultimate feature size (used for the digits-FID)
    dropout: float = 0.3  # dropout before the classifier layer (training only)
    num_classes: int = 10


class ClassifierOutput(NamedTuple):
    labels: torch.Tensor  # (B,) int64 predicted digit
    probs: torch.Tensor  # (B, 10) softmax probabilities
    features: torch.Tensor  # (B, F) penultimate activations


class DigitsCNN(nn.Module):
    """tokens (B, 8, 8) in 0..16 -> logits (B, 10); input scaled to [0, 1] as tokens / 16."""

    def __init__(self, config: DigitsClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or DigitsClassifierConfig()
        c1, c2, c3 = self.config.channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.fc = nn.Linear(c3 * 4, self.config.feature_dim)
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(self.config.feature_dim, self.config.num_classes)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, 8, 8) int -> penultimate features (B, F)."""
        x = tokens.float()[:, None] / (LEVELS - 1)  # (B, 1, 8, 8) in [0, 1]
        h = self.conv(x).flatten(1)  # (B, c3*4)
        return F.relu(self.fc(h))  # (B, F)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(tokens)))  # (B, 10)


def default_asset_path() -> Path:
    """Path of the packaged classifier weights."""
    return Path(str(resources.files("xdlm_vision").joinpath("assets").joinpath(ASSET_NAME)))


def metadata_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_digits_classifier(model: DigitsCNN, path: str | Path, extra: dict) -> None:
    """Write weights (safetensors) and ``{config, **extra}`` JSON beside them, both atomically."""
    from safetensors.torch import save_file

    from xdlm_vision.io import atomic_path, write_json_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
        tmp.chmod(0o644)
    write_json_atomic(metadata_path(path), {"config": asdict(model.config), **extra}, default=None)


def load_digits_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> DigitsCNN:
    """Load the classifier (eval mode) from ``path`` (default: the packaged asset) and its JSON."""
    from safetensors.torch import load_file

    weights = default_asset_path() if path is None else Path(path)
    meta = metadata_path(weights)
    if not weights.is_file():
        raise UserError(f"digits classifier weights not found at {weights}; pass an existing .safetensors path")
    if not meta.is_file():
        raise UserError(f"digits classifier config {meta} is missing (it must sit beside the weights)")
    config_dict = json.loads(meta.read_text())["config"]
    config_dict["channels"] = tuple(config_dict["channels"])
    model = DigitsCNN(DigitsClassifierConfig(**config_dict))
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model.to(device).eval()


@lru_cache(maxsize=1)
def _packaged_classifier() -> DigitsCNN:
    return load_digits_classifier()


def check_digit_tokens(tokens: torch.Tensor) -> None:
    if tokens.ndim != 3 or tuple(tokens.shape[1:]) != (8, 8):
        raise UserError(f"classify_digits expects token grids (B, 8, 8), got {tuple(tokens.shape)}")
    if tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise UserError(f"classify_digits expects integer tokens in 0..16, got dtype {tokens.dtype}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() > LEVELS - 1):
        raise UserError(
            f"classify_digits expects tokens in 0..16 (no [MASK] id 17), got range "
            f"{int(tokens.min())}..{int(tokens.max())}"
        )


@torch.no_grad()
def classify_digits(tokens: torch.Tensor, model: DigitsCNN | None = None, batch_size: int = 1024) -> ClassifierOutput:
    """tokens (B, 8, 8) int64 in 0..16 -> ClassifierOutput(labels (B,), probs (B, 10), features (B, F)).

    ``model`` defaults to the packaged classifier (loaded once, on the CPU); inputs are moved
    to the model's device and the outputs stay there.
    """
    check_digit_tokens(tokens)
    model = _packaged_classifier() if model is None else model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, feats = [], []
    for chunk in tokens.to(device).split(batch_size):
        f = model.features(chunk)  # (b, F)
        feats.append(f)
        probs.append(torch.softmax(model.head(f), dim=-1))  # (b, 10)
    model.train(was_training)
    if not probs:  # empty batch
        f_dim, k = model.config.feature_dim, model.config.num_classes
        return ClassifierOutput(torch.zeros(0, dtype=torch.long, device=device),
                                torch.zeros(0, k, device=device), torch.zeros(0, f_dim, device=device))
    p = torch.cat(probs)  # (B, 10)
    return ClassifierOutput(p.argmax(-1), p, torch.cat(feats))
