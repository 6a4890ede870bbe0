"""XDLM training objectives: the continuous-time NELBO and the finite-step KL.

Notation (docs/math.md): N data tokens, mask m = N, rho = k / N = pi_e for data tokens,
f_t(x, e) = alpha_t x_e + beta_t pi_e, p = x_hat = softmax(logits) over the data tokens.
Everything that touches the N axis goes through :func:`row_stats` (three scalars per position,
chunked, one extra pass over the logits); the rest is per-position float64 arithmetic.

The key reparameterisation: with c = alpha / (beta rho) (so that f(x_hat, e) = beta rho (1 + c p_e)
for data e), every log-ratio of marginals becomes a log1p of c times a probability:

    log f_t(x, x) / f_t(x_hat, x) = log1p(c) - log1p(c p_x)                        =: D_x
    sum_e log f_t(x, e) / f_t(x_hat, e) = log1p(c) - sum_e log1p(c p_e)            =: S
    (k beta_t / (N alpha_t)) S = S / c                                              =: T4

which is stable for k -> 0 (c -> inf), for t -> 1 (c -> 0) and never forms an (N, N) matrix or a
one-hot tensor. The continuous-time loss per position (t ~ U(0, 1)) is

    L = -alpha'_t r(z_t) / f_t(x, z_t) * h_t,   h_t as in docs/math.md,

and its three cases simplify to (u = c p_z, v = c p_x, w = (c - v) / (1 + v)):
    z_t = m       : L = -alpha'/beta              * (D_x + T4)
    z_t = x       : L = -alpha'/(beta (1 + c))    * ((w - log1p(w)) / alpha + D_x + T4)
    z_t = e != x  : L = -alpha'/beta              * ((log1p(u) - u / (1 + u)) / alpha + D_x + T4)
At k = 0 only the first case survives and reduces to MDLM's -alpha'/(1 - alpha) * (-log p_x);
at k = 1 the mask never occurs and the other two give UDLM's loss.
"""

from __future__ import annotations

import math

import torch

from xdlm_vision.core.chunking import mkl_single_threaded
from xdlm_vision.core.process import TokenSpace
from xdlm_vision.core.row_stats import row_stats

# c above this is treated as infinite: T4 = S / c < N log(C_MAX) / C_MAX ~ 1e-24 is dropped, and
# the float32 row statistics never see a larger c (no overflow of c * p).
C_MAX = 1e30


def _check(logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor, space: TokenSpace) -> None:
    if logits.ndim < 2 or logits.shape[-1] != space.num_tokens:
        raise ValueError(
            f"logits must have shape (..., N={space.num_tokens}) (no mask column), got {tuple(logits.shape)}"
        )
    if x0.shape != logits.shape[:-1] or z_t.shape != x0.shape:
        raise ValueError(
            f"x0 {tuple(x0.shape)} and z_t {tuple(z_t.shape)} must match logits {tuple(logits.shape)} without N"
        )


def _per_position(value, shape: torch.Size, device) -> torch.Tensor:
    """Broadcast a per-sample (B,) or scalar value to the per-position shape, flattened (R,),
    in float64 (Python floats are not rounded through float32 on the way)."""
    value = value.detach().to(torch.float64) if torch.is_tensor(value) else torch.tensor(value, dtype=torch.float64)
    value = value.to(device)
    if value.ndim == 1:
        value = value.reshape(-1, *([1] * (len(shape) - 1)))  # (B, 1, ...)
    return value.expand(shape).reshape(-1)


def _log1p_exp(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x), exact for all x including -inf (gradient 0 there)."""
    return torch.logaddexp(torch.zeros_like(x), x)


@mkl_single_threaded()  # per-position float64 math: a few thousand elements per op
def nelbo(
    logits: torch.Tensor,
    x0: torch.Tensor,
    z_t: torch.Tensor,
    t: torch.Tensor | float,
    space: TokenSpace,
    schedule,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """Continuous-time NELBO per position, in nats.

    logits (B, L, N) fp32/bf16/fp64 (data tokens only); x0 (B, L) clean ids in 0..N-1;
    z_t (B, L) noisy ids in 0..N; t (B,) or scalar in (0, 1]. Returns (B, L) float32
    (float64 for float64 logits). Differentiable w.r.t. ``logits``; its mean is the training loss.
    """
    _check(logits, x0, z_t, space)
    shape = x0.shape
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    n = space.num_tokens
    flat = logits.reshape(-1, n)  # (R, N)
    x = x0.reshape(-1)
    z = z_t.reshape(-1)
    t64 = _per_position(t, shape, logits.device)  # (R,)
    alpha = schedule.alpha(t64).clamp(0.0, 1.0)  # (R,)
    dalpha = schedule.alpha_prime(t64)  # (R,)
    beta = 1.0 - alpha
    is_mask = z == space.mask_id
    # -alpha'/beta: finite wherever z_t can differ from x0 (beta > 0); 0 where beta = 0 (unused)
    rate = torch.where(beta > 0, -dalpha / beta.clamp_min(1e-300), torch.zeros_like(beta))

    if space.k == 0.0:  # MDLM: only masked positions carry loss, = rate * (-log p_x)
        stats = row_stats(flat, x, chunk_elements=chunk_elements)
        # unmasked positions carry exactly 0, also where the model gives x_hat_{z_t} = 0 (no 0 * inf)
        lx = torch.where(is_mask, stats.lx.double(), torch.zeros_like(rate))
        return torch.where(is_mask, rate * -lx, 0.0).to(out_dtype).reshape(shape)

    rho = space.k / n
    # At alpha_t = 0 (t = 1) the loss is exactly 0 for k > 0 (z_t ~ pi whatever x_hat is); those
    # rows are computed at alpha = 1 and discarded, so no 0/0 reaches the values or the gradient.
    live = alpha > 0
    a = torch.where(live, alpha, torch.ones_like(alpha))
    c = a / (beta.clamp_min(1e-300) * rho)  # (R,) = alpha / (beta rho)
    c_eff = c.clamp_max(C_MAX)
    stats = row_stats(flat, x, z, c_eff, chunk_elements=chunk_elements)
    lx, lz, ssp = stats.lx.double(), stats.lz.double(), stats.ssp.double()

    log1p_c = torch.log1p(c_eff)
    v = c_eff * lx.exp()  # c p_x
    d_x = log1p_c - torch.log1p(v)  # log f(x,x) / f(x_hat,x)
    t4 = torch.where(c >= C_MAX, torch.zeros_like(c), (log1p_c - ssp) / c_eff)  # (k beta / N alpha) S

    # z_t = x (a data token equal to the clean one)
    w = (c_eff - v) / (1.0 + v)
    h_same = (w - torch.log1p(w)) / a + d_x + t4
    # z_t = e != x, e a data token
    u = c_eff * torch.where(is_mask, torch.zeros_like(lz), lz).exp()  # c p_z
    h_other = (torch.log1p(u) - u / (1.0 + u)) / a + d_x + t4
    # z_t = mask: prefactor r(m) / f_t(x, m) = 1 / beta, zero at k = 1 where the mask has no mass
    h_mask = d_x + t4
    mask_weight = rate if space.k < 1.0 else torch.zeros_like(rate)

    same = z == x
    loss = torch.where(
        is_mask,
        mask_weight * h_mask,
        torch.where(same, (-dalpha / (beta * (1.0 + c_eff)).clamp_min(1e-300)) * h_same, rate * h_other),
    )
    return torch.where(live, loss, 0.0).to(out_dtype).reshape(shape)


@mkl_single_threaded()
def finite_step_kl(
    logits: torch.Tensor,
    x0: torch.Tensor,
    z_t: torch.Tensor,
    alpha_t: torch.Tensor | float,
    alpha_s: torch.Tensor | float,
    space: TokenSpace,
    chunk_elements: int | None = None,
) -> torch.Tensor:
    """KL( q(z_s | z_t, x0) || p_theta(z_s | z_t) ) per position, in nats (paper Lemma 3.4).

    alpha_t <= alpha_s (s is the earlier, cleaner time), each (B,) or scalar. Both posteriors have
    the form f_{t|s}(e, z) f_s(y, e) / f_t(y, z) (y = x0 one-hot or x_hat), so with
    Lam(e) = log f_s(x, e) / f_s(x_hat, e) (Lam(m) = 0):

        KL = [alpha_{t|s} f_s(x, z) Lam(z) + beta_{t|s} r(z) (alpha_s Lam(x) + beta_s rho S_s)] / f_t(x, z)
             + log f_t(x_hat, z) / f_t(x, z),
        S_s = sum_{e<N} Lam(e) = log1p(c_s) - sum_e log1p(c_s p_e),  c_s = alpha_s / (beta_s rho).

    The three cases of z_t are evaluated separately on sanitised inputs, so no branch that is not
    taken can leak a NaN into the value or the gradient. Returns (B, L) like :func:`nelbo`;
    positions that q cannot produce (f_t(x, z) = 0) give exactly 0 with a zero gradient, and the
    KL is +inf where the model gives probability 0 to a state that q reaches.
    """
    _check(logits, x0, z_t, space)
    shape = x0.shape
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    n, k = space.num_tokens, space.k
    rho = k / n
    flat = logits.reshape(-1, n)
    x, z = x0.reshape(-1), z_t.reshape(-1)
    dev = logits.device
    a_t = _per_position(alpha_t, shape, dev)  # (R,)
    a_s = _per_position(alpha_s, shape, dev)  # (R,)
    if bool((a_s < a_t).any()):
        raise ValueError("finite_step_kl needs alpha_s >= alpha_t (s earlier than t)")
    b_t, b_s = 1.0 - a_t, 1.0 - a_s
    a_ts = torch.where(a_s > 0, a_t / a_s.clamp_min(1e-300), torch.zeros_like(a_s))  # alpha_{t|s}
    b_ts = 1.0 - a_ts
    zero = torch.zeros_like(a_t)
    is_mask = z == space.mask_id
    same = z == x
    other = ~is_mask & ~same  # a data token different from x

    # c = alpha / (beta rho) in log space; +inf where beta = 0 (then f(x_hat, e) = alpha x_hat_e)
    def log_c(a, b):
        if k == 0:
            return torch.full_like(a, math.inf)
        return torch.where(b > 0, torch.log(a.clamp_min(1e-300)) - torch.log(b.clamp_min(1e-300) * rho), math.inf)

    log_cs, log_ct = log_c(a_s, b_s), log_c(a_t, b_t)
    fin_s, fin_t = torch.isfinite(log_cs), torch.isfinite(log_ct)
    c_s = torch.where(fin_s, log_cs.clamp_max(math.log(C_MAX)).exp(), torch.full_like(a_s, C_MAX))
    stats = row_stats(flat, x, z, c_s if k > 0 else None, chunk_elements=chunk_elements)
    lx_raw, lz_raw = stats.lx.double(), stats.lz.double()

    # which rows q can produce: f_t(x, z) > 0
    reach = torch.where(is_mask, (b_t > 0) & (k < 1), torch.where(same, (a_t > 0) | (k > 0), (b_t > 0) & (k > 0)))
    # MDLM never moves an unmasked token: q and p are both a point mass there, KL = 0
    if k == 0:
        reach = reach & is_mask
    lx = torch.where(reach, lx_raw, zero)
    lz = torch.where(reach & other, lz_raw, zero)

    # Lam(x) = log1p(c_s) - log1p(c_s p_x)  ->  -log p_x when beta_s = 0; 0 when alpha_s = 0
    lcs = torch.where(fin_s, log_cs, zero)
    lam_x = torch.where(fin_s, _log1p_exp(lcs) - _log1p_exp(lcs + lx), -lx)
    lam_x = torch.where(a_s > 0, lam_x, zero)
    # beta_s rho S_s; vanishes when beta_s = 0 (and is below 1e-24 once c_s >= C_MAX)
    if k > 0:
        s_term = torch.where(fin_s & (c_s < C_MAX), b_s * rho * (torch.log1p(c_s) - stats.ssp.double()), zero)
    else:
        s_term = zero
    mix = a_s * lam_x + s_term  # alpha_s Lam(x) + beta_s rho S_s

    # z_t = m: f_s(x, m) Lam(m) = 0, r(m) / f_t(x, m) = 1 / beta_t
    kl_mask = b_ts / b_t.clamp_min(1e-300) * mix
    # z_t = x: divide by f_t(x, x) = alpha_t + beta_t rho; log f_t(x_hat, x) / f_t(x, x) in log1p form
    ft_xx = a_t + b_t * rho
    term_same = torch.where(a_ts > 0, a_ts * (a_s + b_s * rho) * lam_x, zero)
    lct = torch.where(fin_t, log_ct, zero)
    ratio_same = torch.where(fin_t, _log1p_exp(lct + lx) - _log1p_exp(lct), lx)
    kl_same = (term_same + b_ts * rho * mix) / ft_xx.clamp_min(1e-300) + ratio_same
    # z_t = e != x: f_s(x, e) = beta_s rho, f_t(x, e) = beta_t rho; Lam(e) = -log1p(c_s p_e)
    lam_e = torch.where(fin_s & other, -_log1p_exp(lcs + lz), zero)
    term_other = torch.where((a_ts > 0) & (b_s > 0), a_ts * b_s * lam_e, zero)
    ratio_other = _log1p_exp(lct + lz)  # log f_t(x_hat, e) / (beta_t rho) = log1p(c_t p_e)
    kl_other = (term_other + b_ts * mix) / b_t.clamp_min(1e-300) + ratio_other

    kl = torch.where(is_mask, kl_mask, torch.where(same, kl_same, kl_other))
    return torch.where(reach, kl, zero).to(out_dtype).reshape(shape)


def masked_cross_entropy(
    logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor, t: torch.Tensor, space: TokenSpace, schedule
) -> torch.Tensor:
    """The MDLM loss done the usual way (``F.cross_entropy`` on every position, then masked and
    weighted): the baseline that benchmarks compare :func:`nelbo` against. (B, L) nats."""
    shape = x0.shape
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), x0.reshape(-1), reduction="none"
    ).reshape(shape).float()  # (B, L)
    t = torch.as_tensor(t, dtype=torch.float32, device=logits.device).reshape(-1, *([1] * (len(shape) - 1)))
    weight = -schedule.alpha_prime(t) / (1 - schedule.alpha(t))  # (B, 1)
    return ce * weight * (z_t == space.mask_id)
