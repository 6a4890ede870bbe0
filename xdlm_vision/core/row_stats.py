"""Per-row scalars of a softmax over a large vocabulary, computed in row chunks.

The XDLM loss and KL need, per position, only three scalars of the predicted distribution
p = softmax(logits) over the N data tokens:

    lx  = log p_x                      (at the clean token x)
    lz  = log p_z                      (at the noisy token z_t, when it is a data token)
    ssp = sum_e log(1 + c p_e)         (c > 0 a per-row constant; skipped when k = 0)

:func:`row_stats` computes them with a custom autograd function that walks the logits in row
chunks, so neither the forward nor the backward pass keeps an (rows, N) temporary beyond one
chunk per worker: the only full-size tensor it allocates is the gradient of the logits itself.
Chunk sizes and the CPU worker threads come from :mod:`xdlm_vision.core.chunking` (a few large
chunks on CUDA, cache-sized ones shared by single-threaded workers on CPU).

Gradient (p the softmax, sigma_e = c p_e / (1 + c p_e), T = sum_e sigma_e):
    d lx / d l_j  = [j = x] - p_j
    d lz / d l_j  = [j = z] - p_j
    d ssp / d l_j = sigma_j - p_j T
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xdlm_vision.core.chunking import ChunkPlan, plan_rows, run_row_chunks


class _RowStats(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, x, z, c, plan: ChunkPlan):  # logits (R, N); x, z (R,) int64; c (R,) float32 or None
        rows, _n = logits.shape
        lse = torch.empty(rows, dtype=torch.float32, device=logits.device)  # (R,)
        ssp = torch.zeros(rows, dtype=torch.float32, device=logits.device)  # (R,)

        def chunk(lo, hi):
            block = logits[lo:hi].float()  # (r, N) — a view when logits are float32
            peak = block.amax(dim=-1, keepdim=True)  # (r, 1)
            e = torch.sub(block, peak).exp_()  # (r, N) exp(l - max)
            total = e.sum(dim=-1, keepdim=True)  # (r, 1)
            lse[lo:hi] = (peak + total.log()).squeeze(-1)
            if c is not None:
                # c p_e = c exp(l - max) / total; one log1p per element, no second exp
                ssp[lo:hi] = e.mul_(c[lo:hi, None] / total).log1p_().sum(dim=-1)

        run_row_chunks(chunk, rows, plan)
        lx = logits.gather(1, x[:, None]).squeeze(1).float() - lse  # (R,)
        lz = logits.gather(1, z[:, None]).squeeze(1).float() - lse  # (R,)
        ctx.save_for_backward(logits, x, z, lse, c if c is not None else lse.new_empty(0))
        ctx.has_c = c is not None
        ctx.plan = plan
        return lx, lz, ssp

    @staticmethod
    def backward(ctx, g_x, g_z, g_s):
        logits, x, z, lse, c = ctx.saved_tensors
        rows, _ = logits.shape
        g_x = torch.zeros_like(lse) if g_x is None else g_x.float()  # (R,)
        g_z = torch.zeros_like(lse) if g_z is None else g_z.float()  # (R,)
        use_s = ctx.has_c and g_s is not None
        grad = torch.empty_like(logits)  # (R, N) the only full-size allocation
        direct = grad.dtype == torch.float32  # write straight into the gradient, no extra copy
        inv_c = 1.0 / c if ctx.has_c else None  # (R,) inf where c = 0 gives sigma = 0, as it should

        def chunk(lo, hi):
            p = torch.sub(logits[lo:hi].float(), lse[lo:hi, None]).exp_()  # (r, N) softmax
            coef = g_x[lo:hi] + g_z[lo:hi]  # (r,)
            if use_s:
                gs = g_s[lo:hi].float()
                sigma = torch.add(p, inv_c[lo:hi, None])  # (r, N) p + 1/c
                torch.div(p, sigma, out=sigma)  # c p / (1 + c p), exact also where c p << 1
                coef = coef + gs * sigma.sum(dim=-1)
                out = grad[lo:hi] if direct else sigma
                torch.mul(sigma, gs[:, None], out=out)
                out.addcmul_(p, -coef[:, None])  # (r, N) g_S sigma - p (g_x + g_z + g_S T)
            else:
                out = torch.mul(p, -coef[:, None], out=grad[lo:hi] if direct else p)  # (r, N)
            out.scatter_add_(1, x[lo:hi, None], g_x[lo:hi, None])
            out.scatter_add_(1, z[lo:hi, None], g_z[lo:hi, None])
            if not direct:
                grad[lo:hi] = out

        run_row_chunks(chunk, rows, ctx.plan)
        return grad, None, None, None, None


@dataclass
class RowStats:
    lx: torch.Tensor  # (R,) log p at the clean token
    lz: torch.Tensor  # (R,) log p at z (meaningless where z was not a data token)
    ssp: torch.Tensor  # (R,) sum_e log1p(c p_e); zeros when c is None


def row_stats(
    logits: torch.Tensor,
    x: torch.Tensor,
    z: torch.Tensor | None = None,
    c: torch.Tensor | None = None,
    chunk_elements: int | None = None,
) -> RowStats:
    """Chunked, memory-lean softmax statistics; differentiable w.r.t. ``logits``.

    logits (R, N) float32/bf16/float64 (computed in float32, or float64 for float64 input —
    then no chunk is upcast); x (R,) int64 in 0..N-1; z (R,) int64 (ids >= N are clamped, their
    ``lz`` is then meaningless and should be unused); c (R,) positive, finite, or None.
    Returns float32 stats (float64 for float64 logits). ``chunk_elements`` overrides the
    chunk size of :func:`xdlm_vision.core.chunking.plan_rows` (tests).
    """
    n = logits.shape[-1]
    z = x if z is None else z.clamp_max(n - 1)
    if logits.dtype == torch.float64:
        return _row_stats_dense64(logits, x, z, c)
    c32 = None if c is None else c.float().contiguous()
    # forward: block + exponentials; backward: p + sigma — two (r, N) float32 temporaries per chunk
    plan = plan_rows(logits.shape[0], n, logits.device, memory_fraction=1 / 16, chunk_elements=chunk_elements)
    lx, lz, ssp = _RowStats.apply(logits, x.contiguous(), z.contiguous(), c32, plan)
    return RowStats(lx, lz, ssp)


def _row_stats_dense64(logits, x, z, c) -> RowStats:
    """Float64 path (tests and analysis): plain autograd, exact to float64."""
    logp = torch.log_softmax(logits, dim=-1)  # (R, N)
    lx = logp.gather(1, x[:, None]).squeeze(1)
    lz = logp.gather(1, z[:, None]).squeeze(1)
    if c is None:
        ssp = torch.zeros_like(lx)
    else:
        ssp = torch.log1p(c.double()[:, None] * logp.exp()).sum(-1)
    return RowStats(lx, lz, ssp)
