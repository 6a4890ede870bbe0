"""diffusers VQModel adapter: a tiny random VQModel saved to a temp dir, loaded locally."""

from __future__ import annotations

import json

import pytest
import torch

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers import ImageTokenizer, load_tokenizer, open_tokenizer, tokenizer_spec

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def vq_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = diffusers.VQModel(
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        layers_per_block=1,
        latent_channels=4,
        num_vq_embeddings=16,
        vq_embed_dim=4,
        norm_num_groups=8,
        sample_size=16,
    )
    path = tmp_path_factory.mktemp("vq")
    model.save_pretrained(path)
    return path, model.eval()


def test_adapter_matches_the_diffusers_model(vq_dir):
    path, model = vq_dir
    tok = open_tokenizer("diffusers", path)
    assert isinstance(tok, ImageTokenizer)
    assert tok.codebook_size == 16 and tok.downsample == 2
    images = torch.rand(3, 3, 8, 12, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ids = tok.encode(images)
    assert ids.shape == (3, 4, 6) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < 16
    with torch.no_grad():
        latent = model.encode(images).latents  # (3, 4, 4, 6)
        # brute force nearest code per position
        codes = model.quantize.embedding.weight  # (16, 4)
        flat = latent.permute(0, 2, 3, 1).reshape(-1, 4)
        brute = torch.cdist(flat, codes).argmin(1).reshape(3, 4, 6)
        assert torch.equal(ids, brute)
        # decoding ids == diffusers decoding the quantised latent
        reference = model.decode(latent).sample.clamp(-1, 1)
    torch.testing.assert_close(tok.decode(ids), reference, atol=1e-5, rtol=0)
    assert tok.decode(ids).shape == images.shape


def test_spec_round_trip_and_errors(vq_dir, tmp_path):
    path, _ = vq_dir
    tok = open_tokenizer("diffusers", path)
    spec = json.loads(json.dumps(tokenizer_spec(tok)))
    assert spec["kind"] == "diffusers"
    again = load_tokenizer(spec)
    x = torch.zeros(1, 3, 4, 4)
    assert torch.equal(again.encode(x), tok.encode(x))
    with pytest.raises(UserError, match="--tokenizer-checkpoint .*no config.json"):
        open_tokenizer("diffusers", tmp_path / "missing")
    with pytest.raises(UserError, match="downsample factor 2"):
        tok.encode(torch.zeros(1, 3, 5, 4))
