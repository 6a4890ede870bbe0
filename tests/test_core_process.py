"""Forward process, prior, schedules and training-time sampling against dense references."""

import math
import random

import dense_reference as ref
import pytest
import torch

from xdlm_vision.core import TokenSpace, corrupt, forward_marginal, get_schedule, sample_prior, sample_times

K_SPECIAL = [0.0, 1.0]


def _spaces(seed: int, count: int):
    """(N, k) pairs with N in 2..9 and k random in [0, 1], always including k = 0 and k = 1."""
    rnd = random.Random(seed)
    out = [(rnd.randint(2, 9), k) for k in K_SPECIAL]
    out += [(rnd.randint(2, 9), rnd.random()) for _ in range(count - len(out))]
    return out


# --- token space --------------------------------------------------------------------------------


@pytest.mark.parametrize("n,k", _spaces(0, 8))
def test_stationary_matches_definition(n, k):
    space = TokenSpace(n, k)
    assert space.mask_id == n and space.num_states == n + 1
    torch.testing.assert_close(space.stationary(), ref.stationary(n, k), rtol=0, atol=1e-15)
    assert space.data_prior == k / n and space.mask_prior == 1.0 - k


def test_prior_of_matches_definition_in_float64():
    # prior_of(z) promises float64 values of pi at z; they must not be float32-rounded
    for n, k in _spaces(0, 8):
        z = torch.arange(n + 1)
        got = TokenSpace(n, k).prior_of(z)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, ref.stationary(n, k), rtol=0, atol=1e-15, msg=f"N={n}, k={k}")


@pytest.mark.parametrize("n,k", [(1, 0.5), (0, 0.1), (4, -0.01), (4, 1.5), (4, float("nan"))])
def test_token_space_rejects_bad_input(n, k):
    with pytest.raises(ValueError):
        TokenSpace(n, k)


# --- forward marginal -----------------------------------------------------------------------------


@pytest.mark.parametrize("n,k", _spaces(1, 10))
def test_forward_marginal_equals_dense_q(n, k):
    gen = torch.Generator().manual_seed(n * 1000 + int(k * 997))
    space = TokenSpace(n, k)
    for alpha in [0.0, 1.0, 0.5, float(torch.rand((), generator=gen, dtype=torch.float64))]:
        # one-hot clean tokens and arbitrary distributions over data tokens
        dists = [ref.one_hot(x, n) for x in range(n)]
        dists += list(torch.distributions.Dirichlet(torch.ones(n, dtype=torch.float64)).sample((3,)))
        for xdist in dists:
            got = forward_marginal(xdist, alpha, space)
            want = ref.pad_mask(xdist) @ ref.q_matrix(alpha, n, k)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-14)
            assert abs(float(got.sum()) - 1.0) < 1e-14
        # batched x with per-row alpha
        xb = torch.stack(dists)  # (M, N)
        ab = torch.rand(xb.shape[0], generator=gen, dtype=torch.float64)  # (M,)
        got = forward_marginal(xb, ab, space)
        want = torch.stack([ref.marginal(xb[i], float(ab[i]), k) for i in range(xb.shape[0])])
        torch.testing.assert_close(got, want, rtol=0, atol=1e-14)


# --- corruption and prior sampling --------------------------------------------------------------------


@pytest.mark.parametrize("n,k", [(2, 0.0), (5, 1.0), (3, 0.3), (9, 0.75), (4, 1e-4)])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_corrupt_frequencies_match_dense_marginal(n, k, schedule):
    space = TokenSpace(n, k)
    sched = get_schedule(schedule)
    times = torch.tensor([0.0, 0.3, 0.77, 1.0], dtype=torch.float64)  # (B,)
    length = 20000
    gen = torch.Generator().manual_seed(17 + n)
    x0 = torch.randint(0, n, (len(times), length), generator=gen)  # (B, L)
    z = corrupt(x0, times, space, sched, generator=gen)  # (B, L)
    assert z.shape == x0.shape and z.dtype == torch.long
    alpha_fn = ref.linear_alpha if schedule == "linear" else ref.cosine_alpha
    for b, t in enumerate(times.tolist()):
        alpha = alpha_fn(t)
        if t == 0.0:
            assert torch.equal(z[b], x0[b]), "alpha = 1 must keep every token"
        for x in range(n):
            sel = x0[b] == x
            ref.assert_frequencies(z[b][sel], ref.marginal(ref.one_hot(x, n), alpha, k))


def test_corrupt_is_seeded_and_per_sample_independent():
    space = TokenSpace(6, 0.4)
    sched = get_schedule("linear")
    x0 = torch.randint(0, 6, (3, 50), generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.2, 0.5, 0.9])
    a = corrupt(x0, t, space, sched, generator=torch.Generator().manual_seed(5))
    b = corrupt(x0, t, space, sched, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    from xdlm_vision.core import seeded_generators

    batch = corrupt(x0, t, space, sched, generator=seeded_generators([1, 2, 3]))
    for i, seed in enumerate([1, 2, 3]):
        single = corrupt(x0[i : i + 1], t[i : i + 1], space, sched, generator=seeded_generators([seed]))
        assert torch.equal(batch[i : i + 1], single)
    with pytest.raises(ValueError):
        corrupt(x0, t, space, sched, generator=seeded_generators([1, 2]))
    with pytest.raises(ValueError):
        corrupt(x0[0], t, space, sched)


@pytest.mark.parametrize("n,k", [(2, 0.0), (3, 1.0), (7, 0.2), (9, 0.9), (5, 1e-3)])
def test_sample_prior_frequencies_match_pi(n, k):
    space = TokenSpace(n, k)
    z = sample_prior((4, 25000), space, generator=torch.Generator().manual_seed(n))
    assert z.shape == (4, 25000)
    ref.assert_frequencies(z, ref.stationary(n, k))
    if k == 0.0:
        assert bool((z == n).all())
    if k == 1.0:
        assert not bool((z == n).any())


# --- schedules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_schedule_endpoints_and_derivative(name):
    sched = get_schedule(name)
    alpha_fn = ref.linear_alpha if name == "linear" else ref.cosine_alpha
    ends = sched.alpha(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert ends.tolist() == [1.0, 0.0], "alpha(0) = 1 and alpha(1) = 0 exactly"
    t = torch.linspace(0.01, 0.99, 41, dtype=torch.float64)
    torch.testing.assert_close(
        sched.alpha(t), torch.tensor([alpha_fn(v) for v in t.tolist()], dtype=torch.float64)
    )
    h = 1e-6
    fd = (sched.alpha(t + h) - sched.alpha(t - h)) / (2 * h)  # central finite difference
    torch.testing.assert_close(sched.alpha_prime(t), fd, rtol=1e-7, atol=1e-8)
    # one-sided at the end point t = 1 (alpha' must be the left derivative there)
    one = torch.tensor([1.0], dtype=torch.float64)
    left = (sched.alpha(one) - sched.alpha(one - h)) / h
    torch.testing.assert_close(sched.alpha_prime(one), left, rtol=1e-5, atol=1e-6)
    # monotone decreasing in [0, 1]
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    assert bool((sched.alpha(grid).diff() < 0).all())


def test_get_schedule_rejects_unknown_name():
    with pytest.raises(ValueError, match="schedule"):
        get_schedule("quadratic")
    s = get_schedule("cosine")
    assert get_schedule(s) is s


# --- training-time t ----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 7, 64])
@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_sample_times_antithetic_strata(batch, eps):
    for seed in range(20):
        t = sample_times(batch, generator=torch.Generator().manual_seed(seed), eps=eps)
        assert t.shape == (batch,) and t.dtype == torch.float32
        assert bool((t >= eps).all()) and bool((t <= 1.0).all())
        u = (t.double() - eps) / (1 - eps)  # back to [0, 1)
        strata = torch.floor(u * batch).long().clamp(0, batch - 1)  # (B,)
        # every stratum [i/B, (i+1)/B) holds exactly one point (float32 rounding is far below 1/B)
        assert sorted(strata.tolist()) == list(range(batch))
        # stratified points: equally spaced (mod 1)
        gaps = torch.sort(u).values.diff()
        torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / batch), rtol=0, atol=1e-6)


def test_sample_times_seeded_and_iid_mode():
    a = sample_times(16, generator=torch.Generator().manual_seed(3))
    b = sample_times(16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    t = sample_times(20000, generator=torch.Generator().manual_seed(4), antithetic=False, eps=1e-3)
    assert bool((t >= 1e-3).all()) and bool((t <= 1.0).all())
    hist = torch.histc(t, bins=10, min=0.0, max=1.0)
    assert bool(((hist - 2000).abs() < 5 * math.sqrt(2000)).all()), hist
