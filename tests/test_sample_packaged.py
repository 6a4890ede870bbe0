"""The digits checkpoint shipped in the package loads and draws the digits it is asked for."""

from __future__ import annotations

import json

import torch

from xdlm_vision import sampling


def test_packaged_checkpoint_is_small_and_sampling_only():
    root = sampling.packaged_checkpoint()
    files = sorted(p.name for p in root.iterdir())
    assert files == ["config.json", "ema.safetensors"]
    assert sum(p.stat().st_size for p in root.iterdir()) < 6 * 2**20  # a few MB at most
    meta = json.loads((root / "config.json").read_text())
    assert meta["config"]["data"]["name"] == "digits" and meta["num_classes"] == 10


def test_packaged_checkpoint_draws_the_requested_digits():
    from xdlm_vision.evaluation.digits_classifier import classify_digits

    sm = sampling.load_for_sampling(None, device="cpu")
    assert (sm.num_classes, sm.space.num_tokens, sm.grid_shape) == (10, 17, (8, 8))
    labels = [c for c in range(10) for _ in range(5)]  # 50 samples, 5 per class
    tokens = sampling.generate(sm, labels, sampling.sample_seeds(0, 50), sampling.SamplingOptions(steps=8, cfg=1.0))
    pred = classify_digits(tokens).labels
    agree = float((pred == torch.tensor(labels)).float().mean())
    assert agree >= 0.8, f"classifier agrees with the requested class on only {agree:.0%} of 50 samples"
