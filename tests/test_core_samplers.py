"""Ancestral and confidence samplers: determinism, batch independence, transition bookkeeping,
and the ancestral sampler's output distribution against the dense Markov chain."""

import math

import dense_reference as ref
import pytest
import torch

from xdlm_vision.core import (
    TokenSpace,
    ancestral_sampler,
    confidence_sampler,
    sample,
    seeded_generators,
)
from xdlm_vision.core.samplers.confidence import masks_left

SAMPLERS = {"ancestral": ancestral_sampler, "confidence": confidence_sampler}


class ToyModel:
    """Deterministic logits that depend only on each sample's own tokens (and label).

    logits[b, l] = A[l, z[b, l]] + B[l, z[b, l + 1 mod L]] + label_shift[label_b]: a position sees
    its own state and its right neighbour's, so samples interact with nothing but themselves.
    """

    def __init__(self, n: int, length: int, seed: int = 0, scale: float = 2.0, num_classes: int = 4):
        gen = torch.Generator().manual_seed(seed)
        self.own = scale * torch.randn(length, n + 1, n, generator=gen)  # (L, N + 1, N)
        self.right = scale * torch.randn(length, n + 1, n, generator=gen)  # (L, N + 1, N)
        self.label = scale * torch.randn(num_classes + 1, n, generator=gen)  # (C + 1, N) incl. null
        self.batch_sizes = []

    def __call__(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        self.batch_sizes.append(z.shape[0])
        pos = torch.arange(z.shape[1])[None]  # (1, L)
        out = self.own[pos, z] + self.right[pos, z.roll(-1, dims=1)]  # (B, L, N)
        if labels is not None:
            out = out + self.label[labels][:, None, :]
        return out


def _run(name, model, space, seq_len=12, num_samples=4, num_steps=6, generator=None, **kw):
    return list(
        SAMPLERS[name](
            model,
            num_samples=num_samples,
            seq_len=seq_len,
            space=space,
            num_steps=num_steps,
            generator=generator,
            **kw,
        )
    )


# --- determinism and batch independence ---------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("k", [0.0, 0.3, 1.0])
def test_same_seed_same_samples(name, k):
    space = TokenSpace(5, k)
    model = ToyModel(5, 12)
    a = sample(
        SAMPLERS[name](
            model,
            num_samples=3,
            seq_len=12,
            space=space,
            num_steps=5,
            generator=torch.Generator().manual_seed(1),
        )
    )
    b = sample(
        SAMPLERS[name](
            model,
            num_samples=3,
            seq_len=12,
            space=space,
            num_steps=5,
            generator=torch.Generator().manual_seed(1),
        )
    )
    c = sample(
        SAMPLERS[name](
            model,
            num_samples=3,
            seq_len=12,
            space=space,
            num_steps=5,
            generator=torch.Generator().manual_seed(2),
        )
    )
    assert torch.equal(a, b)
    if name == "ancestral" or k > 0:  # (temperature 1: the candidates are random too)
        assert not torch.equal(a, c), "a different seed should give different samples"
    d = sample(
        SAMPLERS[name](
            model, num_samples=3, seq_len=12, space=space, num_steps=5, generator=seeded_generators([4, 5, 6])
        )
    )
    e = sample(
        SAMPLERS[name](
            model, num_samples=3, seq_len=12, space=space, num_steps=5, generator=seeded_generators([4, 5, 6])
        )
    )
    assert torch.equal(d, e)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("k", [0.0, 0.3, 1.0])
def test_batch_equals_single_with_per_sample_generators(name, k):
    space = TokenSpace(6, k)
    model = ToyModel(6, 10, seed=3)
    seeds = [10, 11, 12, 13]
    labels = torch.tensor([0, 1, 2, 3])
    kw = {"class_labels": labels, "cfg": 1.5, "null_class": 4}
    if name == "confidence":
        kw.update(confidence_noise=1.0, refine_fraction=0.3)
    batch = _run(name, model, space, seq_len=10, num_samples=4, generator=seeded_generators(seeds), **kw)
    for i, seed in enumerate(seeds):
        kw_i = dict(kw, class_labels=labels[i : i + 1])
        single = _run(
            name, model, space, seq_len=10, num_samples=1, generator=seeded_generators([seed]), **kw_i
        )
        for sb, ss in zip(batch, single):
            assert torch.equal(sb.z_s[i : i + 1], ss.z_s), f"sample {i} differs at step {sb.step}"
            assert torch.equal(sb.x0_argmax[i : i + 1], ss.x0_argmax)


# --- per-step bookkeeping -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("k", [0.0, 0.2, 1.0])
@pytest.mark.parametrize("num_steps", [1, 3, 8])
def test_step_states_are_consistent(name, k, num_steps):
    n = 5
    space = TokenSpace(n, k)
    model = ToyModel(n, 16, seed=num_steps)
    kw = {"refine_fraction": 0.5} if name == "confidence" else {}
    steps = _run(
        name,
        model,
        space,
        seq_len=16,
        num_samples=3,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(7),
        **kw,
    )
    assert [s.step for s in steps] == list(range(num_steps))
    assert all(s.num_steps == num_steps for s in steps)
    assert steps[0].t == 1.0 and steps[-1].s == 0.0 and steps[-1].is_last
    if name == "confidence":
        assert bool((steps[0].z_t == n).all()), "confidence sampling starts from all masks"
    for i, st in enumerate(steps):
        assert st.z_t.shape == st.z_s.shape == (3, 16)
        assert 0 <= int(st.z_s.min()) and int(st.z_s.max()) <= n
        assert st.s < st.t
        torch.testing.assert_close(torch.tensor(st.t - st.s), torch.tensor(1.0 / num_steps))
        # the three transition masks, recomputed from z_t and z_s
        was, now = st.z_t == n, st.z_s == n
        assert torch.equal(st.created, was & ~now)
        assert torch.equal(st.remasked, ~was & now)
        assert torch.equal(st.refined, ~was & ~now & (st.z_t != st.z_s))
        moved = st.created.int() + st.refined.int() + st.remasked.int()
        assert int(moved.max()) <= 1, "transitions are exclusive"
        assert torch.equal(moved.bool(), st.z_t != st.z_s), "every change is one of the three"
        assert st.counts == {
            "created": int(st.created.sum()),
            "refined": int(st.refined.sum()),
            "remasked": int(st.remasked.sum()),
        }
        # x0_argmax is the argmax of the model's prediction at z_t
        assert torch.equal(st.x0_argmax, model(st.z_t).argmax(-1))
        if i + 1 < len(steps):
            assert torch.equal(st.z_s, steps[i + 1].z_t), "z_s of a step is z_t of the next"
            assert steps[i + 1].t == st.s
        if k == 0.0:
            assert not bool(st.refined.any()) and not bool(st.remasked.any()), (
                "MDLM never re-masks or refines"
            )
        if k == 1.0 and name == "ancestral":
            assert not bool(now.any() or was.any()), "UDLM: the prior and the posterior hold no mask"
        if name == "confidence":
            assert not bool(st.remasked.any()), "confidence sampling never re-masks"
    assert not bool((steps[-1].z_s == n).any()), "final tokens hold no mask"


def test_k0_never_remasks_or_refines_over_many_runs():
    # a longer MDLM run with many positions: absorbed tokens stay fixed to the end
    n = 4
    space = TokenSpace(n, 0.0)
    model = ToyModel(n, 32, seed=9)
    for name in SAMPLERS:
        steps = _run(
            name,
            model,
            space,
            seq_len=32,
            num_samples=8,
            num_steps=20,
            generator=torch.Generator().manual_seed(0),
        )
        decoded = torch.zeros(8, 32, dtype=torch.bool)
        for st in steps:
            assert not bool(st.refined.any() or st.remasked.any())
            assert torch.equal(st.z_s[decoded], st.z_t[decoded])
            decoded |= st.z_s != n
        assert bool(decoded.all())


def test_track_x0_false_gives_no_argmax():
    space = TokenSpace(4, 0.5)
    for name in SAMPLERS:
        steps = _run(
            name,
            ToyModel(4, 8),
            space,
            seq_len=8,
            num_samples=2,
            num_steps=3,
            generator=torch.Generator().manual_seed(0),
            track_x0=False,
        )
        assert all(st.x0_argmax is None for st in steps)


# --- the ancestral sampler's distribution = the dense Markov chain ------------------------------


@pytest.mark.parametrize("k", [0.0, 0.4, 1.0])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ancestral_output_distribution_matches_dense_chain(k, schedule):
    # L = 1: the model sees only the position's own state, so the chain over N + 1 states is exact:
    # z_1 ~ pi, then z_s ~ p(z_s | z_t) with x_hat = softmax(model(z_t)) on the sampler's time grid
    n, num_steps, draws = 3, 3, 30000
    space = TokenSpace(n, k)
    model = ToyModel(n, 1, seed=int(10 * k) + len(schedule), scale=1.5)
    out = sample(
        ancestral_sampler(
            model,
            num_samples=draws,
            seq_len=1,
            space=space,
            num_steps=num_steps,
            schedule=schedule,
            generator=torch.Generator().manual_seed(5),
        )
    )
    alpha = ref.linear_alpha if schedule == "linear" else ref.cosine_alpha
    dist = ref.stationary(n, k)  # (N + 1,) over z_1
    for i in range(num_steps):
        t, s = 1 - i / num_steps, (1 - (i + 1) / num_steps if i + 1 < num_steps else 0.0)
        a_t, a_s = alpha(t), alpha(s)
        nxt = torch.zeros(n + 1, dtype=torch.float64)
        for z in range(n + 1):
            if float(dist[z]) > 0:
                logits = model(torch.tensor([[z]]))[0, 0].double()
                nxt += dist[z] * ref.model_posterior(logits, z, a_t, a_s, k)
        dist = nxt
    assert float(dist[n]) == 0.0
    ref.assert_frequencies(out, dist)


def test_ancestral_matches_dense_chain_per_step():
    # one step from a fixed non-prior state (z_init) with L = 1, at several step positions
    n, k = 4, 0.3
    space = TokenSpace(n, k)
    model = ToyModel(n, 1, seed=2)
    draws = 20000
    for z0 in [0, n]:
        z_init = torch.full((draws, 1), z0, dtype=torch.long)
        steps = list(
            ancestral_sampler(
                model,
                num_samples=draws,
                seq_len=1,
                space=space,
                num_steps=4,
                z_init=z_init,
                generator=torch.Generator().manual_seed(z0),
            )
        )
        first = steps[0]  # t = 1 -> s = 0.75 from the given state
        want = ref.model_posterior(model(torch.tensor([[z0]]))[0, 0].double(), z0, 0.0, 0.25, k)
        ref.assert_frequencies(first.z_s, want)


# --- a perfect predictor reproduces the data ----------------------------------------------------


@pytest.mark.parametrize("k", [0.0, 1e-4, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("num_steps", [1, 4, 16])
def test_perfect_predictor_reproduces_the_data(k, name, num_steps):
    n, length = 6, 20
    space = TokenSpace(n, k)
    data = torch.randint(0, n, (3, length), generator=torch.Generator().manual_seed(num_steps))

    def model_fn(z, labels=None):
        return 1e4 * torch.nn.functional.one_hot(data[: z.shape[0]], n).float()  # x_hat = one-hot(data)

    out = sample(
        SAMPLERS[name](
            model_fn,
            num_samples=3,
            seq_len=length,
            space=space,
            num_steps=num_steps,
            generator=torch.Generator().manual_seed(0),
        )
    )
    assert torch.equal(out, data)


# --- confidence sampler specifics ---------------------------------------------------------------


@pytest.mark.parametrize("absorb", ["cosine", "linear"])
def test_confidence_absorb_schedule_counts(absorb):
    n, length, num_steps = 5, 30, 7
    space = TokenSpace(n, 0.0)
    steps = _run(
        "confidence",
        ToyModel(n, length),
        space,
        seq_len=length,
        num_samples=2,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
        absorb_schedule=absorb,
        temperature=0.0,
    )
    for st in steps:
        frac = (st.step + 1) / num_steps
        left = math.cos(0.5 * math.pi * frac) if absorb == "cosine" else 1 - frac
        want = 0 if st.is_last else math.floor(length * left + 1e-9)
        assert masks_left(st.step, num_steps, length, absorb) == want
        assert ((st.z_s == n).sum(-1) == want).all(), (st.step, (st.z_s == n).sum(-1), want)


def test_confidence_absorbs_the_most_confident_masked_positions():
    n, length = 5, 16
    space = TokenSpace(n, 0.0)
    model = ToyModel(n, length, seed=4)
    steps = _run(
        "confidence",
        model,
        space,
        seq_len=length,
        num_samples=2,
        num_steps=4,
        generator=torch.Generator().manual_seed(0),
        temperature=0.0,
    )
    for st in steps:
        logp = torch.log_softmax(model(st.z_t), -1)
        conf = logp.max(-1).values  # (B, L) confidence of the argmax candidate
        for b in range(2):
            created = st.created[b]
            assert torch.equal(st.z_s[b][created], logp[b].argmax(-1)[created])
            still = (st.z_s[b] == n) & (st.z_t[b] == n)
            if created.any() and still.any():
                assert float(conf[b][created].min()) >= float(conf[b][still].max())


@pytest.mark.parametrize("refine_schedule", ["constant", "linear"])
def test_confidence_refinement_rule(refine_schedule):
    # k > 0: positions already decoded are re-written to the argmax when it is more probable than
    # the current token, at most round(fraction * #tokens) of them, the largest gains first
    n, length, num_steps, frac = 6, 24, 6, 0.25
    space = TokenSpace(n, 0.5)
    model = ToyModel(n, length, seed=8, scale=3.0)
    steps = _run(
        "confidence",
        model,
        space,
        seq_len=length,
        num_samples=3,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
        temperature=0.0,
        refine_fraction=frac,
        refine_schedule=refine_schedule,
    )
    total_refined = 0
    for st in steps:
        logp = torch.log_softmax(model(st.z_t), -1)  # (B, L, N)
        best = logp.argmax(-1)
        cur = logp.gather(-1, st.z_t.clamp_max(n - 1)[..., None]).squeeze(-1)
        gain = logp.max(-1).values - cur
        f = frac if refine_schedule == "constant" else frac * (1 - st.step / num_steps)
        for b in range(3):
            ref_b = st.refined[b]
            tokens = int((st.z_t[b] != n).sum())
            assert int(ref_b.sum()) <= round(f * tokens) + 0  # never more than the budget
            assert torch.equal(st.z_s[b][ref_b], best[b][ref_b])
            assert bool((gain[b][ref_b] > 0).all())
            eligible = (st.z_t[b] != n) & (best[b] != st.z_t[b]) & (gain[b] > 0)
            assert int(ref_b.sum()) == min(round(f * tokens), int(eligible.sum())), "the budget is used"
            if ref_b.any() and (eligible & ~ref_b).any():
                assert float(gain[b][ref_b].min()) >= float(gain[b][eligible & ~ref_b].max())
        total_refined += int(st.refined.sum())
    assert total_refined > 0, "the toy model disagrees with its inputs: something must be refined"


def test_confidence_refinement_with_sampled_candidates_only_improves():
    # temperature 1: a sampled candidate may be less probable than the current token; such a
    # candidate must never replace it
    n, length, num_steps, frac = 6, 24, 6, 0.5
    space = TokenSpace(n, 0.5)
    model = ToyModel(n, length, seed=8, scale=1.0)
    total_refined = 0
    for seed in range(3):
        steps = _run(
            "confidence",
            model,
            space,
            seq_len=length,
            num_samples=3,
            num_steps=num_steps,
            generator=torch.Generator().manual_seed(seed),
            temperature=1.0,
            refine_fraction=frac,
            refine_schedule="constant",
        )
        for st in steps:
            logp = torch.log_softmax(model(st.z_t), -1)  # (B, L, N)
            new = logp.gather(-1, st.z_s.clamp_max(n - 1)[..., None]).squeeze(-1)
            cur = logp.gather(-1, st.z_t.clamp_max(n - 1)[..., None]).squeeze(-1)
            assert bool((new[st.refined] > cur[st.refined]).all()), "a refinement lowered the probability"
            budget = torch.round(frac * (st.z_t != n).sum(-1).double()).long()
            assert bool((st.refined.sum(-1) <= budget).all())
            total_refined += int(st.refined.sum())
    assert total_refined > 0


def test_confidence_temperature_zero_is_deterministic_given_the_model():
    space = TokenSpace(5, 0.2)
    model = ToyModel(5, 10)
    a = sample(
        confidence_sampler(
            model,
            num_samples=2,
            seq_len=10,
            space=space,
            num_steps=4,
            temperature=0.0,
            generator=torch.Generator().manual_seed(1),
        )
    )
    b = sample(
        confidence_sampler(
            model,
            num_samples=2,
            seq_len=10,
            space=space,
            num_steps=4,
            temperature=0.0,
            generator=torch.Generator().manual_seed(2),
        )
    )
    assert torch.equal(a, b), "greedy decoding without confidence noise must not depend on the seed"


def test_confidence_candidates_follow_x_hat():
    # one step, temperature 1, L = 1 and everything absorbed: the token is a draw from x_hat
    n, draws = 4, 20000
    space = TokenSpace(n, 0.0)
    model = ToyModel(n, 1, seed=1)
    out = sample(
        confidence_sampler(
            model,
            num_samples=draws,
            seq_len=1,
            space=space,
            num_steps=1,
            generator=torch.Generator().manual_seed(3),
        )
    )
    probs = torch.softmax(model(torch.tensor([[n]]))[0, 0].double(), -1)
    ref.assert_frequencies(out, torch.cat([probs, torch.zeros(1, dtype=torch.float64)]))


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_bad_arguments_raise_user_error(name):
    space = TokenSpace(4, 0.5)
    model = ToyModel(4, 8)
    base = {"num_samples": 2, "seq_len": 8, "space": space, "num_steps": 3}
    for bad in [
        {"num_steps": 0},
        {"num_steps": -2},
        {"num_samples": 0},
        {"seq_len": 0},
        {"class_labels": torch.tensor([0, 1, 2])},  # wrong shape
        {"class_labels": torch.tensor([0, 1]), "cfg": 2.0},  # guidance needs the null class
        {"cfg": -1.0},
        {"cfg": float("nan")},
        {"generator": seeded_generators([1, 2, 3])},
    ]:  # one generator per sample
        with pytest.raises(ValueError):
            sample(SAMPLERS[name](model, **{**base, **bad}))
    if name == "confidence":
        for bad in [
            {"absorb_schedule": "quadratic"},
            {"refine_schedule": "cosine"},
            {"temperature": -1.0},
            {"refine_fraction": 1.5},
            {"confidence_noise": -0.1},
        ]:
            with pytest.raises(ValueError):
                sample(confidence_sampler(model, **{**base, **bad}))


def test_sample_of_an_empty_stream_raises_user_error():
    from xdlm_vision.core import sample as drain

    with pytest.raises(ValueError):
        drain(iter([]))


def test_registry_lists_both_samplers():
    from xdlm_vision.core import SAMPLERS as registry

    assert registry["ancestral"] is ancestral_sampler and registry["confidence"] is confidence_sampler
