"""A small CNN that recognises Fashion-MNIST garments: the judge of generated fashion images.

Trained by ``scripts/train_fashion_classifier.py`` on the 60,000-image train split only; the
weights ship as ``xdlm_vision/assets/fashion_classifier.safetensors`` with a JSON beside them
(architecture, seed, measured test accuracy). :func:`classify_fashion` takes images in [-1, 1],
either 28x28 or the tokenizer's 32x32 padded frame (the central 28x28 is used), and gives the
predicted labels, class probabilities and penultimate features (for the "Fashion-FID").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.digits_classifier import ClassifierOutput, load_classifier_weights

ASSET_NAME = "fashion_classifier.safetensors"


@dataclass
class FashionClassifierConfig:
    """Architecture of the fashion CNN."""

    channels: tuple[int, int, int] = (16, 32, 64)  # conv widths at 28x28, 14x14, 7x7 (max-pool after the first two)
    feature_dim: int = 64  # penultimate feature size (used for the Fashion-FID)
    dropout: float = 0.3  # dropout before the classifier layer (training only)
    num_classes: int = 10


class FashionCNN(nn.Module):
    """images (B, 1, 28, 28) in [-1, 1] -> logits (B, 10)."""

    def __init__(self, config: FashionClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or FashionClassifierConfig()
        c1, c2, c3 = self.config.channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
            nn.MaxPool2d(2),  # 28 -> 14
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(),
            nn.MaxPool2d(2),  # 14 -> 7
            nn.Conv2d(c2, c3, 3, padding=1), nn.BatchNorm2d(c3), nn.ReLU(),
        )
        self.fc = nn.Linear(c3 * 49, self.config.feature_dim)  # every 7x7 position keeps its own weights
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(self.config.feature_dim, self.config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 1, 28, 28) in [-1, 1] -> penultimate features (B, F)."""
        h = self.conv(images.float()).flatten(1)  # (B, c3*49)
        return F.relu(self.fc(h))  # (B, F)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))  # (B, 10)


def default_asset_path() -> Path:
    """Path of the packaged classifier weights."""
    return Path(str(resources.files("xdlm_vision").joinpath("assets").joinpath(ASSET_NAME)))


def load_fashion_classifier(path: str | Path | None = None, device: str | torch.device = "cpu") -> FashionCNN:
    """Load the classifier (eval mode) from ``path`` (default: the packaged asset) and its JSON."""
    weights = default_asset_path() if path is None else Path(path)
    return load_classifier_weights(weights, FashionCNN, FashionClassifierConfig, "fashion classifier", device)


@lru_cache(maxsize=1)
def _packaged_classifier() -> FashionCNN:
    return load_fashion_classifier()


def prepare_images(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, 28 or 32, same) float in [-1, 1] -> (B, 1, 28, 28); UserError for other shapes."""
    from xdlm_vision.data.fashion import IMAGE_SIDE, PADDED_SIDE, crop_to_original

    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3] \
            or images.shape[-1] not in (IMAGE_SIDE, PADDED_SIDE):
        raise UserError(f"classify_fashion expects images (B, 1, 28, 28) or (B, 1, 32, 32), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise UserError(f"classify_fashion expects float images in [-1, 1], got dtype {images.dtype}")
    return crop_to_original(images) if images.shape[-1] == PADDED_SIDE else images


@torch.no_grad()
def classify_fashion(images: torch.Tensor, model: FashionCNN | None = None, batch_size: int = 1000) -> ClassifierOutput:
    """images (B, 1, 28|32, 28|32) in [-1, 1] -> ClassifierOutput(labels (B,), probs (B, 10), features (B, F)).

    ``model`` defaults to the packaged classifier (loaded once, on the CPU).
    """
    images = prepare_images(images)
    model = _packaged_classifier() if model is None else model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    probs, feats = [], []
    for chunk in images.split(batch_size):
        f = model.features(chunk.to(device))  # (b, F)
        feats.append(f)
        probs.append(torch.softmax(model.head(f), dim=-1))  # (b, 10)
    model.train(was_training)
    if not probs:
        k, f_dim = model.config.num_classes, model.config.feature_dim
        return ClassifierOutput(torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, k, device=device),
                                torch.zeros(0, f_dim, device=device))
    p = torch.cat(probs)  # (B, 10)
    return ClassifierOutput(p.argmax(-1), p, torch.cat(feats))
