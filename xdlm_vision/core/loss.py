"""XDLM training objectives: the continuous-time NELBO and the finite-step KL.

Notation (DESIGN.md §2): N data tokens, mask m = N, rho = k / N = pi_e for data tokens,
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

    L = -alpha'_t r(z_t) / f_t(x, z_t) * h_t,   h_t as in DESIGN.md §2,

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

from xdlm_vision.core.process import TokenSpace
from xdlm_vision.core.row_stats import row_stats
from xdlm_vision.errors import UserError

# c above this is treated as infinite: T4 = S / c < N log(C_MAX) / C_MAX ~ 1e-24 is dropped, and
# the float32 row statistics never see a larger c (no overflow of c * p).
C_MAX = 1e30
# alpha_t is clamped from below in the k > 0 formulas; every term there vanishes as alpha -> 0.
ALPHA_MIN = 1e-12


def _check(logits: torch.Tensor, x0: torch.Tensor, z_t: torch.Tensor, space: TokenSpace) -> None:
    if logits.ndim < 2 or logits.shape[-1] != space.num_tokens:
        raise UserError(
            f"logits must have shape (..., N={space.num_tokens}) (no mask column), got {tuple(logits.shape)}"
        )
    if x0.shape != logits.shape[:-1] or z_t.shape != x0.shape:
        raise UserError(
            f"x0 {tuple(x0.shape)} and z_t {tuple(z_t.shape)} must match logits {tuple(logits.shape)} without N"
        )


def _per_position(value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Broadcast a per-sample (B,) or scalar value to the per-position shape, flattened (R,)."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if value.ndim == 1:
        value = value.reshape(-1, *([1] * (len(shape) - 1)))  # (B, 1, ...)
    return value.expand(shape).reshape(-1)


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
    t64 = _per_position(torch.as_tensor(t).detach().cpu(), shape).to(logits.device)  # (R,)
    alpha = schedule.alpha(t64).clamp(0.0, 1.0)  # (R,)
    dalpha = schedule.alpha_prime(t64)  # (R,)
    beta = 1.0 - alpha
    is_mask = z == space.mask_id
    # -alpha'/beta: finite wherever z_t can differ from x0 (beta > 0); 0 where beta = 0 (unused)
    rate = torch.where(beta > 0, -dalpha / beta.clamp_min(1e-300), torch.zeros_like(beta))

    if space.k == 0.0:  # MDLM: only masked positions carry loss, = rate * (-log p_x)
        stats = row_stats(flat, x, chunk_elements=chunk_elements)
        weight = torch.where(is_mask, rate, torch.zeros_like(rate))  # (R,) constant
        return (weight * -stats.lx.double()).to(out_dtype).reshape(shape)

    rho = space.k / n
    a = alpha.clamp_min(ALPHA_MIN)
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
    return loss.to(out_dtype).reshape(shape)


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

    alpha_t < alpha_s (s is the earlier, cleaner time), each (B,) or scalar. Both posteriors have
    the form f_{t|s}(e, z) f_s(y, e) / f_t(y, z) (y = x0 one-hot or x_hat), so with
    Lam(e) = log f_s(x, e) / f_s(x_hat, e) (Lam(m) = 0):

        KL = [alpha_{t|s} f_s(x, z) Lam(z) + beta_{t|s} r(z) (alpha_s Lam(x) + beta_s rho S_s)] / f_t(x, z)
             + log f_t(x_hat, z) / f_t(x, z),
        S_s = sum_{e<N} Lam(e) = log1p(c_s) - sum_e log1p(c_s p_e),  c_s = alpha_s / (beta_s rho).

    Returns (B, L) like :func:`nelbo`; positions that q cannot produce (f_t(x, z) = 0) give 0.
    """
    _check(logits, x0, z_t, space)
    shape = x0.shape
    out_dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    n, k = space.num_tokens, space.k
    rho = k / n
    flat = logits.reshape(-1, n)
    x, z = x0.reshape(-1), z_t.reshape(-1)
    dev = logits.device
    a_t = _per_position(torch.as_tensor(alpha_t).detach().cpu(), shape).to(dev)
    a_s = _per_position(torch.as_tensor(alpha_s).detach().cpu(), shape).to(dev)
    if bool((a_s < a_t).any()):
        raise UserError("finite_step_kl needs alpha_s >= alpha_t (s earlier than t)")
    b_t, b_s = 1.0 - a_t, 1.0 - a_s
    a_ts = torch.where(a_s > 0, a_t / a_s.clamp_min(1e-300), torch.zeros_like(a_s))
    b_ts = 1.0 - a_ts
    is_mask = z == space.mask_id
    same = z == x

    if k > 0:
        c_s = (a_s / (b_s * rho)).clamp_max(C_MAX)  # beta_s = 0 gives inf -> C_MAX
        stats = row_stats(flat, x, z, c_s, chunk_elements=chunk_elements)
    else:
        stats = row_stats(flat, x, z, chunk_elements=chunk_elements)
    lx, lz = stats.lx.double(), stats.lz.double()
    lz = torch.where(is_mask, torch.zeros_like(lz), lz)
    neg_inf = torch.full_like(a_t, -math.inf)

    def log_(v):
        return torch.where(v > 0, torch.log(v.clamp_min(1e-300)), neg_inf)

    # log f_s(x_hat, e) and log f_s(x, e) at e = x and e = z (data), in log space so beta_s = 0 works
    log_bs_rho = log_(b_s * rho)
    lam_x = torch.logaddexp(log_(a_s), log_bs_rho) - torch.logaddexp(log_(a_s) + lx, log_bs_rho)
    lam_z_other = log_bs_rho - torch.logaddexp(log_(a_s) + lz, log_bs_rho)
    fs_x_z = torch.where(is_mask, b_s * (1 - k), torch.where(same, a_s + b_s * rho, b_s * rho))
    lam_z = torch.where(same, lam_x, torch.where(is_mask | (fs_x_z <= 0), torch.zeros_like(lx), lam_z_other))
    if k > 0:
        s_sum = torch.where(b_s > 0, b_s * rho * (torch.log1p(c_s) - stats.ssp.double()), torch.zeros_like(a_s))
    else:
        s_sum = torch.zeros_like(a_s)
    r_z = torch.where(is_mask, torch.full_like(a_t, 1 - k), torch.full_like(a_t, rho))
    ft_x_z = torch.where(same, a_t, torch.zeros_like(a_t)) + b_t * r_z
    # log f_t(x_hat, z) - log f_t(x, z); identical at z = m
    log_bt_r = log_(b_t * r_z)
    log_ft_hat_z = torch.where(is_mask, log_bt_r, torch.logaddexp(log_(a_t) + lz, log_bt_r))
    log_ratio_t = torch.where(is_mask, torch.zeros_like(lx), log_ft_hat_z - log_(ft_x_z))

    inner = a_ts * fs_x_z * lam_z + b_ts * r_z * (a_s * lam_x + s_sum)
    valid = ft_x_z > 0
    kl = torch.where(valid, inner / ft_x_z.clamp_min(1e-300) + torch.where(valid, log_ratio_t, 0.0), 0.0)
    return kl.to(out_dtype).reshape(shape)


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
