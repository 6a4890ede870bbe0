"""Data sources: digits split, CIFAR-10 pixel tokens, LlamaGen centre crop, class maps."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xdlm_vision.data.cifar10 import CIFAR10Tokens
from xdlm_vision.data.digits import DigitsTokens, load_digits_split
from xdlm_vision.data.example import TokenExample
from xdlm_vision.data.image_folder import (
    check_class_map,
    open_image_folder,
    read_class_map,
    write_json_atomic,
)
from xdlm_vision.data.transforms import center_crop_arr, extraction_transform
from xdlm_vision.errors import UserError


def test_digits_split_is_pinned():
    train, val, full = load_digits_split("train"), load_digits_split("val"), load_digits_split("all")
    assert (len(train.labels), len(val.labels), len(full.labels)) == (1438, 359, 1797)
    assert train.tokens.shape == (1438, 8, 8) and train.tokens.dtype == torch.int64
    assert int(full.tokens.min()) == 0 and int(full.tokens.max()) == 16
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.sum() == 359 and counts.min() >= 35  # ~20 % of every class
    # train and val are disjoint and together are the whole set (compare as multisets of rows)
    rows = lambda a: sorted(map(tuple, torch.cat([a.tokens.reshape(-1, 64), a.labels[:, None]], 1).tolist()))
    assert rows(full) == sorted(rows(train) + rows(val))
    assert torch.equal(load_digits_split("val").tokens, val.tokens)  # deterministic
    item = DigitsTokens("val")[0]
    assert isinstance(item, TokenExample) and item.tokens.shape == (8, 8)
    with pytest.raises(UserError):
        load_digits_split("test")


def _fake_cifar(root: Path, n: int = 4) -> np.ndarray:
    """The python-pickle layout with n images per batch; returns all training images (5n, 32, 32, 3)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = rng.integers(0, 10, size=n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        if name != "test_batch":
            train.append(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return np.concatenate(train)


def test_cifar10_pixel_tokens(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    with pytest.raises(UserError, match="data.path .*cifar-10-batches-py"):
        CIFAR10Tokens(tmp_path / "missing")
    images = _fake_cifar(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files have other MD5s
    ds = CIFAR10Tokens(tmp_path / "cifar-10-batches-py", train=True, flip=False)
    assert len(ds) == 20 and ds.classes[3] == "c3"
    item = ds[7]
    assert item.tokens.shape == (32, 96) and item.tokens.dtype == torch.int64
    # 256 levels: tokens are the stored bytes, flattened (h, w, c)
    assert torch.equal(item.tokens, torch.from_numpy(images[7].reshape(32, 96).astype(np.int64)))
    flipped = CIFAR10Tokens(tmp_path, train=True, flip=True)
    mirror = torch.from_numpy(images[7][:, ::-1].reshape(32, 96).astype(np.int64))
    torch.manual_seed(0)
    draws = [flipped[7].tokens for _ in range(20)]
    assert all(torch.equal(d, item.tokens) or torch.equal(d, mirror) for d in draws)
    assert any(torch.equal(d, mirror) for d in draws) and any(torch.equal(d, item.tokens) for d in draws)
    coarse = CIFAR10Tokens(tmp_path, train=False, flip=False, levels=17)
    assert len(coarse) == 4 and int(coarse[0].tokens.max()) <= 16


def test_center_crop_arr():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((4, 4, 1), dtype=np.uint8))  # 64x64 of 4x4 blocks
    # 64 -> 32 -> 16 by BOX halving: averages of equal pixels give the small image back exactly
    np.testing.assert_array_equal(np.asarray(center_crop_arr(Image.fromarray(big), 16)), small)
    # no resize needed: plain centre crop of a wide image
    wide = rng.integers(0, 256, size=(16, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(center_crop_arr(Image.fromarray(wide), 16)), wide[:, 12:28])
    # general case: the ADM recipe spelled out with numpy slicing
    img = Image.fromarray(rng.integers(0, 256, size=(70, 100, 3), dtype=np.uint8))
    ref = img.resize((50, 35), resample=Image.BOX)  # 70 >= 2*16 -> halve; 35 >= 32 -> halve again
    ref = ref.resize((25, 17), resample=Image.BOX)
    ref = np.asarray(ref.resize((round(25 * 16 / 17), 16), resample=Image.BICUBIC))  # (16, 24)
    np.testing.assert_array_equal(np.asarray(center_crop_arr(img, 16)), ref[:, 4:20])
    x = extraction_transform(16)(img)
    assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1


def test_class_map_round_trip(tmp_path):
    for name in ["n01", "n02", "n10"]:
        (tmp_path / "imgs" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / name / "a.png")
    ds = open_image_folder(tmp_path / "imgs")
    assert ds.class_to_idx == {"n01": 0, "n02": 1, "n10": 2}
    write_json_atomic(tmp_path / "map.json", ds.class_to_idx)
    assert read_class_map(tmp_path / "map.json") == ds.class_to_idx
    open_image_folder(tmp_path / "imgs", class_map=read_class_map(tmp_path / "map.json"))
    with pytest.raises(UserError, match="unknown folders: n03.*renumbered: n10"):
        check_class_map({"n01": 0, "n03": 1, "n10": 3}, {"n01": 0, "n02": 1, "n10": 2})
    (tmp_path / "bad.json").write_text('{"a": 0, "b": 2}')
    with pytest.raises(UserError, match="--class-map"):
        read_class_map(tmp_path / "bad.json")
