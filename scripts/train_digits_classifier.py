"""Train the digits judge (xdlm_vision/assets/digits_classifier.safetensors + .json).

Trains the small CNN of ``xdlm_vision.evaluation.digits_classifier`` on the fixed *training*
split of the embedded digits only (random 1-pixel shifts as augmentation), reports the accuracy
on the validation split and writes weights + JSON (config, seed, hyper-parameters, accuracy).
Deterministic for a given seed on one machine (one CPU thread, deterministic algorithms).

    python scripts/train_digits_classifier.py [--seed 0] [--epochs 40] [--out PATH]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from xdlm_vision.data.digits import load_digits_split
from xdlm_vision.evaluation.digits_classifier import (
    DigitsClassifierConfig,
    DigitsCNN,
    classify_digits,
    default_asset_path,
    save_digits_classifier,
)


@dataclass
class TrainSettings:
    seed: int = 0  # torch seed for init, shuffling and augmentation
    epochs: int = 20  # passes over the 1438 training images
    batch_size: int = 64
    lr: float = 2e-3  # AdamW peak learning rate, cosine-decayed to 0
    weight_decay: float = 1e-4
    max_shift: int = 1  # random translation in pixels (zero padding)
    label_smoothing: float = 0.05


def random_shift(tokens: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate every (8, 8) grid by up to ``max_shift`` pixels in x and y, filling with 0."""
    b = tokens.shape[0]
    padded = F.pad(tokens, (max_shift,) * 4)  # (B, 8+2s, 8+2s)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = dy[:, None] + torch.arange(8)[None]  # (B, 8)
    cols = dx[:, None] + torch.arange(8)[None]  # (B, 8)
    return padded[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, 8, 8)


def accuracy(model: DigitsCNN, tokens: torch.Tensor, labels: torch.Tensor) -> float:
    return (classify_digits(tokens, model).labels == labels).float().mean().item()


def train(settings: TrainSettings) -> tuple[DigitsCNN, float, float]:
    """Returns (model, train accuracy, validation accuracy)."""
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    train_set, val_set = load_digits_split("train"), load_digits_split("val")
    model = DigitsCNN(DigitsClassifierConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(train_set.labels) // settings.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.epochs * steps_per_epoch)
    bar = tqdm(range(settings.epochs), desc="digits classifier")
    for _ in bar:
        model.train()
        order = torch.randperm(len(train_set.labels), generator=gen)
        for idx in order.split(settings.batch_size):
            x = random_shift(train_set.tokens[idx], settings.max_shift, gen)  # (b, 8, 8)
            loss = F.cross_entropy(model(x), train_set.labels[idx], label_smoothing=settings.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, accuracy(model, train_set.tokens, train_set.labels), accuracy(model, val_set.tokens, val_set.labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=TrainSettings.seed)
    parser.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    parser.add_argument("--out", default=str(default_asset_path()), help="output .safetensors path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    settings = TrainSettings(seed=args.seed, epochs=args.epochs)
    start = time.perf_counter()
    model, train_acc, val_acc = train(settings)
    seconds = time.perf_counter() - start
    print(f"train accuracy {train_acc:.4f}  val accuracy {val_acc:.4f}  ({seconds:.1f} s)")
    save_digits_classifier(model, args.out, {
        "seed": settings.seed,
        "train_settings": asdict(settings),
        "train_split": "train (1438 images, load_digits_split('train'))",
        "val_accuracy": round(val_acc, 6),
        "train_accuracy": round(train_acc, 6),
        "torch_version": torch.__version__,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
