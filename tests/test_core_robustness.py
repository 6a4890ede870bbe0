"""No NaN / inf from the loss, the KL and the sampler step over the whole range of t, k and logits."""

import math

import dense_reference as ref
import pytest
import torch

from xdlm_vision.core import TokenSpace, finite_step_kl, get_schedule, nelbo, posterior_step

KS = [0.0, 1e-4, 0.1, 1.0]
TIMES = [1e-5, 1e-4, 1e-3, 0.01, 0.3, 0.7, 0.99, 0.999999, 1.0]
N = 7


def _logit_kinds(x0: torch.Tensor, k: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """(B, L, N) float32 logits of several awkward kinds for clean tokens x0 (B, L)."""
    b, l = x0.shape
    normal = 3.0 * torch.randn(b, l, N, generator=gen)
    hot = torch.nn.functional.one_hot(x0, N).bool()
    neg_inf = normal.clone()
    drop = torch.rand(b, l, N, generator=gen) < 0.5
    if k == 0.0:
        drop &= ~hot  # at k = 0 a zero probability at the truth has infinite loss, by definition
    drop &= ~torch.nn.functional.one_hot((x0 + 2) % N, N).bool()  # keep one finite entry per row
    neg_inf[drop] = -math.inf
    huge = normal.clone()
    huge[torch.rand(b, l, N, generator=gen) < 0.3] = 1e4  # several huge entries per row
    huge[..., 0] = -1e4
    return {
        "normal": normal,
        "neg_inf": neg_inf,
        "huge": huge,
        "confident_wrong": 1e4 * torch.nn.functional.one_hot((x0 + 1) % N, N).float(),
        "bf16": normal.bfloat16(),
        "bf16_huge": huge.bfloat16(),
    }


def _states(k: float, gen: torch.Generator, length: int = 64):
    """Clean tokens and noisy states that the forward process can produce at some t in (0, 1)."""
    x0 = torch.randint(0, N, (len(TIMES), length), generator=gen)
    other = torch.randint(0, N, x0.shape, generator=gen)
    choice = torch.randint(0, 3, x0.shape, generator=gen)
    zt = torch.where(choice == 0, x0, torch.where(choice == 1, other, torch.full_like(x0, N)))
    if k == 0.0:
        zt = torch.where(choice == 1, torch.full_like(x0, N), zt)  # no uniform noise
    if k == 1.0:
        zt = torch.where(zt == N, other, zt)  # no mask
    return x0, zt


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_nelbo_finite_everywhere(k, schedule):
    space, sched = TokenSpace(N, k), get_schedule(schedule)
    gen = torch.Generator().manual_seed(int(k * 1e4) + len(schedule))
    x0, zt = _states(k, gen)
    for t_dtype in [torch.float32, torch.float64]:
        times = torch.tensor(TIMES, dtype=t_dtype)  # (B,) one t per sample, 1e-5 .. 1 exactly
        for name, logits in _logit_kinds(x0, k, gen).items():
            lg = logits.clone().requires_grad_(True)
            loss = nelbo(lg, x0, zt, times, space, sched, chunk_elements=5 * N)
            assert bool(torch.isfinite(loss).all()), (name, t_dtype, loss[~torch.isfinite(loss)])
            # a KL rate is >= 0; allow float32 rounding noise
            low, high = float(loss.detach().min()), float(loss.detach().abs().max())
            assert low >= -1e-5 * (1.0 + high), (name, low)
            loss.sum().backward()
            grad = lg.grad.float()
            assert bool(torch.isfinite(grad).all()), (name, t_dtype)
            if name == "neg_inf":  # a zero probability gets no gradient
                assert float(grad[torch.isinf(logits)].abs().max()) == 0.0


@pytest.mark.parametrize("k", KS)
def test_finite_step_kl_matches_dense_kl_for_awkward_logits(k):
    # finite where the dense KL is finite (with a finite gradient), +inf where it is +inf (the model
    # gives zero probability to a state q can reach, e.g. p(x) = 0 at the last step), never NaN
    space = TokenSpace(N, k)
    gen = torch.Generator().manual_seed(int(k * 1e4) + 7)
    x0, zt = _states(k, gen, length=24)
    # (B,) steps alpha_t -> alpha_s: from the prior (alpha_t = 0), to the data (alpha_s = 1), tiny ones
    a_t = torch.tensor([0.0, 0.0, 1e-6, 0.3, 0.5, 0.9, 0.99, 0.999999, 0.99999], dtype=torch.float64)
    a_s = torch.tensor([1e-5, 1.0, 2e-6, 0.31, 1.0, 0.95, 1.0, 1.0, 0.999999], dtype=torch.float64)
    problems = []
    for name, logits in _logit_kinds(x0, k, gen).items():
        lg = logits.double().requires_grad_(True)  # the same values in float64
        kl = finite_step_kl(lg, x0, zt, a_t, a_s, space)
        kl.sum().backward()
        kl = kl.detach()
        for b in range(x0.shape[0]):
            at, as_ = float(a_t[b]), float(a_s[b])
            for i in range(x0.shape[1]):
                x, z = int(x0[b, i]), int(zt[b, i])
                got, grad_ok = float(kl[b, i]), bool(torch.isfinite(lg.grad[b, i]).all())
                case = (name, at, as_, x, z, got)
                if float(ref.marginal(ref.one_hot(x, N), at, k)[z]) <= 0:  # q cannot produce z_t
                    if got != 0.0 or not grad_ok:
                        problems.append(("unreachable: want 0 and a finite gradient", grad_ok) + case)
                    continue
                want = float(ref.step_kl(lg.detach()[b, i], x, z, at, as_, k))
                if math.isinf(want) and bool(torch.isfinite(lg.detach()[b, i]).all()):
                    # float64 softmax underflowed (exp(-2e4) = 0) although every probability is
                    # positive: the true KL is finite, so take it in 60-digit arithmetic
                    want = ref.step_kl_mp(lg.detach()[b, i], x, z, at, as_, k)
                if math.isnan(want):  # f_t(x_hat, z_t) = 0: p(. | z_t) undefined, any finite value
                    ok = math.isfinite(got)
                elif math.isinf(want):
                    ok = got == math.inf
                else:
                    ok = abs(got - want) <= 1e-8 * abs(want) + 1e-12 and grad_ok
                if not ok:
                    problems.append((f"want {want:.4g}", grad_ok) + case)
        # lower precisions: finite exactly where the float64 result is
        for dtype in [torch.float32] + ([torch.bfloat16] if "bf16" in name else []):
            low = finite_step_kl(logits.to(dtype), x0, zt, a_t, a_s, space, chunk_elements=3 * N)
            if not bool((torch.isfinite(low) == torch.isfinite(kl)).all()) or bool(torch.isnan(low).any()):
                problems.append((name, str(dtype), "finite pattern differs from float64"))
    assert not problems, f"{len(problems)} problems, e.g. {problems[:4]}"


def _k0_zero_probability_case():
    """k = 0 positions whose first half is unmasked (z_t = x) with p(x) = 0 there, second half masked."""
    x0 = torch.arange(N).repeat(2)[None]  # (1, 2N)
    zt = torch.where(torch.arange(2 * N) < N, x0, torch.full_like(x0, N))  # first half unmasked
    logits = torch.randn(1, 2 * N, N, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    logits[0, :N][torch.nn.functional.one_hot(x0[0, :N], N).bool()] = -math.inf  # p(z_t) = 0 there
    return x0, zt, logits


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_k0_zero_probability_at_unmasked_token_gives_no_nan(dtype):
    # MDLM: the model may put zero mass on z_t = x at an unmasked position (loss 0 there, no NaN)
    space = TokenSpace(N, 0.0)
    x0, zt, logits = _k0_zero_probability_case()
    for schedule in ["linear", "cosine"]:
        for t in [1e-5, 0.5, 1.0]:
            lg = logits.to(dtype).requires_grad_(True)
            loss = nelbo(lg, x0, zt, torch.tensor([t], dtype=torch.float64), space, get_schedule(schedule))
            assert bool(torch.isfinite(loss).all()), loss
            assert float(loss.detach()[0, :N].abs().max()) == 0.0
            loss.sum().backward()
            assert bool(torch.isfinite(lg.grad.float()).all())
            assert float(lg.grad[0, :N].float().abs().max()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_k0_zero_probability_at_unmasked_token_finite_step_kl(dtype):
    # the same for the finite-step KL: an unmasked MDLM token stays, whatever x_hat says (KL 0)
    space = TokenSpace(N, 0.0)
    x0, zt, logits = _k0_zero_probability_case()
    for a_t, a_s in [(0.0, 0.5), (0.5, 0.6), (0.9, 1.0)]:
        a_t_ = torch.tensor([a_t], dtype=torch.float64)
        a_s_ = torch.tensor([a_s], dtype=torch.float64)
        lg = logits.to(dtype).requires_grad_(True)
        kl = finite_step_kl(lg, x0, zt, a_t_, a_s_, space)
        assert bool(torch.isfinite(kl).all()), (a_t, a_s, kl)
        assert float(kl.detach()[0, :N].abs().max()) == 0.0
        kl.sum().backward()
        assert bool(torch.isfinite(lg.grad).all()), (a_t, a_s)


@pytest.mark.parametrize("k", [1e-4, 0.1, 1.0])
def test_k_positive_zero_probability_at_truth_is_finite(k):
    # with uniform noise the marginal of x_hat is >= beta k / N > 0 everywhere: the loss is finite
    # even when the model gives the clean token zero probability, and it is large
    space, sched = TokenSpace(N, k), get_schedule("linear")
    x0 = torch.zeros(1, 2, dtype=torch.long)
    zt = torch.tensor([[0, 3]])
    logits = torch.zeros(1, 2, N)
    logits[..., 0] = -math.inf
    loss = nelbo(logits, x0, zt, torch.tensor([0.5]), space, sched)
    assert bool(torch.isfinite(loss).all()) and float(loss.min()) > 0.1


@pytest.mark.parametrize("k", KS)
def test_posterior_step_robust_to_awkward_logits(k):
    space = TokenSpace(N, k)
    gen = torch.Generator().manual_seed(int(k * 1e4) + 3)
    x0, _ = _states(k, gen)
    z = torch.randint(0, N + 1, x0.shape, generator=gen)
    if k == 0.0:
        z = torch.full_like(z, N)  # MDLM: a sampler state is mask or a decoded token; masks only here
    if k == 1.0:
        z = torch.where(z == N, 0, z)
    for name, logits in _logit_kinds(x0, k, gen).items():
        for a_t, a_s in [(0.0, 0.1), (0.5, 0.6), (0.9, 1.0), (0.0, 1.0)]:
            out = posterior_step(logits, z, a_t, a_s, space, generator=gen)
            assert out.z_s.shape == z.shape
            assert int(out.z_s.min()) >= 0 and int(out.z_s.max()) <= N
            if a_s == 1.0:
                assert not bool((out.z_s == N).any()), name
            if name in ("neg_inf",):
                # never draws a token with zero predicted probability from x_hat
                drawn = out.component == 0
                picked = logits.gather(-1, out.z_s.clamp_max(N - 1)[..., None]).squeeze(-1)
                assert not bool(torch.isinf(picked[drawn]).any()), name


def test_dense_reference_sanity():
    # the reference itself: posteriors are distributions, and Q(a) Q(b) = Q(a b)
    for n, k in [(3, 0.0), (4, 0.5), (2, 1.0)]:
        qa, qb = ref.q_matrix(0.7, n, k), ref.q_matrix(0.4, n, k)
        torch.testing.assert_close(qa @ qb, ref.q_matrix(0.28, n, k), rtol=0, atol=1e-15)
        post = ref.posterior(ref.one_hot(1, n), n if k < 1 else 0, 0.3, 0.8, k)
        assert abs(float(post.sum()) - 1.0) < 1e-15 and float(post.min()) >= 0.0
