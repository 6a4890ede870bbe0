"""Metrics for Fashion-MNIST generators: class agreement and a "Fashion-FID", with their floors.

The judge is the packaged fashion CNN (:mod:`xdlm_vision.evaluation.fashion_classifier`, trained
on the train split only). For class-conditional samples we report

* agreement: the share of samples the classifier assigns to the class they were sampled for;
* Fashion-FID: the Fréchet distance between Gaussians fitted to the classifier's penultimate
  features of the samples and of the 10,000 test images.

Two floors put the numbers in context (:func:`fashion_floors`): real training images (the same
number, class-balanced) against the test split — what a perfect generator would score at that
sample size — and the tokenizer's reconstructions of those images, which bound what any model
over its tokens can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.evaluation.frechet import GaussianStats, frechet_distance_stats, gaussian_stats


@dataclass
class FashionMetrics:
    agreement: float  # P(classifier label == conditioning label)
    fashion_fid: float  # Fréchet distance of penultimate features, samples vs test split
    per_class_agreement: list[float]  # per conditioning class 0..9 (nan when a class has no sample)
    num_samples: int
    num_reference: int


def reference_stats(data_dir=None, flag: str = "--data-dir") -> GaussianStats:
    """Penultimate-feature statistics of the test split."""
    from xdlm_vision.data.fashion import load_fashion_split, to_signed_padded
    from xdlm_vision.evaluation.fashion_classifier import classify_fashion

    test = load_fashion_split("test", data_dir, flag=flag)
    return gaussian_stats(classify_fashion(to_signed_padded(test.images)).features.double().cpu().numpy())


def fashion_metrics(images: torch.Tensor, labels: torch.Tensor, reference: GaussianStats) -> FashionMetrics:
    """images (M, 1, 32|28, 32|28) in [-1, 1], labels (M,) their conditioning classes."""
    from xdlm_vision.evaluation.fashion_classifier import classify_fashion

    out = classify_fashion(images)
    labels = labels.cpu().long()
    correct = (out.labels.cpu() == labels).double()  # (M,)
    per_class = [float(correct[labels == c].mean()) if bool((labels == c).any()) else float("nan")
                 for c in range(10)]
    fid = frechet_distance_stats(gaussian_stats(out.features.double().cpu().numpy()), reference)
    return FashionMetrics(float(correct.mean()), fid, per_class, len(labels), reference.num)


def balanced_train_subset(num: int, data_dir=None, flag: str = "--data-dir"):
    """The first ``num // 10`` training images of every class: (uint8 (n, 28, 28), labels (n,))."""
    from xdlm_vision.data.fashion import load_fashion_split

    train = load_fashion_split("train", data_dir, flag=flag)
    per = max(1, num // 10)
    idx = torch.cat([torch.nonzero(train.labels == c).flatten()[:per] for c in range(10)])
    return train.images[idx], train.labels[idx]


def fashion_floors(reference: GaussianStats, tokenizer=None, num: int = 1000, data_dir=None,
                   flag: str = "--data-dir") -> dict[str, float]:
    """Agreement and Fashion-FID of ``num`` class-balanced real training images, and (with a VQ
    ``tokenizer``) of their reconstructions, against the test split."""
    from xdlm_vision.data.fashion import to_signed_padded

    images, labels = balanced_train_subset(num, data_dir, flag)
    real = to_signed_padded(images)  # (n, 1, 32, 32)
    m = fashion_metrics(real, labels, reference)
    floors = {"real_train_agreement": m.agreement, "real_train_fashion_fid": m.fashion_fid,
              "floor_num_images": len(labels)}
    if tokenizer is not None:
        recon = torch.cat([tokenizer.decode(tokenizer.encode(chunk)) for chunk in real.split(500)])
        r = fashion_metrics(recon, labels, reference)
        floors.update(recon_agreement=r.agreement, recon_fashion_fid=r.fashion_fid)
    return floors
