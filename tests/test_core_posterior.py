"""p(z_s | z_t): the dense helper and the mixture sampler step against Bayes' rule with dense Q."""

import random

import dense_reference as ref
import pytest
import torch

from xdlm_vision.core import TokenSpace, posterior_probs, posterior_step, seeded_generators


def _cases(seed: int, count: int):
    """(N, k, alpha_t, alpha_s) with N in 2..9, k in [0, 1] (0 and 1 included), 0 <= a_t < a_s <= 1,
    the first step (alpha_t = 0) and the last step (alpha_s = 1) included."""
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        n = rnd.randint(2, 9)
        k = [0.0, 1.0, rnd.random()][i % 3]
        kind = i % 4
        if kind == 0:
            a_t, a_s = 0.0, rnd.uniform(0.01, 1.0)  # first step from the prior
        elif kind == 1:
            a_t, a_s = rnd.uniform(0.0, 0.99), 1.0  # last step, no mask may survive
        else:
            a_t = rnd.uniform(0.0, 0.98)
            a_s = rnd.uniform(a_t + 0.01, 1.0)
        out.append((n, k, a_t, a_s))
    return out


@pytest.mark.parametrize("n,k,a_t,a_s", _cases(0, 40))
def test_posterior_probs_equal_dense_bayes(n, k, a_t, a_s):
    gen = torch.Generator().manual_seed(n + int(1e6 * a_t))
    space = TokenSpace(n, k)
    logits = 2.0 * torch.randn(6, n, generator=gen, dtype=torch.float64)  # (M, N)
    for z_t in range(n + 1):
        # only states that the model's marginal can produce (x_hat > 0 everywhere)
        if float(ref.marginal(torch.full((n,), 1.0 / n, dtype=torch.float64), a_t, k)[z_t]) <= 0:
            continue
        zt = torch.full((6,), z_t, dtype=torch.long)
        got = posterior_probs(logits, zt, a_t, a_s, space)  # (M, N + 1)
        assert got.dtype == torch.float64 and got.shape == (6, n + 1)
        want = torch.stack([ref.model_posterior(logits[i], z_t, a_t, a_s, k) for i in range(6)])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
        if a_s == 1.0:
            assert bool((got[:, n] == 0).all()), "no mask may survive the last step"


@pytest.mark.parametrize("n,k,a_t,a_s", _cases(1, 24))
def test_posterior_of_a_one_hot_prediction_is_the_data_posterior(n, k, a_t, a_s):
    # with x_hat -> one-hot(x) the model posterior must become q(z_s | z_t, x)
    space = TokenSpace(n, k)
    x = n - 1
    logits = torch.full((1, n), -200.0, dtype=torch.float64)
    logits[0, x] = 200.0
    for z_t in ref.reachable_states(x, a_t, n, k):
        got = posterior_probs(logits, torch.tensor([z_t]), a_t, a_s, space)[0]
        want = ref.posterior(ref.one_hot(x, n), z_t, a_t, a_s, k)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# --- the mixture sampler step ------------------------------------------------------------------

STEP_CASES = [
    # (N, k, alpha_t, alpha_s)
    (2, 0.0, 0.3, 0.6),
    (4, 0.0, 0.0, 0.25),  # first step, MDLM
    (5, 0.0, 0.5, 1.0),  # last step, MDLM
    (3, 1.0, 0.2, 0.7),
    (6, 1.0, 0.0, 0.1),  # first step, UDLM
    (2, 1.0, 0.9, 1.0),  # last step, UDLM
    (7, 0.35, 0.4, 0.55),
    (9, 0.8, 0.0, 0.5),  # first step
    (3, 0.1, 0.6, 1.0),  # last step
    (4, 1e-4, 0.2, 0.3),
    (8, 0.5, 0.97, 0.99),  # small step near the data
]


@pytest.mark.parametrize("n,k,a_t,a_s", STEP_CASES)
def test_posterior_step_frequencies_match_dense_posterior(n, k, a_t, a_s):
    space = TokenSpace(n, k)
    gen = torch.Generator().manual_seed(1000 * n + int(100 * a_s))
    logits_row = 1.5 * torch.randn(n, generator=gen, dtype=torch.float64)  # one x_hat per case
    draws = 12000
    uniform_x = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for z_t in range(n + 1):
        if float(ref.marginal(uniform_x, a_t, k)[z_t]) <= 0:
            continue  # z_t impossible at this time
        logits = logits_row.float().expand(2, draws // 2, n)  # (B, L, N)
        zt = torch.full((2, draws // 2), z_t, dtype=torch.long)  # (B, L)
        out = posterior_step(logits, zt, a_t, a_s, space, generator=gen)
        assert out.z_s.shape == zt.shape and out.z_s.dtype == torch.long
        # the float32 logits are what the sampler sees; the reference uses the same values
        want = ref.model_posterior(logits_row.float().double(), z_t, a_t, a_s, k)
        ref.assert_frequencies(out.z_s, want)
        # components: 2 = stayed at z_t; 1 = drawn from pi; a stay never changes the state
        stayed = out.component == 2
        assert bool((out.z_s[stayed] == z_t).all())
        if a_s == 1.0:
            assert not bool((out.z_s == space.mask_id).any()), "a mask survived the last step"
            assert not bool((out.component == 1).any()), "w_pi must be 0 at alpha_s = 1"
        if a_t == 0.0:
            assert not bool(stayed.any()), "alpha_t = 0: nothing can stay"
        if k == 0.0 and z_t != space.mask_id:
            assert bool((out.z_s == z_t).all()), "MDLM: an unmasked token must stay"


def test_posterior_step_mixed_batch_row_by_row():
    # each position gets its own logits and z_t; frequencies per position match the dense posterior
    n, k, a_t, a_s = 4, 0.45, 0.35, 0.6
    space = TokenSpace(n, k)
    gen = torch.Generator().manual_seed(7)
    logits = 2.0 * torch.randn(n + 1, n, generator=gen)  # one row per z_t value
    reps = 8000
    lg = logits[None].expand(reps, n + 1, n).contiguous()  # (B=reps, L=N+1, N)
    zt = torch.arange(n + 1).expand(reps, n + 1).contiguous()  # (B, L)
    out = posterior_step(lg, zt, a_t, a_s, space, generator=gen)
    for z_t in range(n + 1):
        want = ref.model_posterior(logits[z_t].double(), z_t, a_t, a_s, k)
        ref.assert_frequencies(out.z_s[:, z_t], want)


def test_posterior_step_handles_zero_probability_tokens():
    # -inf logits: such tokens are never drawn from x_hat; z_t with p(z_t) = 0 still works
    n, k = 5, 0.3
    space = TokenSpace(n, k)
    logits = torch.tensor([0.0, -float("inf"), 1.0, -float("inf"), 2.0])
    draws = 10000
    lg = logits.expand(1, draws, n)
    for z_t in range(n + 1):
        zt = torch.full((1, draws), z_t, dtype=torch.long)
        out = posterior_step(lg, zt, 0.2, 1.0, space, generator=torch.Generator().manual_seed(z_t))
        want = ref.model_posterior(logits.double(), z_t, 0.2, 1.0, k)
        ref.assert_frequencies(out.z_s, want)


def test_posterior_step_seeded_and_batch_independent():
    n, k = 6, 0.25
    space = TokenSpace(n, k)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 30, n, generator=gen)  # (B, L, N)
    zt = torch.randint(0, n + 1, (4, 30), generator=gen)
    a = posterior_step(logits, zt, 0.3, 0.5, space, generator=torch.Generator().manual_seed(9))
    b = posterior_step(logits, zt, 0.3, 0.5, space, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.z_s, b.z_s) and torch.equal(a.component, b.component)
    seeds = [11, 12, 13, 14]
    batch = posterior_step(logits, zt, 0.3, 0.5, space, generator=seeded_generators(seeds))
    for i, seed in enumerate(seeds):
        one = posterior_step(
            logits[i : i + 1], zt[i : i + 1], 0.3, 0.5, space, generator=seeded_generators([seed])
        )
        assert torch.equal(batch.z_s[i : i + 1], one.z_s)


def test_posterior_step_accepts_bf16_logits():
    n, k = 5, 0.6
    space = TokenSpace(n, k)
    logits = torch.randn(1, 20000, n, generator=torch.Generator().manual_seed(3)).bfloat16()
    logits[..., :] = logits[0, 0]  # one x_hat
    zt = torch.full((1, 20000), 2, dtype=torch.long)
    out = posterior_step(logits, zt, 0.4, 0.8, space, generator=torch.Generator().manual_seed(4))
    want = ref.model_posterior(logits[0, 0].double(), 2, 0.4, 0.8, k)
    ref.assert_frequencies(out.z_s, want)
