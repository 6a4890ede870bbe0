"""Metrics for the embedded digits data: classifier accuracy and a "digits-FID".

The judge is the packaged digits CNN (:mod:`xdlm_vision.evaluation.digits_classifier`, trained on
the training split only). For class-conditional samples we report

* accuracy: the share of samples the classifier assigns to the class they were sampled for;
* digits-FID: the Fréchet distance between Gaussians fitted to the classifier's penultimate
  features of the samples and of the validation split (359 images). Like FID it measures the
  whole distribution (diversity as well as fidelity), which accuracy does not; its small-sample
  floor is the digits-FID of the training split against the validation split (``floor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.evaluation.frechet import GaussianStats, frechet_distance_stats, gaussian_stats


@dataclass
class DigitsMetrics:
    accuracy: float  # P(classifier label == conditioning label)
    digits_fid: float  # Fréchet distance of penultimate features, samples vs validation split
    per_class_accuracy: list[float]  # accuracy per conditioning class 0..9 (nan if a class has no sample)
    num_samples: int
    num_reference: int  # validation images behind the reference statistics


def reference_digit_stats(split: str = "val") -> GaussianStats:
    """Penultimate-feature statistics of a digits split (the classifier is frozen: deterministic)."""
    from xdlm_vision.data.digits import load_digits_split
    from xdlm_vision.evaluation.digits_classifier import classify_digits

    arrays = load_digits_split(split)
    return gaussian_stats(classify_digits(arrays.tokens).features.double().cpu().numpy())


def digits_metrics(tokens: torch.Tensor, labels: torch.Tensor, reference: GaussianStats | None = None) -> DigitsMetrics:
    """tokens (M, 8, 8) int64 samples, labels (M,) their conditioning classes -> :class:`DigitsMetrics`."""
    from xdlm_vision.evaluation.digits_classifier import classify_digits

    ref = reference_digit_stats("val") if reference is None else reference
    out = classify_digits(tokens)
    pred = out.labels.cpu()
    labels = labels.cpu().long()
    correct = (pred == labels).double()  # (M,)
    per_class = [float(correct[labels == c].mean()) if bool((labels == c).any()) else float("nan") for c in range(10)]
    stats = gaussian_stats(out.features.double().cpu().numpy())
    return DigitsMetrics(float(correct.mean()), frechet_distance_stats(stats, ref), per_class, len(labels), ref.num)


def digits_fid_floor() -> float:
    """digits-FID of the real training split against the validation split (the best reachable order)."""
    return frechet_distance_stats(reference_digit_stats("train"), reference_digit_stats("val"))


