"""Fréchet distance between two Gaussians — the math of FID (and of our "digits-FID").

    d² = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^{1/2})

The trace of the matrix square root is computed without ``scipy.linalg.sqrtm``: with
S = Σ₁^{1/2} (symmetric, from an eigen-decomposition), Σ₁ Σ₂ is similar to the symmetric PSD
matrix M = S Σ₂ S, so tr((Σ₁ Σ₂)^{1/2}) = Σᵢ sqrt(λᵢ(M)). Two ``eigh`` calls in float64, with
eigenvalues below the rounding level set to 0, make this robust to singular or near-singular covariances (fewer
samples than feature dimensions, duplicated features), where ``sqrtm`` returns complex parts or
needs an ε·I offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdlm_vision.errors import UserError


@dataclass
class GaussianStats:
    """Mean and covariance of a feature set (what FID compares)."""

    mu: np.ndarray  # (D,) float64
    sigma: np.ndarray  # (D, D) float64, unbiased covariance (ddof = 1, as numpy.cov / ADM / pytorch-fid)
    num: int  # number of feature vectors the statistics came from (0 if unknown, e.g. loaded mu/sigma)


def gaussian_stats(features: np.ndarray) -> GaussianStats:
    """features (M, D) -> their mean (D,) and unbiased covariance (D, D), in float64."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise UserError(f"need at least 2 feature vectors of shape (M, D), got {feats.shape}")
    mu = feats.mean(axis=0)  # (D,)
    centred = feats - mu  # (M, D)
    sigma = centred.T @ centred / (feats.shape[0] - 1)  # (D, D)
    return GaussianStats(mu, sigma, int(feats.shape[0]))


def _clip_noise(w: np.ndarray) -> np.ndarray:
    """Eigenvalues below the rounding level D * eps * max|w| (or negative) -> 0.

    Without this, the ~1e-16 noise eigenvalues of a rank-deficient covariance contribute
    sqrt(1e-16) = 1e-8 each to the trace term, which is larger than the rounding of the rest.
    """
    tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.abs(w).max(initial=0.0)), 1e-300)
    return np.where(w > tol, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (rounding-noise eigenvalues -> 0)."""
    sym = 0.5 * (sigma + sigma.T)
    w, v = np.linalg.eigh(sym)  # (D,), (D, D)
    return (v * np.sqrt(_clip_noise(w))) @ v.T  # (D, D)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ₁ Σ₂)^{1/2}) for symmetric PSD Σ₁, Σ₂ (D, D), via the eigenvalues of Σ₁^{1/2} Σ₂ Σ₁^{1/2}."""
    s1 = _psd_sqrt(np.asarray(sigma1, dtype=np.float64))  # (D, D)
    m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1  # (D, D), symmetric PSD up to rounding
    eig = np.linalg.eigvalsh(0.5 * (m + m.T))  # (D,)
    return float(np.sqrt(_clip_noise(eig)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

    mu (D,), sigma (D, D), any float dtype (computed in float64). FID is this value on Inception
    pool features; it is 0 for identical Gaussians, up to rounding (|d| ~ 1e-10 · tr Σ).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise UserError(
            f"Fréchet distance needs matching shapes, got mu {mu1.shape} / {mu2.shape}, "
            f"sigma {sigma1.shape} / {sigma2.shape} (are both sides from the same feature extractor?)"
        )
    if not (np.isfinite(mu1).all() and np.isfinite(mu2).all() and np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise UserError("Fréchet distance: the statistics contain NaN or inf")
    diff = mu1 - mu2  # (D,)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_stats(a: GaussianStats, b: GaussianStats) -> float:
    """:func:`frechet_distance` of two :class:`GaussianStats`."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)
