"""Classifier-free guidance: the XDLM-convention formula, its schedules and its use in samplers."""

import itertools
import math

import pytest
import torch

from xdlm_vision.core import (
    GuidanceSchedule,
    TokenSpace,
    ancestral_sampler,
    confidence_sampler,
    guided_logits,
)
from xdlm_vision.core.samplers.base import guided_model_call


def _probs_direct(cond: torch.Tensor, null: torch.Tensor, gamma: float) -> torch.Tensor:
    """x_hat ∝ p_cond^(1 + gamma) / p_null^gamma, in float64 probability space."""
    pc = torch.softmax(cond.double(), -1)
    pn = torch.softmax(null.double(), -1)
    w = pc ** (1 + gamma) * pn ** (-gamma)
    return w / w.sum(-1, keepdim=True)


def test_gamma_zero_returns_the_conditional_logits():
    cond = torch.randn(2, 5, 7)
    null = torch.randn(2, 5, 7)
    assert torch.equal(guided_logits(cond, null, 0.0), cond)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 4.5])
def test_guided_distribution_matches_direct_computation(gamma):
    gen = torch.Generator().manual_seed(int(gamma * 10))
    cond = 2.0 * torch.randn(3, 4, 9, generator=gen)
    null = 2.0 * torch.randn(3, 4, 9, generator=gen)
    out = guided_logits(cond, null, gamma)
    assert out.shape == cond.shape and out.dtype == torch.float32
    torch.testing.assert_close(
        torch.softmax(out.double(), -1), _probs_direct(cond, null, gamma), rtol=1e-5, atol=1e-7
    )
    # the LlamaGen / DiT convention u + s (c - u) with s = 1 + gamma on log-probabilities
    lc, ln = torch.log_softmax(cond, -1), torch.log_softmax(null, -1)
    torch.testing.assert_close(out, ln + (1 + gamma) * (lc - ln), rtol=1e-5, atol=1e-5)
    # bf16 inputs are guided in float32
    bf = guided_logits(cond.bfloat16(), null.bfloat16(), gamma)
    assert bf.dtype == torch.float32
    torch.testing.assert_close(bf, guided_logits(cond.bfloat16().float(), null.bfloat16().float(), gamma))


def test_guided_logits_are_shift_invariant_and_do_not_modify_inputs():
    cond, null = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    c0, n0 = cond.clone(), null.clone()
    a = guided_logits(cond, null, 1.5)
    b = guided_logits(cond + 3.0, null - 7.0, 1.5)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(cond, c0) and torch.equal(null, n0)


def test_guidance_schedule_values():
    const = GuidanceSchedule(2.0)
    assert const.kind == "constant" and const.enabled
    assert [const.value(i, 4) for i in range(4)] == [2.0] * 4
    lin = GuidanceSchedule(2.0, "linear")
    vals = [lin.value(i, 4) for i in range(4)]
    assert vals == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert all(b > a for a, b in itertools.pairwise(vals)) and vals[-1] == 2.0
    assert not GuidanceSchedule(0.0).enabled
    assert GuidanceSchedule(0.0, "linear").value(3, 4) == 0.0


@pytest.mark.parametrize("gamma", [-0.1, -5.0, float("nan"), float("inf"), -float("inf")])
def test_guidance_schedule_rejects_bad_gamma(gamma):
    with pytest.raises(ValueError, match="gamma"):
        GuidanceSchedule(gamma)


def test_guidance_schedule_rejects_unknown_kind():
    with pytest.raises(ValueError, match="schedule"):
        GuidanceSchedule(1.0, "cosine")


def test_guided_model_call_batches_cond_and_null():
    calls = []

    def model_fn(z, labels):
        calls.append((z.clone(), labels.clone()))
        return torch.randn(
            z.shape[0], z.shape[1], 6, generator=torch.Generator().manual_seed(int(labels.sum()))
        )

    z = torch.randint(0, 7, (3, 5))
    labels = torch.tensor([0, 2, 1])
    out = guided_model_call(model_fn, z, labels, null_class=9, gamma=1.25)
    ((zz, ll),) = calls
    assert torch.equal(zz, torch.cat([z, z])) and ll.tolist() == [0, 2, 1, 9, 9, 9]
    full = model_fn(zz, ll)  # same seed -> the same logits as inside the call
    torch.testing.assert_close(out, guided_logits(full[:3], full[3:], 1.25))
    # gamma = 0 or no labels: one unguided pass
    calls.clear()
    plain = guided_model_call(model_fn, z, labels, null_class=9, gamma=0.0)
    assert len(calls) == 1 and calls[0][1].tolist() == [0, 2, 1]
    torch.testing.assert_close(plain, model_fn(z, labels))


class LabelModel:
    """Logits depend on the label (null included) and on the tokens; records every call."""

    def __init__(self, n: int, length: int, classes: int = 3):
        gen = torch.Generator().manual_seed(0)
        self.by_label = 2.0 * torch.randn(classes + 1, length, n, generator=gen)  # (C + 1, L, N)
        self.by_token = torch.randn(n + 1, n, generator=gen)  # (N + 1, N)
        self.labels_seen = []

    def __call__(self, z, labels):
        self.labels_seen.append(labels.tolist())
        return self.by_label[labels] + self.by_token[z]


@pytest.mark.parametrize("kind", ["constant", "linear"])
@pytest.mark.parametrize("sampler", [ancestral_sampler, confidence_sampler])
def test_samplers_apply_the_scheduled_gamma(kind, sampler):
    n, length, steps = 5, 6, 4
    space = TokenSpace(n, 0.3)
    model = LabelModel(n, length)
    labels = torch.tensor([0, 2])
    sched = GuidanceSchedule(3.0, kind)
    for st in sampler(
        model,
        num_samples=2,
        seq_len=length,
        space=space,
        num_steps=steps,
        class_labels=labels,
        cfg=sched,
        null_class=3,
        generator=torch.Generator().manual_seed(0),
    ):
        gamma = sched.value(st.step, steps)
        want = guided_logits(model(st.z_t, labels), model(st.z_t, torch.full_like(labels, 3)), gamma)
        assert torch.equal(st.x0_argmax, want.argmax(-1)), (st.step, gamma)
    assert [0, 2, 3, 3] in model.labels_seen  # conditional and null passes in one batch


def test_cfg_zero_equals_unguided_sampling():
    n, length = 5, 6
    space = TokenSpace(n, 0.3)
    model = LabelModel(n, length)
    labels = torch.tensor([1, 0])
    runs = []
    for cfg in [0.0, GuidanceSchedule(0.0, "linear")]:
        runs.append(
            [
                st.z_s
                for st in ancestral_sampler(
                    model,
                    num_samples=2,
                    seq_len=length,
                    space=space,
                    num_steps=5,
                    class_labels=labels,
                    cfg=cfg,
                    null_class=3,
                    generator=torch.Generator().manual_seed(4),
                )
            ]
        )
    model.labels_seen.clear()
    plain = [
        st.z_s
        for st in ancestral_sampler(
            model,
            num_samples=2,
            seq_len=length,
            space=space,
            num_steps=5,
            class_labels=labels,
            generator=torch.Generator().manual_seed(4),
        )
    ]
    assert all(len(seen) == 2 for seen in model.labels_seen), "gamma = 0 must not run the null pass"
    for run in runs:
        assert all(torch.equal(a, b) for a, b in zip(run, plain))
    assert math.isfinite(float(guided_logits(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2), 2.0).sum()))
