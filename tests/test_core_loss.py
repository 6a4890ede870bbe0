"""The continuous-time NELBO and the finite-step KL against the dense KL of Bayes posteriors."""

import math
import random

import dense_reference as ref
import pytest
import torch

from xdlm_vision.core import TokenSpace, finite_step_kl, get_schedule, masked_cross_entropy, nelbo

ALPHA = {"linear": ref.linear_alpha, "cosine": ref.cosine_alpha}


def _all_pairs(n: int, batch: int, gen: torch.Generator, scale: float = 2.0):
    """Every (x, z_t) pair of data token x and state z_t as one row of positions, repeated per sample.

    Returns logits (B, L, N) float64 (random per position), x0 (B, L), z_t (B, L), L = N (N + 1).
    """
    x = torch.arange(n).repeat_interleave(n + 1)  # (L,)
    z = torch.arange(n + 1).repeat(n)  # (L,)
    length = x.shape[0]
    logits = scale * torch.randn(batch, length, n, generator=gen, dtype=torch.float64)  # (B, L, N)
    return logits, x.expand(batch, length).contiguous(), z.expand(batch, length).contiguous()


def _spaces(seed: int):
    """(N, k) with N in 2..9 and k in [0, 1]: 0, 1, a tiny k, and random values."""
    rnd = random.Random(seed)
    ks = [0.0, 1.0, 1e-4, rnd.random(), rnd.random(), rnd.random()]
    return [(rnd.randint(2, 9), k) for k in ks]


def _reachable(x: int, z: int, alpha: float, n: int, k: float) -> bool:
    return float(ref.marginal(ref.one_hot(x, n), alpha, k)[z]) > 0


# --- continuous-time NELBO = lim dense KL / dt ---------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("n,k", _spaces(0))
def test_nelbo_equals_dense_kl_limit(schedule, n, k):
    space, sched = TokenSpace(n, k), get_schedule(schedule)
    gen = torch.Generator().manual_seed(n + int(1000 * k))
    # (B,) per-sample t; t = 1 itself is tested against the 60-digit reference below (the float64
    # limit needs dt << k / N there)
    times = torch.tensor([0.999, 0.73, 0.31, 0.02], dtype=torch.float64)
    logits, x0, zt = _all_pairs(n, len(times), gen)
    loss = nelbo(logits, x0, zt, times, space, sched)  # (B, L)
    assert loss.shape == x0.shape and loss.dtype == torch.float64
    checked = 0
    for b, t in enumerate(times.tolist()):
        alpha = ALPHA[schedule](t)
        for i in range(x0.shape[1]):
            x, z = int(x0[b, i]), int(zt[b, i])
            if not _reachable(x, z, alpha, n, k):
                continue  # the loss is only defined where q(z_t | x) > 0
            want = float(ref.kl_rate(logits[b, i], x, z, t, ALPHA[schedule], k, dt=1e-6))
            got = float(loss[b, i])
            assert abs(got - want) <= 1e-4 * abs(want) + 1e-9, (t, x, z, got, want)
            checked += 1
    assert checked >= len(times) * n  # at least the z_t = x and mask/uniform cases


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("t", ["1e-5", "1e-4", "1e-3"])
@pytest.mark.parametrize("k", [0.0, 1e-4, 0.37, 1.0])
def test_nelbo_near_t0_equals_high_precision_limit(schedule, t, k):
    # close to t = 0 float64 dense matrices cancel; the reference runs in 60-digit arithmetic
    pytest.importorskip("mpmath")
    n = 4
    space, sched = TokenSpace(n, k), get_schedule(schedule)
    gen = torch.Generator().manual_seed(int(1e6 * float(t)) + int(100 * k))
    logits = 2.0 * torch.randn(n, generator=gen, dtype=torch.float64)
    alpha = ALPHA[schedule](float(t))
    for x, z in [(1, 1), (1, 3), (2, n)]:
        if not _reachable(x, z, alpha, n, k):
            continue
        tt = torch.tensor([float(t)], dtype=torch.float64)
        got = float(nelbo(logits[None, None], torch.tensor([[x]]), torch.tensor([[z]]), tt, space, sched))
        want = ref.kl_rate_mp(logits.tolist(), x, z, t, schedule, k)
        # 1e-6: the cosine schedule forms beta = 1 - alpha, which near t = 0 keeps only ~7 digits
        assert abs(got - want) <= 1e-6 * abs(want) + 1e-12, (x, z, got, want)


NEAR_ONE_SPACES = [(4, 0.0), (4, 1.0), (9, 0.3), (8, 1e-4), (64, 0.1), (64, 1e-4)]


@pytest.mark.parametrize("n,k", NEAR_ONE_SPACES)
@pytest.mark.parametrize("t", [1.0, 1 - 1e-13, 1 - 1e-7, 1 - 1e-5])
def test_nelbo_near_t1_equals_high_precision_limit(n, k, t):
    # at t = 1 (alpha = 0) z_t carries no information about x: for k > 0 the limit KL / dt is 0
    # (the two posteriors differ by O(dt) around pi), for k = 0 it is MDLM's -log x_hat_x. Just
    # below t = 1 the loss grows like alpha / (k / N)^2, so small k / N probes the limit hardest.
    pytest.importorskip("mpmath")
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = 2.0 * torch.randn(n, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    tt = torch.tensor([t], dtype=torch.float64)
    alpha = 1.0 - t
    for x, z in [(0, 0), (0, 1), (0, n)]:
        if not _reachable(x, z, alpha, n, k):
            continue
        got = float(nelbo(logits[None, None], torch.tensor([[x]]), torch.tensor([[z]]), tt, space, sched))
        want = ref.kl_rate_mp(logits.tolist(), x, z, t, "linear", k)  # t is an exact binary float
        if t == 1.0 and k > 0:
            assert abs(want) < 1e-20
        if t == 1.0 and k == 0:
            assert abs(want - float(-torch.log_softmax(logits, -1)[x])) < 1e-12
        assert abs(got - want) <= 1e-6 * abs(want) + 1e-10, (x, z, got, want)


def test_nelbo_python_float_t_keeps_float64_precision():
    # a Python float t must be used as given, not rounded to float32 first (near t = 1 the loss
    # depends on alpha = 1 - t, whose float32 rounding error is relative 1e-7 / alpha)
    pytest.importorskip("mpmath")
    n, k = 8, 0.1
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = 2.0 * torch.randn(1, 1, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, z = torch.tensor([[0]]), torch.tensor([[1]])
    for t in [0.9999999, 0.999999, 0.3]:
        as_float = float(nelbo(logits, x, z, t, space, sched))
        as_tensor = float(nelbo(logits, x, z, torch.tensor([t], dtype=torch.float64), space, sched))
        want = ref.kl_rate_mp(logits[0, 0].tolist(), 0, 1, t, "linear", k)
        assert abs(as_tensor - want) <= 1e-8 * abs(want), (t, as_tensor, want)
        assert abs(as_float - want) <= 1e-8 * abs(want), (t, as_float, want)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_nelbo_gradient_equals_dense_limit_gradient(schedule):
    # d/d logits of the loss = d/d logits of lim KL / dt (autograd through the dense reference)
    rnd = random.Random(5)
    for trial in range(12):
        n = rnd.randint(2, 6)
        k = [0.0, 1.0, rnd.random()][trial % 3]
        t = rnd.uniform(0.05, 0.95)
        x = rnd.randrange(n)
        z = rnd.choice(ref.reachable_states(x, ALPHA[schedule](t), n, k))
        base = 1.5 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(trial))
        lg = base.clone().requires_grad_(True)
        nelbo(
            lg[None, None],
            torch.tensor([[x]]),
            torch.tensor([[z]]),
            t,
            TokenSpace(n, k),
            get_schedule(schedule),
        ).sum().backward()
        lr = base.clone().requires_grad_(True)
        ref.kl_rate(lr, x, z, t, ALPHA[schedule], k, dt=1e-6).backward()
        scale = float(lr.grad.abs().max()) + 1e-9
        assert float((lg.grad - lr.grad).abs().max()) <= 1e-4 * scale + 1e-9, (
            n,
            k,
            t,
            x,
            z,
            lg.grad,
            lr.grad,
        )


# --- the two limits in closed form -------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_nelbo_k0_is_exactly_mdlm(schedule):
    n = 7
    space, sched = TokenSpace(n, 0.0), get_schedule(schedule)
    gen = torch.Generator().manual_seed(1)
    times = torch.tensor([1.0, 0.5, 1e-3, 1e-5], dtype=torch.float64)
    logits = 3.0 * torch.randn(len(times), 40, n, generator=gen, dtype=torch.float64)  # (B, L, N)
    x0 = torch.randint(0, n, (len(times), 40), generator=gen)
    zt = torch.where(
        torch.rand(len(times), 40, generator=gen) < 0.5, x0, torch.full_like(x0, n)
    )  # k = 0 states
    got = nelbo(logits, x0, zt, times, space, sched)
    alpha, dalpha = sched.alpha(times), sched.alpha_prime(times)
    want = torch.stack(
        [
            torch.stack(
                [
                    ref.mdlm_loss(
                        logits[b, i], int(x0[b, i]), int(zt[b, i]), float(alpha[b]), float(dalpha[b]), n
                    )
                    for i in range(40)
                ]
            )
            for b in range(len(times))
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-13, atol=0)
    # float32 logits: the same up to float32 rounding of log x_hat_x
    fp32 = nelbo(logits.float(), x0, zt, times, space, sched)
    torch.testing.assert_close(fp32, want.float(), rtol=1e-5, atol=1e-6)
    # the MDLM baseline done with F.cross_entropy agrees; it evaluates alpha_t in float32, so it is
    # compared away from t -> 0 where 1 - alpha_t in float32 has few digits
    t32 = torch.tensor([1.0, 0.5, 0.2, 0.05])
    base = masked_cross_entropy(logits.float(), x0, zt, t32, space, sched)
    ours = nelbo(logits.float(), x0, zt, t32, space, sched)
    torch.testing.assert_close(base, ours, rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_nelbo_k1_is_udlm(schedule):
    rnd = random.Random(2)
    sched = get_schedule(schedule)
    for trial in range(30):
        n = rnd.randint(2, 9)
        t = [1e-3, rnd.uniform(0.01, 0.99), 0.999][trial % 3]
        x, z = rnd.randrange(n), rnd.randrange(n)  # at k = 1 the mask never occurs
        logits = 2.0 * torch.randn(n, dtype=torch.float64, generator=torch.Generator().manual_seed(trial))
        tt = torch.tensor(t, dtype=torch.float64)
        got = float(
            nelbo(logits[None, None], torch.tensor([[x]]), torch.tensor([[z]]), tt, TokenSpace(n, 1.0), sched)
        )
        want = float(ref.udlm_loss(logits, x, z, float(sched.alpha(tt)), float(sched.alpha_prime(tt))))
        assert abs(got - want) <= 1e-9 * abs(want) + 1e-12, (n, t, x, z, got, want)
        if 0.01 < t < 0.99:  # and the closed form is itself the dense limit
            lim = float(ref.kl_rate(logits, x, z, t, ALPHA[schedule], 1.0, dt=1e-6))
            assert abs(want - lim) <= 1e-5 * abs(lim) + 1e-9


# --- finite-step KL = dense KL -----------------------------------------------------------------

KL_STEPS = [
    # (alpha_t, alpha_s)
    (0.0, 0.125),  # first step from the prior
    (0.0, 1.0),  # a single step from the prior to the data
    (0.4, 1.0),  # last step: no mask survives
    (0.9375, 1.0),
    (0.25, 0.5),
    (0.6, 0.6000001),  # a tiny step
]


@pytest.mark.parametrize("n,k", _spaces(1))
def test_finite_step_kl_equals_dense_kl(n, k):
    space = TokenSpace(n, k)
    gen = torch.Generator().manual_seed(10 * n + int(1000 * k))
    a_t = torch.tensor([s[0] for s in KL_STEPS], dtype=torch.float64)  # (B,)
    a_s = torch.tensor([s[1] for s in KL_STEPS], dtype=torch.float64)  # (B,)
    logits, x0, zt = _all_pairs(n, len(KL_STEPS), gen)
    got = finite_step_kl(logits, x0, zt, a_t, a_s, space)  # (B, L)
    assert got.shape == x0.shape and got.dtype == torch.float64
    for b, (at, as_) in enumerate(KL_STEPS):
        for i in range(x0.shape[1]):
            x, z = int(x0[b, i]), int(zt[b, i])
            if not _reachable(x, z, at, n, k):
                assert float(got[b, i]) == 0.0, "positions q cannot produce must give 0"
                continue
            want = float(ref.step_kl(logits[b, i], x, z, at, as_, k))
            assert abs(float(got[b, i]) - want) <= 1e-8 * abs(want) + 1e-14, (
                at,
                as_,
                x,
                z,
                float(got[b, i]),
                want,
            )


@pytest.mark.parametrize("k", [0.0, 0.2, 1.0])
def test_finite_step_kl_float32_chunked_matches_float64(k):
    n = 5
    space = TokenSpace(n, k)
    a_t = torch.tensor([0.3, 0.3], dtype=torch.float64)
    a_s = torch.tensor([0.7, 0.7], dtype=torch.float64)
    logits, x0, zt = _all_pairs(n, 2, torch.Generator().manual_seed(3))
    f64 = finite_step_kl(logits, x0, zt, a_t, a_s, space)
    f32 = finite_step_kl(logits.float(), x0, zt, a_t, a_s, space, chunk_elements=3 * n)
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32, f64.float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("a_t,a_s", [(0.3, 0.7), (0.999, 0.9991), (0.0, 0.001)])
def test_finite_step_kl_python_float_alphas_keep_float64_precision(a_t, a_s):
    # scalar Python alphas must be used as given (not rounded to float32): the KL of a small step
    # depends on alpha_s - alpha_t, which float32 rounding of either alpha changes at 1e-4 relative
    n, k = 5, 0.3
    space = TokenSpace(n, k)
    logits, x0, zt = _all_pairs(n, 1, torch.Generator().manual_seed(1))
    scalar = finite_step_kl(logits, x0, zt, a_t, a_s, space)
    tensor = finite_step_kl(
        logits,
        x0,
        zt,
        torch.tensor([a_t], dtype=torch.float64),
        torch.tensor([a_s], dtype=torch.float64),
        space,
    )
    want = torch.tensor(
        [
            [
                float(ref.step_kl(logits[0, i], int(x0[0, i]), int(zt[0, i]), a_t, a_s, k))
                if _reachable(int(x0[0, i]), int(zt[0, i]), a_t, n, k)
                else 0.0
                for i in range(x0.shape[1])
            ]
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(tensor, want, rtol=1e-8, atol=1e-14)
    torch.testing.assert_close(scalar, want, rtol=1e-8, atol=1e-14)


def test_finite_step_kl_k0_is_mdlm_discrete_loss():
    # MDLM's discrete-time term: (alpha_s - alpha_t) / (1 - alpha_t) (-log x_hat_x) at masked positions
    n = 6
    space = TokenSpace(n, 0.0)
    gen = torch.Generator().manual_seed(4)
    logits = 2.0 * torch.randn(3, 12, n, generator=gen, dtype=torch.float64)
    x0 = torch.randint(0, n, (3, 12), generator=gen)
    zt = torch.where(torch.arange(12) % 2 == 0, x0, torch.full_like(x0, n))
    a_t = torch.tensor([0.0, 0.3, 0.8], dtype=torch.float64)
    a_s = torch.tensor([0.5, 1.0, 0.9], dtype=torch.float64)
    got = finite_step_kl(logits, x0, zt, a_t, a_s, space)
    nll = -torch.log_softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1)
    want = ((a_s - a_t) / (1 - a_t))[:, None] * nll * (zt == n)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


def test_finite_step_kl_sums_to_continuous_loss():
    # many small steps: sum_i KL_i  ->  integral of the NELBO over t (a quadrature consistency check)
    n, k = 5, 0.3
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = torch.randn(1, 1, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x, z = torch.tensor([[2]]), torch.tensor([[4]])  # z_t a different data token, kept fixed
    ts = torch.linspace(0.2, 0.8, 2001, dtype=torch.float64)
    alphas = 1 - ts  # (2001,) decreasing in t
    kls = finite_step_kl(
        logits.expand(2000, 1, n), x.expand(2000, 1), z.expand(2000, 1), alphas[1:], alphas[:-1], space
    )
    rates = nelbo(logits.expand(2001, 1, n), x.expand(2001, 1), z.expand(2001, 1), ts, space, sched)[:, 0]
    trap = float(((rates[1:] + rates[:-1]) * 0.5 * ts.diff()).sum())  # integral of the rate over [0.2, 0.8]
    assert abs(float(kls.sum()) - trap) < 1e-3 * abs(trap), (float(kls.sum()), trap)


# --- perfect predictor -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0.0, 1e-4, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_perfect_predictor_has_zero_loss(k, dtype):
    n = 6
    space = TokenSpace(n, k)
    times = torch.tensor([1.0, 0.5, 1e-2, 1e-5], dtype=torch.float64)
    _, x0, zt = _all_pairs(n, len(times), torch.Generator().manual_seed(0))
    logits = (60.0 * torch.nn.functional.one_hot(x0, n)).to(dtype)  # x_hat = one-hot(x) up to e^-60
    for schedule in ["linear", "cosine"]:
        loss = nelbo(logits, x0, zt, times, space, get_schedule(schedule))
        assert bool(torch.isfinite(loss).all())
        tol = 1e-9 if dtype == torch.float64 else 1e-6  # float32 row statistics: rounding noise only
        assert float(loss.abs().max()) < tol, float(loss.abs().max())
    kl = finite_step_kl(
        logits, x0, zt, torch.tensor([0.0, 0.2, 0.5, 0.9]), torch.tensor([0.5, 1.0, 0.6, 1.0]), space
    )
    assert float(kl.abs().max()) < tol
    # and an imperfect predictor costs something wherever z_t is informative
    worse = nelbo(logits.roll(1, dims=-1), x0, zt, times, space, get_schedule("linear"))
    assert float(worse.max()) > 1.0


# --- fp32 chunked path vs float64 autograd; bf16 -----------------------------------------------


@pytest.mark.parametrize("k", [0.0, 1e-4, 0.3, 1.0])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_float32_chunked_matches_float64_autograd(k, schedule):
    n = 9
    space, sched = TokenSpace(n, k), get_schedule(schedule)
    gen = torch.Generator().manual_seed(int(k * 1e4) + 1)
    times = torch.tensor([0.999, 0.8, 0.4, 0.05], dtype=torch.float64)  # t = 1: see the test below
    base, x0, zt = _all_pairs(n, len(times), gen)  # (4, 90, 9) logits: 360 rows
    keep = torch.stack(
        [
            torch.tensor(
                [
                    _reachable(int(x0[b, i]), int(zt[b, i]), float(sched.alpha(times[b])), n, k)
                    for i in range(x0.shape[1])
                ]
            )
            for b in range(len(times))
        ]
    )  # (B, L) positions q can produce
    zt = torch.where(keep, zt, x0)  # replace impossible states by the clean token (reachable for t < 1)
    w = torch.rand(x0.shape, generator=gen, dtype=torch.float64)  # random cotangent

    l64 = base.clone().requires_grad_(True)
    v64 = nelbo(l64, x0, zt, times, space, sched)
    (v64 * w).sum().backward()
    l32 = base.float().requires_grad_(True)
    v32 = nelbo(l32, x0, zt, times, space, sched, chunk_elements=7 * n)  # 7 rows / chunk: 52 chunks
    assert v32.dtype == torch.float32
    (v32 * w.float()).sum().backward()
    l32b = base.float().requires_grad_(True)
    v32b = nelbo(l32b, x0, zt, times, space, sched)  # default chunking
    (v32b * w.float()).sum().backward()

    assert bool(torch.isfinite(v32).all()) and bool(torch.isfinite(l32.grad).all())
    torch.testing.assert_close(v32.double(), v64.detach(), rtol=1e-5, atol=1e-5)
    gscale = float(l64.grad.abs().max())
    torch.testing.assert_close(l32.grad.double(), l64.grad, rtol=1e-4, atol=1e-5 * gscale)
    torch.testing.assert_close(v32b, v32, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(l32b.grad, l32.grad, rtol=1e-5, atol=1e-7 * gscale)


@pytest.mark.parametrize("t", [1.0, 1 - 1e-9])
def test_float32_gradient_near_t1_matches_float64(t):
    # alpha_t ~ 0 with a small k / N: c = alpha / (beta k / N) is tiny; the loss and its gradient
    # vanish (t = 1: no information) and the float32 path must not add O(1) gradient noise
    n, k = 9, 1e-4
    space, sched = TokenSpace(n, k), get_schedule("linear")
    base, x0, zt = _all_pairs(n, 1, torch.Generator().manual_seed(6))
    zt = torch.where(zt == n, x0, zt)  # data tokens only (all reachable for k > 0)
    times = torch.tensor([t], dtype=torch.float64)
    l64 = base.clone().requires_grad_(True)
    nelbo(l64, x0, zt, times, space, sched).sum().backward()
    l32 = base.float().requires_grad_(True)
    nelbo(l32, x0, zt, times, space, sched).sum().backward()
    gscale = max(float(l64.grad.abs().max()), 1e-3)
    torch.testing.assert_close(l32.grad.double(), l64.grad, rtol=1e-4, atol=1e-5 * gscale)


@pytest.mark.parametrize("k", [0.0, 0.1, 1.0])
def test_bf16_logits_match_fp32_of_rounded_logits(k):
    n = 8
    space, sched = TokenSpace(n, k), get_schedule("linear")
    gen = torch.Generator().manual_seed(2)
    base, x0, zt = _all_pairs(n, 3, gen)
    if k == 1.0:
        zt = torch.where(zt == n, x0, zt)
    if k == 0.0:
        zt = torch.where((zt != n) & (zt != x0), x0, zt)
    times = torch.tensor([0.9, 0.5, 0.1])
    lb = base.bfloat16().requires_grad_(True)
    vb = nelbo(lb, x0, zt, times, space, sched, chunk_elements=5 * n)
    vb.sum().backward()
    lf = base.bfloat16().float().requires_grad_(True)  # the same values in fp32
    vf = nelbo(lf, x0, zt, times, space, sched)
    vf.sum().backward()
    assert vb.dtype == torch.float32 and lb.grad.dtype == torch.bfloat16
    assert bool(torch.isfinite(vb).all()) and bool(torch.isfinite(lb.grad.float()).all())
    torch.testing.assert_close(vb, vf, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(lb.grad.float(), lf.grad, rtol=1e-2, atol=1e-2 * float(lf.grad.abs().max()))


# --- input checks ------------------------------------------------------------------------------


def test_loss_rejects_bad_shapes_and_times():
    space, sched = TokenSpace(4, 0.5), get_schedule("linear")
    x = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="logits"):
        nelbo(torch.zeros(2, 3, 5), x, x, 0.5, space, sched)  # a mask column is not allowed
    with pytest.raises(ValueError):
        nelbo(torch.zeros(2, 3, 4), x, x[:, :2], 0.5, space, sched)
    with pytest.raises(ValueError):
        finite_step_kl(torch.zeros(2, 3, 4), x, x, 0.7, 0.3, space)  # alpha_s < alpha_t
    with pytest.raises(ValueError):
        finite_step_kl(torch.zeros(2, 3, 5), x, x, 0.3, 0.7, space)


def test_nelbo_scalar_and_per_sample_t_agree():
    n = 5
    space, sched = TokenSpace(n, 0.4), get_schedule("cosine")
    logits, x0, zt = _all_pairs(n, 3, torch.Generator().manual_seed(8))
    a = nelbo(logits, x0, zt, torch.tensor(0.35, dtype=torch.float64), space, sched)
    b = nelbo(logits, x0, zt, torch.full((3,), 0.35, dtype=torch.float64), space, sched)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert math.isfinite(float(a.sum()))
