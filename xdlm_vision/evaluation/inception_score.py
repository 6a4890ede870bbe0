"""Inception Score from class probabilities (Salimans et al. 2016).

    IS = exp( E_x KL( p(y|x) ‖ p(y) ) ),   p(y) = E_x p(y|x)

computed per split (torch-fidelity and the ADM evaluator use 10 splits) and reported as mean and
standard deviation over splits. It is 1 when every prediction is the same and equals the number
of classes when predictions are one-hot and the classes are used equally often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdlm_vision.errors import UserError


@dataclass
class InceptionScore:
    mean: float  # mean of the per-split scores
    std: float  # standard deviation over splits (0 for one split)
    splits: int  # number of splits


def _split_score(probs: np.ndarray) -> float:
    """exp(mean KL(p(y|x) || p(y))) of one split; probs (M, K) rows summing to 1."""
    marginal = probs.mean(axis=0, keepdims=True)  # (1, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, probs * (np.log(probs) - np.log(marginal)), 0.0)  # (M, K), 0 log 0 = 0
    return float(np.exp(terms.sum(axis=1).mean()))


def inception_score(probs: np.ndarray, splits: int = 10) -> InceptionScore:
    """IS of class probabilities probs (M, K) (rows sum to 1), over ``splits`` equal consecutive splits."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise UserError(f"inception_score needs probabilities of shape (M, K), got {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise UserError("inception_score needs probabilities (non-negative rows summing to 1), not logits")
    splits = max(1, min(int(splits), p.shape[0]))
    scores = [_split_score(chunk) for chunk in np.array_split(p, splits)]
    return InceptionScore(float(np.mean(scores)), float(np.std(scores)), splits)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax in float64 (M, K) -> (M, K)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)
