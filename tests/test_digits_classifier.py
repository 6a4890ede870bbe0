"""The packaged digits classifier: accuracy on the real validation split, shapes, input checks."""

from __future__ import annotations

import json

import pytest
import torch

from xdlm_vision.data.digits import load_digits_split
from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.digits_classifier import (
    ClassifierOutput,
    DigitsCNN,
    classify_digits,
    default_asset_path,
    load_digits_classifier,
    save_digits_classifier,
)


def test_packaged_classifier_reaches_97_percent_on_val():
    val = load_digits_split("val")
    out = classify_digits(val.tokens)
    acc = (out.labels == val.labels).float().mean().item()
    assert acc >= 0.97
    recorded = json.loads(default_asset_path().with_suffix(".json").read_text())
    assert recorded["val_accuracy"] == pytest.approx(acc, abs=1e-4)  # the JSON tells the truth
    assert recorded["seed"] == 0


def test_output_shapes_and_probabilities():
    tokens = load_digits_split("val").tokens[:7]
    out = classify_digits(tokens)
    assert isinstance(out, ClassifierOutput)
    assert out.labels.shape == (7,) and out.labels.dtype == torch.int64
    assert out.probs.shape == (7, 10)
    torch.testing.assert_close(out.probs.sum(-1), torch.ones(7))
    assert out.features.ndim == 2 and out.features.shape[0] == 7
    assert torch.equal(out.labels, out.probs.argmax(-1))
    # batch-independence: chunking does not change anything
    chunked = classify_digits(tokens, batch_size=3)
    torch.testing.assert_close(chunked.probs, out.probs)
    torch.testing.assert_close(chunked.features, out.features)


def test_classifier_is_not_fooled_by_noise():
    """Pure noise grids are far less confidently classified than real digits."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 17, (200, 8, 8), generator=g)
    real = load_digits_split("val").tokens[:200]
    assert classify_digits(noise).probs.max(-1).values.mean() < classify_digits(real).probs.max(-1).values.mean()


@pytest.mark.parametrize(
    "tokens,needle",
    [
        (torch.full((2, 8, 8), 17), "0..16"),
        (torch.full((2, 8, 8), -1), "0..16"),
        (torch.zeros(2, 64, dtype=torch.long), r"\(B, 8, 8\)"),
        (torch.zeros(2, 8, 8), "integer"),
    ],
)
def test_bad_tokens_raise_user_error(tokens, needle):
    with pytest.raises(UserError, match=needle):
        classify_digits(tokens)


def test_missing_weights_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_digits_classifier(tmp_path / "nope.safetensors")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = DigitsCNN().eval()
    path = tmp_path / "clf.safetensors"
    save_digits_classifier(model, path, {"seed": 1})
    loaded = load_digits_classifier(path)
    tokens = torch.randint(0, 17, (5, 8, 8))
    torch.testing.assert_close(classify_digits(tokens, loaded).probs, classify_digits(tokens, model).probs)
    assert json.loads(path.with_suffix(".json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.json", "clf.safetensors"]  # no temp files left
