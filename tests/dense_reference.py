"""Dense float64 references for the XDLM core, built from the definitions only.

Everything here works with the full (N + 1) x (N + 1) transition matrices and brute-force sums,
so it shares no formula with ``xdlm_vision.core`` beyond the definitions of DESIGN.md §2:

    states 0..N-1 (data) and m = N (mask);  pi = (k/N, ..., k/N, 1 - k)
    Q(alpha) = alpha I + (1 - alpha) 1 pi^T          (row = from-state, column = to-state)
    q(z_t | x) = x_pad @ Q(alpha_t),   Q_{t|s} = Q(alpha_t / alpha_s)
    q(z_s | z_t, x) ∝ q(z_s | x) Q_{t|s}[z_s, z_t]   (Bayes)

The model posterior p(z_s | z_t) is the same with x replaced by x_hat = softmax(logits).
All functions take and return float64 torch tensors and are differentiable (autograd through the
dense reference gives a reference gradient).
"""

from __future__ import annotations

import math

import numpy as np
import torch

F64 = torch.float64


def stationary(n: int, k: float) -> torch.Tensor:
    """pi over the N + 1 states, (N + 1,)."""
    return torch.tensor([k / n] * n + [1.0 - k], dtype=F64)


def q_matrix(alpha: float, n: int, k: float) -> torch.Tensor:
    """Q(alpha) = alpha I + (1 - alpha) 1 pi^T, (N + 1, N + 1); every row sums to 1."""
    pi = stationary(n, k)
    return alpha * torch.eye(n + 1, dtype=F64) + (1.0 - alpha) * pi[None, :].expand(n + 1, n + 1)


def pad_mask(xdist: torch.Tensor) -> torch.Tensor:
    """A distribution over the N data tokens as one over N + 1 states (x_m = 0). (..., N) -> (..., N + 1)."""
    return torch.cat([xdist, torch.zeros_like(xdist[..., :1])], dim=-1)


def one_hot(x: int, n: int) -> torch.Tensor:
    """(N,) float64 one-hot of a data token."""
    out = torch.zeros(n, dtype=F64)
    out[x] = 1.0
    return out


def marginal(xdist: torch.Tensor, alpha: float, k: float) -> torch.Tensor:
    """q(z_t | x) = x_pad @ Q(alpha), (N + 1,), for a distribution x (N,) over data tokens."""
    n = xdist.shape[-1]
    return pad_mask(xdist) @ q_matrix(alpha, n, k)


def posterior(xdist: torch.Tensor, z_t: int, alpha_t: float, alpha_s: float, k: float) -> torch.Tensor:
    """Bayes' rule with dense matrices: q(z_s | z_t, x) over N + 1 states, (N + 1,).

    Needs alpha_s > 0 (Q_{t|s} = Q(alpha_t / alpha_s)) and q(z_t | x) > 0.
    """
    n = xdist.shape[-1]
    q_s = marginal(xdist, alpha_s, k)  # q(z_s | x), (N + 1,)
    q_ts = q_matrix(alpha_t / alpha_s, n, k)  # Q_{t|s}[z_s, z_t]
    joint = q_s * q_ts[:, z_t]  # (N + 1,) = q(z_s, z_t | x)
    return joint / joint.sum()


def model_posterior(logits: torch.Tensor, z_t: int, alpha_t: float, alpha_s: float, k: float) -> torch.Tensor:
    """p(z_s | z_t) with x replaced by softmax(logits) (N,). Returns (N + 1,)."""
    return posterior(torch.softmax(logits.to(F64), dim=-1), z_t, alpha_t, alpha_s, k)


def kl(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Brute-force KL(q || p) = sum_e q_e log(q_e / p_e) over all N + 1 states (inf if p = 0 where q > 0).

    Summed in the equivalent form sum_e [q_e log(q_e / p_e) - q_e + p_e] (the added terms sum to 0),
    whose terms are all >= 0: when q and p are close (a step s = t - dt with tiny dt) there is no
    cancellation between large positive and negative terms. With d = (p - q) / q each term is
    q (d - log1p(d)) where |d| < 1/2 (no cancellation in d), else q log(q / p) + p - q directly
    (p << q: 1 + d would lose the digits of p); p where q = 0.
    """
    keep = q > 0
    qk, pk = q[keep], p[keep]
    d = (pk - qk) / qk
    near = d.abs() < 0.5
    close = qk * (d - torch.log1p(torch.where(near, d, torch.zeros_like(d))))
    far = qk * (torch.log(qk) - torch.log(pk)) + (pk - qk)
    return torch.where(near, close, far).sum() + p[~keep].sum()


def step_kl(logits: torch.Tensor, x: int, z_t: int, alpha_t: float, alpha_s: float, k: float) -> torch.Tensor:
    """KL( q(z_s | z_t, x) || p_theta(z_s | z_t) ) for one position, scalar float64."""
    n = logits.shape[-1]
    q = posterior(one_hot(x, n), z_t, alpha_t, alpha_s, k)
    p = model_posterior(logits, z_t, alpha_t, alpha_s, k)
    return kl(q, p)


def kl_rate(
    logits: torch.Tensor, x: int, z_t: int, t: float, schedule_alpha, k: float, dt: float
) -> torch.Tensor:
    """Numerical limit of the continuous-time loss: KL between the posteriors at t and s = t - dt,
    divided by dt, Richardson-extrapolated (2 R(dt) - R(2 dt)) so the O(dt) bias cancels.
    ``schedule_alpha`` maps a float time to alpha. Needs 2 dt < t."""

    def rate(h):
        return step_kl(logits, x, z_t, schedule_alpha(t), schedule_alpha(t - h), k) / h

    return 2.0 * rate(dt) - rate(2.0 * dt)


def linear_alpha(t: float) -> float:
    return 1.0 - t


def cosine_alpha(t: float) -> float:
    return 0.0 if t >= 1.0 else math.cos(0.5 * math.pi * t)


def reachable_states(x: int, alpha_t: float, n: int, k: float) -> list[int]:
    """States z_t with q(z_t | x) > 0 (the only ones the loss is defined for)."""
    q = marginal(one_hot(x, n), alpha_t, k)
    return [e for e in range(n + 1) if float(q[e]) > 0]


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square goodness-of-fit p-value of ``counts`` against ``probs``.

    Cells with zero probability must hold zero counts (checked by the caller); they are dropped.
    """
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    keep = probs > 0
    total = counts.sum()
    expected = total * probs[keep] / probs[keep].sum()
    stat = float((((counts[keep] - expected) ** 2) / expected).sum())
    dof = int(keep.sum()) - 1
    if dof <= 0:
        return 1.0
    # chi2 survival function: Q(dof / 2, stat / 2), the regularised upper incomplete gamma
    return float(
        torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=F64), torch.tensor(stat / 2.0, dtype=F64))
    )


def assert_frequencies(samples: torch.Tensor, probs: torch.Tensor, p_min: float = 1e-4) -> None:
    """Draws (any shape, ids in 0..len(probs)-1) follow ``probs``: no draw where the probability is
    zero and a chi-square p-value above ``p_min`` (the draws are seeded, so this is deterministic)."""
    probs = probs.detach().to(F64).cpu().numpy()
    counts = np.bincount(samples.reshape(-1).cpu().numpy(), minlength=len(probs))
    assert len(counts) == len(probs), f"draws outside the state space: {counts}"
    impossible = counts[probs <= 0].sum()
    assert impossible == 0, f"{impossible} draws in zero-probability states; counts {counts}, probs {probs}"
    pval = chi_square_pvalue(counts, probs)
    assert pval > p_min, f"chi-square p = {pval:.2e}; counts {counts}, expected {probs * counts.sum()}"


# --- closed forms of the two limits (independent of the XDLM derivation) -------------------------


def mdlm_loss(
    logits: torch.Tensor, x: int, z_t: int, alpha: float, alpha_prime: float, n: int
) -> torch.Tensor:
    """MDLM's continuous-time loss (Sahoo et al. 2024): -alpha'/(1 - alpha) [z_t = m] (-log x_hat_x)."""
    if z_t != n:
        return torch.zeros((), dtype=F64)
    return -alpha_prime / (1.0 - alpha) * -torch.log_softmax(logits.to(F64), -1)[x]


def udlm_loss(logits: torch.Tensor, x: int, z_t: int, alpha: float, alpha_prime: float) -> torch.Tensor:
    """UDLM's continuous-time loss (Schiff et al. 2024, uniform noise over N tokens):

        alpha'/(N alpha) [ N / xb_i - N / xbt_i - sum_{j != i} (xb_j / xb_i) log(xbt_i xb_j / (xbt_j xb_i)) ]

    with i = z_t, xb = N alpha x + (1 - alpha) 1 and xbt = N alpha x_hat + (1 - alpha) 1.
    """
    n = logits.shape[-1]
    xh = torch.softmax(logits.to(F64), -1)
    xb = n * alpha * one_hot(x, n) + (1.0 - alpha)
    xbt = n * alpha * xh + (1.0 - alpha)
    i = z_t
    others = [j for j in range(n) if j != i]
    s = sum((xb[j] / xb[i]) * torch.log(xbt[i] * xb[j] / (xbt[j] * xb[i])) for j in others)
    return alpha_prime / (n * alpha) * (n / xb[i] - n / xbt[i] - s)


# --- high-precision (mpmath) dense posterior, for times so close to 0 that float64 cancels ----------


def _posterior_mp(mp, xdist, z_t: int, a_t, a_s, pi):
    """Bayes' rule as in :func:`posterior`, in mpmath numbers (lists of length N + 1)."""
    n = len(xdist)
    xp = list(xdist) + [mp.mpf(0)]
    r = a_t / a_s
    joint = [(a_s * xp[e] + (1 - a_s) * pi[e]) * (r * (e == z_t) + (1 - r) * pi[z_t]) for e in range(n + 1)]
    tot = sum(joint)
    return [v / tot for v in joint]


def _kl_mp(mp, q, p):
    return sum(qq * mp.log(qq / pp) for qq, pp in zip(q, p) if qq > 0)


def _setup_mp(mp, logits, x: int, k: float):
    n = len(logits)
    pi = [mp.mpf(k) / n] * n + [1 - mp.mpf(k)]
    ex = [mp.e ** mp.mpf(float(v)) for v in logits]
    xh = [v / sum(ex) for v in ex]
    oh = [mp.mpf(int(e == x)) for e in range(n)]
    return pi, xh, oh


def step_kl_mp(logits, x: int, z_t: int, alpha_t: str, alpha_s: str, k: float, dps: int = 60) -> float:
    """:func:`step_kl` in ``dps``-digit arithmetic; alphas as decimal strings (or exact floats)."""
    import mpmath as mp

    with mp.workdps(dps):
        pi, xh, oh = _setup_mp(mp, logits, x, k)
        a_t, a_s = mp.mpf(alpha_t), mp.mpf(alpha_s)
        return float(
            _kl_mp(mp, _posterior_mp(mp, oh, z_t, a_t, a_s, pi), _posterior_mp(mp, xh, z_t, a_t, a_s, pi))
        )


def kl_rate_mp(logits, x: int, z_t: int, t: str, schedule: str, k: float, dps: int = 60) -> float:
    """The continuous-time loss as the limit of the dense KL / dt, in ``dps``-digit arithmetic.

    Same construction as :func:`kl_rate` (dense posterior by Bayes' rule, brute-force KL,
    Richardson-extrapolated, here with dt = 1e-20), exact enough for t down to 1e-5 and up to 1
    where float64 loses digits to alpha_t / alpha_s -> 1. ``t`` is a decimal string (or an exact
    float); returns a float.
    """
    import mpmath as mp

    with mp.workdps(dps):
        pi, xh, oh = _setup_mp(mp, logits, x, k)
        tt = mp.mpf(t)

        def alpha(v):
            if schedule == "linear":
                return 1 - v
            return mp.cos(mp.pi / 2 * v) if v < 1 else mp.mpf(0)

        def rate(h):
            a_t, a_s = alpha(tt), alpha(tt - h)
            return (
                _kl_mp(mp, _posterior_mp(mp, oh, z_t, a_t, a_s, pi), _posterior_mp(mp, xh, z_t, a_t, a_s, pi))
                / h
            )

        h = mp.mpf("1e-20")
        return float(2 * rate(h) - rate(2 * h))
