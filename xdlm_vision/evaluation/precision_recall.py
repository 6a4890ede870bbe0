"""Improved precision and recall (Kynkäänniemi et al. 2019) on feature vectors.

Each set's manifold is the union of balls around its points, of radius the distance to the
point's k-th nearest neighbour within the same set (k = 3 by default). Precision is the share of
generated features inside the real manifold (fidelity), recall the share of real features inside
the generated manifold (coverage). Distances are computed in float64 chunks, never all at once
for large sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xdlm_vision.errors import UserError


@dataclass
class PrecisionRecall:
    precision: float  # fraction of generated samples inside the real manifold
    recall: float  # fraction of real samples inside the generated manifold
    k: int  # neighbourhood size


def _pairwise(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances a (M, D) x b (P, D) -> (M, P), float64."""
    return torch.cdist(a, b)


def knn_radii(feats: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from every row of feats (M, D) to its k-th nearest other row -> (M,)."""
    radii = []
    for start in range(0, feats.shape[0], chunk):
        d = _pairwise(feats[start : start + chunk], feats)  # (c, M); the point itself is at distance 0
        radii.append(d.kthvalue(k + 1, dim=1).values)  # (c,) skip the self-distance
    return torch.cat(radii)


def coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> float:
    """Share of queries (Q, D) within radii (S,) of at least one support point (S, D)."""
    inside = 0
    for start in range(0, queries.shape[0], chunk):
        d = _pairwise(queries[start : start + chunk], support)  # (c, S)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / max(1, queries.shape[0])


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> PrecisionRecall:
    """Precision/recall of fake (P, D) against real (M, D) features with k-NN manifolds."""
    r = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    f = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise UserError(f"precision/recall needs (M, D) and (P, D) features, got {tuple(r.shape)} and {tuple(f.shape)}")
    if min(r.shape[0], f.shape[0]) <= k:
        raise UserError(f"precision/recall with k={k} needs more than {k} samples on each side")
    precision = coverage(f, r, knn_radii(r, k))
    recall = coverage(r, f, knn_radii(f, k))
    return PrecisionRecall(precision, recall, k)
