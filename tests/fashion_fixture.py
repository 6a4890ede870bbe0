"""A tiny Fashion-MNIST stand-in written by the tests: four IDX files of simple class-coded shapes.

Class c is a filled bar whose height and position depend on c, so a few steps of training can
tell them apart; nothing here is real Fashion-MNIST data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xdlm_vision.data.fashion import SPLIT_FILES, write_idx

# VQTrainSettings of a tokenizer that trains in a second on the tiny data (4 steps, 16-pixel latents)
TINY_VQ = {"base_channels": 8, "ch_mult": "[1,1,2]", "norm_groups": 4, "z_channels": 8, "codebook_dim": 4,
           "encoder_res_blocks": 1, "decoder_res_blocks": 1, "batch_size": 8, "steps": 4, "warmup_steps": 1,
           "restart_every": 2, "ckpt_every": 2}


def tiny_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28, 28) uint8 images and (n,) labels cycling over the 10 classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i, c in enumerate(labels):
        top = 2 + 2 * c
        images[i, top: top + 6, 4 + c: 20 + c // 2] = 200
        images[i] = np.clip(images[i] + rng.integers(0, 30, (28, 28)), 0, 255)
    return images, labels.astype(np.uint8)


def write_tiny_fashion(folder: Path, n_train: int = 40, n_test: int = 20, gz: bool = True) -> Path:
    """Write the four IDX files into ``folder`` (gzipped or raw); returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = tiny_images(n, seed)
        img_stem, lab_stem = SPLIT_FILES[split]
        write_idx(folder / f"{img_stem}{suffix}", images)
        write_idx(folder / f"{lab_stem}{suffix}", labels)
    return folder
