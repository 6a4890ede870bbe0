"""LlamaGen VQ-VAE: state-dict compatibility with VQ-16, golden outputs, loaders, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers import load_tokenizer, open_tokenizer, tokenizer_spec
from xdlm_vision.tokenizers.base import ImageTokenizer
from xdlm_vision.tokenizers.llamagen import load_llamagen_tokenizer
from xdlm_vision.tokenizers.llamagen_config import (
    VQ_SIZES,
    LlamaGenVQConfig,
    config_from_dict,
    resolve_config,
)
from xdlm_vision.tokenizers.llamagen_vq import VQModel

DATA = Path(__file__).parent / "data"
TINY = DATA / "llamagen_tiny"


def _reference_shapes() -> dict[str, tuple[int, ...]]:
    rows = (DATA / "llamagen_vq16_state_dict.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        name, shape, dtype = row.split("\t")
        assert dtype == "float32"
        out[name] = tuple(int(s) for s in shape.split(","))
    return out


def _tiny_config() -> LlamaGenVQConfig:
    return config_from_dict(json.loads((TINY / "config.json").read_text()))


@pytest.fixture(scope="module")
def tiny_tok():
    return load_llamagen_tokenizer(TINY / "weights.safetensors", _tiny_config())


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return load_file(str(TINY / "inputs.safetensors"))["images"]  # (2, 3, 32, 32)


def test_vq16_has_exactly_the_reference_names_and_shapes():
    ref = _reference_shapes()
    assert len(ref) == 344
    with torch.device("meta"):
        model = VQModel(VQ_SIZES["VQ-16"])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ref) - set(ours)) == []  # nothing missing
    assert sorted(set(ours) - set(ref)) == []  # nothing unexpected
    assert ours == ref
    # and strict loading of a state dict with exactly those entries succeeds
    fake = {k: torch.empty(s, device="meta") for k, s in ref.items()}
    model.load_state_dict(fake, strict=True, assign=True)


def test_registry_facts():
    vq16, vq8 = VQ_SIZES["VQ-16"], VQ_SIZES["VQ-8"]
    assert (vq16.downsample, vq16.codebook_size, vq16.codebook_dim, vq16.z_channels) == (16, 16384, 8, 256)
    assert vq16.codebook_l2_norm and vq8.codebook_l2_norm
    assert vq8.downsample == 8
    assert resolve_config("VQ-16").size == "VQ-16"


def test_config_json_round_trip(tmp_path):
    cfg = _tiny_config()
    assert (cfg.base_channels, cfg.encoder_ch_mult, cfg.decoder_res_blocks, cfg.codebook_size) == (
        32,
        (1, 2),
        3,
        64,
    )
    path = tmp_path / "tok.json"
    path.write_text(json.dumps(cfg.to_dict()))
    resolved = resolve_config(str(path))
    assert resolved.config == cfg and resolved.size is None
    with pytest.raises(UserError, match="unknown fields"):
        config_from_dict({"base_channel": 32})
    with pytest.raises(UserError, match="--tokenizer"):
        resolve_config("VQ-32")
    with pytest.raises(UserError, match="divisible by norm_groups"):
        LlamaGenVQConfig(base_channels=48)


def test_golden_outputs(tiny_tok, inputs):
    exp = load_file(str(TINY / "expected.safetensors"))
    enc = tiny_tok.encode_full(inputs)
    assert torch.equal(enc.indices, exp["indices_bhw"])
    assert torch.equal(enc.indices.reshape(-1), exp["indices"])
    torch.testing.assert_close(enc.latent, exp["pre_quant_latent"], atol=1e-4, rtol=0)
    torch.testing.assert_close(enc.quant, exp["quant"], atol=1e-4, rtol=0)
    raw = tiny_tok.decode_raw(enc.indices)
    torch.testing.assert_close(raw, exp["decoded"], atol=1e-4, rtol=0)
    torch.testing.assert_close(tiny_tok.model.decode(enc.quant), exp["decoded_from_quant"], atol=1e-4, rtol=0)
    # the public decode is the same output clamped to the image range
    assert exp["decoded"].abs().max() > 1  # the check below is not vacuous
    torch.testing.assert_close(tiny_tok.decode(enc.indices), exp["decoded"].clamp(-1, 1), atol=1e-4, rtol=0)
    assert torch.equal(tiny_tok.encode(inputs), exp["indices_bhw"])


def test_decoding_uses_normalised_codebook_rows(inputs):
    exp = load_file(str(TINY / "expected_scaled_codebook.safetensors"))
    state = load_file(str(TINY / "weights.safetensors"))
    state["quantize.embedding.weight"] = exp["quantize.embedding.weight"]
    norms = exp["quantize.embedding.weight"].norm(dim=1)
    assert (norms - 1).abs().max() > 0.1  # rows really are not unit length
    model = VQModel(_tiny_config()).eval()
    model.load_state_dict(state, strict=True)
    with torch.no_grad():
        enc = model.encode(inputs)
        decoded = model.decode_code(enc.indices)
    assert torch.equal(enc.indices.reshape(-1), exp["indices"])
    torch.testing.assert_close(enc.quant, exp["quant"], atol=1e-4, rtol=0)
    torch.testing.assert_close(decoded, exp["decoded"], atol=1e-4, rtol=0)
    wrong_gap = (decoded - exp["decoded_raw_rows_WRONG"]).abs().max()
    assert wrong_gap > 1e-2, "decoding matches the un-normalised-rows bug"


def test_protocol_and_non_square(tiny_tok):
    assert isinstance(tiny_tok, ImageTokenizer)
    assert tiny_tok.downsample == 2 and tiny_tok.codebook_size == 64
    assert tiny_tok.grid_shape(32, 48) == (16, 24)
    images = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ids = tiny_tok.encode(images)
    assert ids.shape == (1, 8, 12) and ids.dtype == torch.int64
    assert tiny_tok.decode(ids).shape == (1, 3, 16, 24)
    # a batch of one image gives the same ids as that image inside a larger batch
    both = torch.cat([images, -images])
    assert torch.equal(tiny_tok.encode(both)[:1], ids)
    with pytest.raises(UserError, match="not a positive multiple .*downsample factor 2.*--image-size"):
        tiny_tok.encode(torch.zeros(1, 3, 17, 16))
    with pytest.raises(UserError, match="0..63"):
        tiny_tok.decode(torch.full((1, 2, 2), 64))


def _state():
    return load_file(str(TINY / "weights.safetensors"))


@pytest.mark.parametrize("layout", ["model_entry", "bare", "safetensors"])
def test_checkpoint_layouts_load(tmp_path, layout, inputs):
    state = _state()
    if layout == "model_entry":
        path = tmp_path / "vq.pt"
        torch.save({"model": state, "steps": 7}, path)
    elif layout == "bare":
        path = tmp_path / "vq.pt"
        torch.save(state, path)
    else:
        path = tmp_path / "vq.safetensors"
        save_file(state, str(path))
    tok = load_llamagen_tokenizer(path, _tiny_config())
    exp = load_file(str(TINY / "expected.safetensors"))
    assert torch.equal(tok.encode(inputs), exp["indices_bhw"])


def test_mismatched_checkpoint_lists_keys_and_flag(tmp_path):
    state = _state()
    del state["decoder.conv_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save({"model": state}, path)
    with pytest.raises(UserError) as info:
        load_llamagen_tokenizer(path, _tiny_config())
    msg = str(info.value)
    assert "missing keys (1): decoder.conv_out.bias" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "--tokenizer-checkpoint" in msg and "\n" not in msg
    # the tiny weights are not VQ-16 weights: shape mismatches are named too
    with pytest.raises(UserError, match="shape mismatches"):
        load_llamagen_tokenizer(TINY / "weights.safetensors", "VQ-8")


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(UserError, match="--tokenizer-checkpoint .*no such file"):
        load_llamagen_tokenizer(tmp_path / "nope.pt", _tiny_config())
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="--tokenizer-checkpoint .*cannot read"):
        load_llamagen_tokenizer(junk, _tiny_config())
    # pickles with arbitrary objects are refused by weights_only=True
    evil = tmp_path / "evil.pt"
    torch.save({"model": _state(), "cfg": Path("x")}, evil)
    with pytest.raises(UserError, match="cannot read"):
        load_llamagen_tokenizer(evil, _tiny_config())


def test_spec_round_trip(tmp_path, tiny_tok, inputs):
    spec = tokenizer_spec(tiny_tok)
    spec = json.loads(json.dumps(spec))  # JSON-serialisable
    assert spec["kind"] == "llamagen" and spec["size"] is None and len(spec["sha256"]) == 64
    again = load_tokenizer(spec)
    assert torch.equal(again.encode(inputs), tiny_tok.encode(inputs))
    # a different file at the recorded path is refused
    other = tmp_path / "other.safetensors"
    state = _state()
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 1
    save_file(state, str(other))
    with pytest.raises(UserError, match="SHA-256"):
        load_tokenizer(spec, checkpoint=other)
    # the CLI path: a config JSON as --tokenizer
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(_tiny_config().to_dict()))
    tok = open_tokenizer(str(cfg), TINY / "weights.safetensors")
    assert torch.equal(tok.encode(inputs), tiny_tok.encode(inputs))
    with pytest.raises(UserError, match="--tokenizer-checkpoint"):
        open_tokenizer("VQ-16", None)
