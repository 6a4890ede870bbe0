"""Text LM on the shared core: sampling shapes, a short training run, perplexity, the sample-text CLI."""

from __future__ import annotations

import math

import pytest
import torch

from xdlm_vision.backbones import build_backbone
from xdlm_vision.build import make_model_fn
from xdlm_vision.config import TextConfig
from xdlm_vision.core import DiffusionSpec, TokenSpace, corrupt, get_schedule, nelbo, sample_times
from xdlm_vision.data.text.dataset import build_text_corpus
from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo
from xdlm_vision.sampling.text import generate_text
from xdlm_vision.tokenizers.text import ByteTokenizer

L = 32


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest single-threaded (and the CI machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(num_tokens=257, seed=0):
    torch.manual_seed(seed)
    return build_backbone("dit", num_tokens=num_tokens, grid_shape=(L,), num_classes=0, size="DiT-tiny")


@pytest.mark.parametrize("sampler", ["ancestral", "confidence"])
def test_generate_shapes_and_per_sample_seeds(sampler):
    model = _tiny(seed=1)
    torch.nn.init.normal_(model.final.linear.weight, std=0.5)  # non-uniform logits
    spec = DiffusionSpec(TokenSpace(257, 0.1), get_schedule("linear"), time_conditioning=False)
    tok = ByteTokenizer()
    out = generate_text(model, tok, spec, num_samples=3, seq_len=L, num_steps=5, sampler=sampler, seed=7,
                        keep_steps=True)
    assert out.tokens.shape == (3, L) and out.tokens.dtype == torch.long
    assert int(out.tokens.max()) < 257 and int(out.tokens.min()) >= 0  # no mask left
    assert len(out.texts) == 3 and out.texts[0] == tok.decode(out.tokens[0].tolist())
    assert len(out.steps) == 5 and out.steps[-1].z_s.shape == (3, L)
    assert torch.equal(out.steps[-1].z_s, out.tokens)
    one = generate_text(model, tok, spec, num_samples=1, seq_len=L, num_steps=5, sampler=sampler, seed=7)
    assert one.steps == [] and torch.equal(one.tokens[0], out.tokens[0])  # independent of batch size


def held_out_nelbo(model, dataset, spec):
    """The `eval nelbo` estimator on the first 64 sequences, one draw of t, unconditional."""
    model.eval()
    try:
        return monte_carlo_nelbo(make_model_fn(model, "cpu"), dataset, spec, num_t=1, seed=0, batch_size=64,
                                 conditional=False, max_examples=64)
    finally:
        model.train()


def test_core_loss_decreases_on_embedded_corpus():
    """A few dozen steps of a tiny DiT with the core loss directly: training and held-out NELBO fall."""
    corpus = build_text_corpus(TextConfig(seq_len=L, max_documents=400))
    space, sched = TokenSpace(257, 0.1), get_schedule("linear")
    spec = DiffusionSpec(space, sched, time_conditioning=False)
    model = _tiny()
    before = held_out_nelbo(model, corpus.val, spec)
    assert before.nats_per_token < 2 * math.log(257)  # an untrained model is near the uniform guess
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for step in range(40):
        idx = torch.randint(len(corpus.train), (32,), generator=gen)
        x0 = corpus.train.tokens[idx]  # (B, L)
        t = sample_times(32, generator=gen)  # (B,)
        z_t = corrupt(x0, t, space, sched, generator=gen)  # (B, L)
        loss = nelbo(model(z_t, None), x0, z_t, t, space, sched).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    after = held_out_nelbo(model, corpus.val, spec)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5, losses
    assert after.nats_per_token < before.nats_per_token - 0.5
    assert after.perplexity_bound == pytest.approx(math.exp(after.nats_per_token))
    assert after.bits_per_token == pytest.approx(after.nats_per_token / math.log(2))
    assert after.num_tokens == 64 * L and after.num_examples == 64
