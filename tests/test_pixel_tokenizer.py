"""PixelTokenizer: exact round trip, (h, w, c) token layout, interface facts."""

from __future__ import annotations

import pytest
import torch

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers import ImageTokenizer, PixelTokenizer, load_tokenizer, tokenizer_spec


@pytest.mark.parametrize("levels,channels,size,n_tokens", [(256, 3, 32, 3072), (17, 1, 8, 64)])
def test_round_trip_and_layout(levels, channels, size, n_tokens):
    tok = PixelTokenizer(levels, channels)
    assert isinstance(tok, ImageTokenizer) and tok.codebook_size == levels and tok.downsample == 1
    g = torch.Generator().manual_seed(levels)
    ids = torch.randint(levels, (4, size, size * channels), generator=g)  # (B, H, W*C)
    images = tok.decode(ids)  # (B, C, H, W)
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(tok.encode(images), ids)  # ids -> images -> ids is exact
    assert torch.equal(tok.decode(tok.encode(images)), images)  # and images on the level grid too
    assert tok.grid_shape(size, size) == (size, size * channels)
    assert ids[0].numel() == n_tokens
    # (h, w, c) flattening: token (y, x*C + c) is channel c of pixel (y, x)
    y, x, c = 3, 5, channels - 1
    level = torch.round((images[1, c, y, x] + 1) / 2 * (levels - 1)).long()
    assert ids[1, y, x * channels + c] == level
    assert ids[1].reshape(-1)[(y * size + x) * channels + c] == level


def test_extremes_and_errors():
    tok = PixelTokenizer(256, 3)
    images = torch.tensor([-1.0, 1.0, -2.0, 2.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    assert tok.encode(images)[0, 0].tolist() == [0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255]
    with pytest.raises(UserError):
        tok.encode(torch.zeros(1, 1, 4, 4))
    with pytest.raises(UserError):
        PixelTokenizer(1, 3)
    spec = tokenizer_spec(tok)
    assert spec == {"kind": "pixel", "levels": 256, "channels": 3}
    assert load_tokenizer(spec) == tok
