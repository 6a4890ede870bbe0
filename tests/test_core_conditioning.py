"""Sampling conditioned on known tokens (editing): held tokens never move, an empty condition is
bit-identical to plain sampling, revisable borders move only for k > 0, partial re-noising."""

import itertools

import pytest
import torch

from xdlm_vision.core import (
    KnownTokens,
    TokenSpace,
    ancestral_sampler,
    border,
    confidence_sampler,
    get_schedule,
    renoise,
    sample,
    sample_prior,
    seeded_generators,
)
from xdlm_vision.core.samplers.base import time_grid

SAMPLERS = {"ancestral": ancestral_sampler, "confidence": confidence_sampler}
N, L, B, C = 7, 16, 6, 3


class RecordingModel:
    """Logits that depend on each sample's tokens and label; records every input it sees."""

    def __init__(self, seed=0, scale=2.0):
        g = torch.Generator().manual_seed(seed)
        self.own = scale * torch.randn(L, N + 1, N, generator=g)  # (L, N + 1, N)
        self.left = scale * torch.randn(L, N + 1, N, generator=g)  # (L, N + 1, N)
        self.label = scale * torch.randn(C + 1, N, generator=g)  # (C + 1, N)
        self.inputs = []

    def __call__(self, z, labels=None):
        self.inputs.append(z.clone())
        pos = torch.arange(z.shape[1])[None]
        out = self.own[pos, z] + self.left[pos, z.roll(1, dims=1)]  # (B, L, N)
        if labels is not None:
            out = out + self.label[labels][:, None, :]
        return out


def _known(seed=1, frac=0.5, revise=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, N, (B, L), generator=g)
    keep = torch.rand(B, L, generator=g) < frac
    return KnownTokens(ids, keep, revise)


def _steps(name, model, space, known=None, cfg=0.0, seeds=range(B), **kw):
    labels = torch.arange(B) % C
    return list(SAMPLERS[name](model, num_samples=B, seq_len=L, space=space, num_steps=5, class_labels=labels,
                               cfg=cfg, null_class=C, generator=seeded_generators(seeds), known=known, **kw))


@pytest.mark.parametrize("name,k,cfg", list(itertools.product(SAMPLERS, [0.0, 0.1, 1.0], [0.0, 2.0])))
def test_held_tokens_never_change_and_the_model_sees_them(name, k, cfg):
    space = TokenSpace(N, k)
    known = _known()
    model = RecordingModel()
    steps = _steps(name, model, space, known, cfg)
    for st in steps:
        assert torch.equal(st.z_s[known.keep], known.ids[known.keep])
        assert not (st.created | st.refined | st.remasked)[known.keep].any()
    for z in model.inputs:  # every forward (conditional and null half) saw the known ids
        assert torch.equal(z[torch.cat([known.keep] * (z.shape[0] // B))],
                           torch.cat([known.ids] * (z.shape[0] // B))[torch.cat([known.keep] * (z.shape[0] // B))])
    final = steps[-1].z_s
    assert (final < N).all()  # the free region is fully generated


@pytest.mark.parametrize("name,k", list(itertools.product(SAMPLERS, [0.0, 0.1])))
def test_empty_condition_is_bit_identical_to_plain_sampling(name, k):
    space = TokenSpace(N, k)
    empty = KnownTokens(torch.zeros(B, L, dtype=torch.long), torch.zeros(B, L, dtype=torch.bool))
    plain = _steps(name, RecordingModel(), space, None, 1.0)
    edited = _steps(name, RecordingModel(), space, empty, 1.0)
    for a, b in zip(plain, edited):
        assert torch.equal(a.z_s, b.z_s) and torch.equal(a.refined, b.refined)


def test_confidence_absorb_schedule_counts_free_positions_per_row():
    space = TokenSpace(N, 0.0)
    known = _known(frac=0.6)
    steps = _steps("confidence", RecordingModel(), space, known)
    free = (~known.keep).sum(-1)
    for st in steps[:-1]:
        # masks left after step i follow the schedule of each row's own free count
        expected = torch.floor(free.double() * torch.cos(torch.tensor(0.5 * torch.pi * (st.step + 1) / 5)) + 1e-9)
        assert torch.equal((st.z_s == N).sum(-1), expected.long())


def test_revisable_border_moves_only_with_uniform_noise():
    keep = torch.ones(B, L, dtype=torch.bool)
    keep[:, L // 2:] = False
    ids = torch.zeros(B, L, dtype=torch.long)  # a model with random logits rarely keeps token 0
    revise = keep.clone()
    revise[:, : L // 2 - 2] = False  # the two cells next to the region may move
    with pytest.raises(ValueError, match="k > 0"):
        _steps("ancestral", RecordingModel(), TokenSpace(N, 0.0), KnownTokens(ids, keep, revise))
    moved = torch.zeros(B, L, dtype=torch.bool)
    for seed in range(4):
        for name in SAMPLERS:
            kw = {"refine_fraction": 0.5} if name == "confidence" else {}
            final = _steps(name, RecordingModel(), TokenSpace(N, 0.5), KnownTokens(ids, keep, revise),
                           seeds=range(seed * B, seed * B + B), **kw)[-1].z_s
            held = keep & ~revise
            assert torch.equal(final[held], ids[held])
            moved |= final != ids
    assert moved[revise].any(), "no border token was ever revised"


def test_bad_known_tokens_are_rejected():
    space = TokenSpace(N, 0.1)
    keep = torch.ones(B, L, dtype=torch.bool)
    with pytest.raises(ValueError, match="shape"):
        KnownTokens(torch.zeros(B, L - 1, dtype=torch.long), keep).check(B, L, space)
    with pytest.raises(ValueError, match="data tokens"):
        KnownTokens(torch.full((B, L), N), keep).check(B, L, space)
    with pytest.raises(TypeError):
        KnownTokens(torch.zeros(B, L, dtype=torch.long), keep.long()).check(B, L, space)
    with pytest.raises(ValueError, match="subset"):
        KnownTokens(torch.zeros(B, L, dtype=torch.long), ~keep, keep).check(B, L, space)


def test_border_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    h, w = 5, 6
    keep = torch.rand(4, h * w, generator=g) < 0.7
    for width in range(4):
        got = border(keep, (h, w), width)
        for b, p in itertools.product(range(4), range(h * w)):
            r, c = divmod(p, w)
            near_free = any(not keep[b, rr * w + cc] for rr in range(h) for cc in range(w)
                            if max(abs(rr - r), abs(cc - c)) <= width)
            assert bool(got[b, p]) == (bool(keep[b, p]) and width > 0 and near_free)


def test_time_grid_from_t_start():
    assert time_grid(4) == [(1.0, 0.75), (0.75, 0.5), (0.5, 0.25), (0.25, 0.0)]
    assert time_grid(4, 0.5) == [(0.5, 0.375), (0.375, 0.25), (0.25, 0.125), (0.125, 0.0)]
    with pytest.raises(ValueError):
        time_grid(4, 0.0)


def test_renoise_at_one_is_the_prior_and_small_t_keeps_most_tokens():
    space = TokenSpace(N, 0.3)
    sched = get_schedule("linear")
    x0 = torch.randint(0, N, (2000, 8), generator=torch.Generator().manual_seed(0))
    z1 = renoise(x0, 1.0, space, sched, generator=torch.Generator().manual_seed(1))
    prior = sample_prior((2000, 8), space, torch.Generator().manual_seed(2))
    assert abs((z1 == N).float().mean() - (prior == N).float().mean()) < 0.02  # both ~ 1 - k
    assert abs((z1 == x0).float().mean() - (0.3 / N)) < 0.01  # only chance agreement left
    z = renoise(x0, 0.1, space, sched, generator=torch.Generator().manual_seed(1))
    assert abs((z == x0).float().mean() - (0.9 + 0.1 * 0.3 / N)) < 0.01
    with pytest.raises(ValueError):
        renoise(x0, 0.0, space, sched)


def test_partial_renoising_runs_from_t_start_and_holds_known():
    space = TokenSpace(N, 0.1)
    x0 = torch.randint(0, N, (B, L), generator=torch.Generator().manual_seed(0))
    known = KnownTokens(x0, torch.arange(L)[None].expand(B, L) < 4)
    gens = seeded_generators(range(B))
    z = renoise(x0, 0.4, space, get_schedule("linear"), known, gens)
    steps = _steps("ancestral", RecordingModel(), space, known, z_init=z, t_start=0.4, seeds=range(10, 10 + B))
    assert steps[0].t == pytest.approx(0.4) and steps[-1].s == 0.0
    assert torch.equal(steps[0].z_t, z)
    assert torch.equal(steps[-1].z_s[:, :4], x0[:, :4])
    with pytest.raises(ValueError, match="z_init"):
        _steps("ancestral", RecordingModel(), space, None, t_start=0.4)


def test_sample_drains_a_conditioned_sampler():
    space = TokenSpace(N, 0.1)
    known = _known()
    out = sample(iter(_steps("ancestral", RecordingModel(), space, known)))
    assert torch.equal(out[known.keep], known.ids[known.keep])
