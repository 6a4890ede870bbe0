"""The XDLM reverse step p(z_s | z_t) (x0-parameterisation), dense and as a mixture sampler.

    p(z_s = e | z_t) = f_{t|s}(e, z_t) f_s(x_hat, e) / f_t(x_hat, z_t),
    f_{t|s}(e, z) = alpha_{t|s} [e = z] + beta_{t|s} pi_z,    alpha_{t|s} = alpha_t / alpha_s.

Expanding f_s(x_hat, e) = alpha_s x_hat_e + beta_s pi_e shows a three-way mixture

    p(. | z_t) = [ w_x Cat(x_hat) + w_pi pi + w_stay delta_{z_t} ] / f_t(x_hat, z_t),
    w_x = beta_{t|s} pi_{z_t} alpha_s,  w_pi = beta_{t|s} pi_{z_t} beta_s,  w_stay = alpha_{t|s} f_s(x_hat, z_t),

so a step needs x_hat only at z_t (one log-sum-exp for positions that are not masked) and one
categorical draw over N for the positions that pick the first component.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.core.chunking import plan_rows, run_row_chunks, single_threaded_ops
from xdlm_vision.core.process import TokenSpace, _draw_from_pi
from xdlm_vision.core.rng import RandomSource

# The chunks alive at once (one per CPU worker; each holds a float32 copy of its rows, exponentiated
# in place, then a float64 CDF: 12 bytes per element at the peak) stay within this fraction of the
# logits, so a sampler step's extra memory is a few percent of the logits.
_MEMORY_FRACTION = 1 / 64


def posterior_probs(
    logits: torch.Tensor, z_t: torch.Tensor, alpha_t: float, alpha_s: float, space: TokenSpace
) -> torch.Tensor:
    """Dense p(z_s | z_t) over all N + 1 states, for analysis and tests.

    logits (..., N); z_t (...) ids in 0..N. Returns (..., N + 1) in the logits' float dtype
    (float32 at least). Allocates (..., N + 1): not for the sampling hot path.
    """
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    p = torch.softmax(logits.to(dtype), dim=-1)  # (..., N)
    a_ts = alpha_t / alpha_s if alpha_s > 0 else 0.0
    b_ts = 1.0 - a_ts
    pi = space.stationary(dtype, logits.device)  # (N + 1,)
    fs_hat = alpha_s * torch.nn.functional.pad(p, (0, 1)) + (1 - alpha_s) * pi  # (..., N + 1)
    pi_z = pi[z_t][..., None]  # (..., 1)
    f_ts = b_ts * pi_z + a_ts * torch.nn.functional.one_hot(z_t, space.num_states).to(dtype)  # (..., N + 1)
    joint = f_ts * fs_hat  # (..., N + 1)
    return joint / joint.sum(-1, keepdim=True)


@dataclass
class PosteriorDraw:
    z_s: torch.Tensor  # (B, L) int64 next state
    component: torch.Tensor  # (B, L) int8: 0 = drew from x_hat, 1 = from pi, 2 = stayed at z_t


def _plan(logits2d: torch.Tensor, rows: torch.Tensor):
    return plan_rows(
        rows.shape[0],
        logits2d.shape[-1],
        logits2d.device,
        total_elements=logits2d.numel(),
        memory_fraction=_MEMORY_FRACTION,
    )


def log_prob_at(logits2d: torch.Tensor, rows: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits2d[rows])[ids] in float64, chunked over rows. rows, ids (M,) -> (M,)."""
    out = torch.empty(rows.shape[0], dtype=torch.float64, device=logits2d.device)

    def chunk(lo, hi):
        block = logits2d[rows[lo:hi]].float()  # (r, N)
        lse = torch.logsumexp(block, dim=-1)  # (r,)
        out[lo:hi] = (block.gather(1, ids[lo:hi, None]).squeeze(1) - lse).double()

    run_row_chunks(chunk, rows.shape[0], _plan(logits2d, rows))
    return out


def categorical_rows(logits2d: torch.Tensor, rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Exact inverse-CDF draws from softmax(logits2d[rows]) with float64 uniforms u (M,).

    The CDF is accumulated in float64, so the draw is exact for the float32 probabilities (no
    float32 Gumbel noise, whose 2^-24 resolution biases rare tokens). Chunked over rows.
    """
    out = torch.empty(rows.shape[0], dtype=torch.long, device=logits2d.device)
    n = logits2d.shape[-1]

    def chunk(lo, hi):
        block = logits2d[rows[lo:hi]]  # (r, N) a copy (advanced indexing), so it may be overwritten
        p = block.float() if block.dtype != torch.float32 else block  # (r, N)
        p = p.sub_(p.amax(-1, keepdim=True)).exp_()  # (r, N) unnormalised, in place
        cdf = torch.empty(p.shape, dtype=torch.float64, device=p.device).copy_(p)  # (r, N) exact widening
        del block, p
        cdf = cdf.cumsum_(-1)  # (r, N) in place: cumsum(..., dtype=float64) would add a float64 copy
        target = u[lo:hi, None] * cdf[:, -1:]  # (r, 1)
        out[lo:hi] = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp_max(n - 1)

    run_row_chunks(chunk, rows.shape[0], _plan(logits2d, rows))
    return out


@single_threaded_ops()  # per-position arithmetic in this thread; the vocabulary work runs in run_row_chunks
def posterior_step(
    logits: torch.Tensor,
    z_t: torch.Tensor,
    alpha_t: float,
    alpha_s: float,
    space: TokenSpace,
    generator=None,
) -> PosteriorDraw:
    """Draw z_s ~ p(z_s | z_t) with the mixture form; never builds (B, L, N + 1) probabilities.

    logits (B, L, N) (guided or not; any float dtype); z_t (B, L); 0 <= alpha_t < alpha_s <= 1.
    ``generator``: one torch.Generator or a list with one per sample (see RandomSource). Two
    float64 uniforms per position come from each sample's stream, so a sample's draw depends only
    on its own stream. At alpha_s = 1 no mask survives (w_pi = 0 and w_stay = 0 at the mask).
    """
    b, l, n = logits.shape
    dev = logits.device
    rng = RandomSource(generator, b, dev)
    u_comp = rng.uniform((l,)).reshape(-1)  # (R,) picks the component
    u_draw = rng.uniform((l,)).reshape(-1)  # (R,) draws inside the component
    z = z_t.reshape(-1)
    flat = logits.reshape(-1, n)
    k, rho = space.k, space.data_prior
    a_ts = alpha_t / alpha_s if alpha_s > 0 else 0.0
    b_ts, b_s = 1.0 - a_ts, 1.0 - alpha_s
    is_mask = z == space.mask_id

    # At the mask all three weights are constants: w_x : w_pi : w_stay = b_ts a_s : b_ts b_s : a_ts b_s
    # (the common factor pi_m = 1 - k cancels). The thresholds on u_comp are the cumulative shares.
    total_m = b_ts * alpha_s + b_ts * b_s + a_ts * b_s
    share_x_m = b_ts * alpha_s / total_m if total_m > 0 else 0.0
    share_xpi_m = (b_ts * alpha_s + b_ts * b_s) / total_m if total_m > 0 else 0.0
    thr_x = torch.full_like(u_comp, share_x_m)  # (R,) P(draw from x_hat)
    thr_pi = torch.full_like(u_comp, share_xpi_m)  # (R,) P(draw from x_hat or pi)
    # At a data token z: w_x = b_ts rho a_s, w_pi = b_ts rho b_s, w_stay = a_ts (a_s x_hat_z + b_s rho).
    # k = 0: rho = 0, MDLM keeps every token (thresholds 0). a_ts = 0: no stay, x_hat_z not needed.
    rows = (~is_mask).nonzero().squeeze(1)  # (M,)
    if rows.numel():
        if k == 0:
            thr_x[rows], thr_pi[rows] = 0.0, 0.0
        else:
            stay = 0.0
            if a_ts > 0:
                p_z = log_prob_at(flat, rows, z[rows]).exp_()  # (M,) float64
                stay = p_z.mul_(a_ts * alpha_s).add_(a_ts * b_s * rho)  # (M,) w_stay
            total = stay + b_ts * rho  # (M,) or a float: w_x + w_pi + w_stay
            thr_x[rows] = b_ts * rho * alpha_s / total
            thr_pi[rows] = b_ts * rho / total
    from_x = u_comp < thr_x  # (R,) bool
    from_pi = ~from_x & (u_comp < thr_pi)
    del u_comp, thr_x, thr_pi

    z_s = z.clone()
    rows_x = from_x.nonzero().squeeze(1)
    if rows_x.numel():
        z_s[rows_x] = categorical_rows(flat, rows_x, u_draw[rows_x])
    if bool(from_pi.any()):
        z_s[from_pi] = _draw_from_pi(u_draw[from_pi], rng, space)
    component = torch.full_like(z, 2, dtype=torch.int8)
    component[from_x] = 0
    component[from_pi] = 1
    return PosteriorDraw(z_s.reshape(b, l), component.reshape(b, l))
