"""Train the fashion judge (xdlm_vision/assets/fashion_classifier.safetensors + .json).

Trains the small CNN of ``xdlm_vision.evaluation.fashion_classifier`` on the Fashion-MNIST *train*
split only (random horizontal flips and 1-pixel shifts as augmentation), reports the accuracy on
the 10,000-image test split and writes weights + JSON (config, seed, hyper-parameters, accuracy).
Deterministic for a given seed on one machine (one CPU thread).

    python scripts/train_fashion_classifier.py [--data-dir DIR] [--seed 0] [--epochs 4] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from xdlm_vision.data.fashion import load_fashion_split
from xdlm_vision.evaluation.digits_classifier import save_digits_classifier as save_classifier
from xdlm_vision.evaluation.fashion_classifier import (
    FashionClassifierConfig,
    FashionCNN,
    classify_fashion,
    default_asset_path,
)


@dataclass
class TrainSettings:
    seed: int = 0  # torch seed for init, shuffling and augmentation
    epochs: int = 4  # passes over the 60,000 training images
    batch_size: int = 128
    lr: float = 3e-3  # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 1e-4
    max_shift: int = 1  # random translation in pixels (background padding)
    label_smoothing: float = 0.05


def augment(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation by up to ``max_shift`` pixels. x (B, 1, S, S) -> same."""
    b, _, s, _ = x.shape
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)  # (B, 1, S+2m, S+2m)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(s)[None])[:, :, None]  # (B, S, 1)
    cols = (dx[:, None] + torch.arange(s)[None])[:, None, :]  # (B, 1, S)
    return padded[torch.arange(b)[:, None, None], 0, rows, cols][:, None]  # (B, 1, S, S)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 28, 28) -> float (B, 1, 28, 28) in [-1, 1]."""
    return images.float()[:, None] * (2.0 / 255.0) - 1.0


def accuracy(model: FashionCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (classify_fashion(to_signed(images), model).labels == labels).float().mean().item()


def train(settings: TrainSettings, data_dir: str | None) -> tuple[FashionCNN, float, float]:
    """Returns (model, accuracy on the first 10,000 training images, test accuracy)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    train_set = load_fashion_split("train", data_dir, flag="--data-dir")
    test_set = load_fashion_split("test", data_dir, flag="--data-dir")
    model = FashionCNN(FashionClassifierConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(train_set.labels) // settings.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps_per_epoch,
                                                pct_start=0.1)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(train_set.labels), generator=gen)
        bar = tqdm(order.split(settings.batch_size), desc=f"fashion classifier epoch {epoch + 1}/{settings.epochs}")
        for idx in bar:
            x = augment(to_signed(train_set.images[idx]), settings.max_shift, gen)  # (b, 1, 28, 28)
            loss = F.cross_entropy(model(x), train_set.labels[idx], label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return (model, accuracy(model, train_set.images[:10000], train_set.labels[:10000]),
            accuracy(model, test_set.images, test_set.labels))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST IDX folder (default /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--out", default=str(default_asset_path()), help="output .safetensors path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = TrainSettings(seed=args.seed, epochs=args.epochs)
    start = time.perf_counter()
    model, train_acc, test_acc = train(settings, args.data_dir)
    seconds = time.perf_counter() - start
    print(f"train accuracy {train_acc:.4f}  test accuracy {test_acc:.4f}  ({seconds:.0f} s)")
    save_classifier(model, args.out, {
        "seed": settings.seed,
        "train_settings": asdict(settings),
        "train_split": "Fashion-MNIST train (60,000 images)",
        "test_accuracy": round(test_acc, 6),
        "train_accuracy_first_10000": round(train_acc, 6),
        "train_seconds": round(seconds, 1),
        "torch_version": torch.__version__,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
