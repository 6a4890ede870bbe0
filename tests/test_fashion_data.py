"""Fashion-MNIST IDX reading (tiny fixture written here), padding, and class-name resolution."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from fashion_fixture import tiny_images, write_tiny_fashion

from xdlm_vision import sampling
from xdlm_vision.data.fashion import (
    DEFAULT_DIR,
    FASHION_CLASS_NAMES,
    IMAGES_MAGIC,
    SPLIT_SIZES,
    crop_to_original,
    load_fashion_split,
    read_idx,
    to_signed_padded,
    write_idx,
)
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.generate import normalize_name, resolve_class


@pytest.mark.parametrize("gz", [True, False])
def test_reads_the_fixture_gzipped_or_raw(tmp_path, gz):
    folder = write_tiny_fashion(tmp_path / "f", gz=gz)
    train = load_fashion_split("train", folder)
    images, labels = tiny_images(40, 0)
    assert train.images.dtype == torch.uint8 and train.images.shape == (40, 28, 28)
    assert torch.equal(train.images, torch.from_numpy(images))
    assert train.labels.dtype == torch.int64 and torch.equal(train.labels, torch.from_numpy(labels).long())
    assert len(load_fashion_split("test", folder).labels) == 20


def test_idx_header_is_big_endian_with_the_published_magic(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:4] == bytes([0, 0, 8, 3]) and int.from_bytes(raw[4:8], "big") == 3
    assert len(raw) == 16 + 3 * 28 * 28


def test_missing_files_name_the_apt_package_and_the_files(tmp_path):
    with pytest.raises(UserError) as err:
        load_fashion_split("train", tmp_path, flag="--data-dir")
    msg = str(err.value)
    assert "\n" not in msg and "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        assert name in msg


def test_bad_files_are_one_clear_error(tmp_path):
    folder = write_tiny_fashion(tmp_path / "f", gz=False)
    # labels file swapped for an images file: wrong magic
    (folder / "train-labels-idx1-ubyte").write_bytes((folder / "train-images-idx3-ubyte").read_bytes())
    with pytest.raises(UserError, match="magic number"):
        load_fashion_split("train", folder)
    # truncated images
    raw = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(UserError, match="bytes"):
        load_fashion_split("test", folder)


def test_count_mismatch_and_size_and_label_range(tmp_path):
    folder = write_tiny_fashion(tmp_path / "f", gz=True)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(19, np.uint8))
    with pytest.raises(UserError, match="20 images but .* 19 labels"):
        load_fashion_split("test", folder)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.full(20, 10, np.uint8))
    with pytest.raises(UserError, match="outside 0..9"):
        load_fashion_split("test", folder)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), np.uint8))
    with pytest.raises(UserError, match="28x28"):
        load_fashion_split("test", folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read"):
        load_fashion_split("test", folder)
    with pytest.raises(UserError, match="split"):
        load_fashion_split("val", folder)


def test_read_idx_rejects_short_header(tmp_path):
    with gzip.open(tmp_path / "x.gz", "wb") as f:
        f.write(IMAGES_MAGIC.to_bytes(4, "big") + b"\0\0")
    with pytest.raises(UserError, match="truncated"):
        read_idx(tmp_path / "x.gz", IMAGES_MAGIC)


def test_padding_maps_to_signed_range_and_crops_back():
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    x = to_signed_padded(images)
    assert x.shape == (5, 1, 32, 32) and x.dtype == torch.float32
    assert torch.all(x[..., :2, :] == -1) and torch.all(x[..., :, -2:] == -1)  # background frame
    torch.testing.assert_close(crop_to_original(x)[:, 0], images.float() / 127.5 - 1)
    assert float(to_signed_padded(torch.full((1, 28, 28), 255, dtype=torch.uint8)).max()) == 1.0


def test_class_names_resolve_to_ids():
    names = FASHION_CLASS_NAMES
    assert resolve_class("Sneaker", names) == 7
    assert resolve_class("ankle-boot", names) == 9 and resolve_class("ANKLE BOOT", names) == 9
    assert resolve_class("T-shirt/top", names) == 0 and resolve_class("tshirt", names) == 0
    assert resolve_class("top", names) == 0
    assert resolve_class(" 3 ", names) == 3
    assert resolve_class("tench", ["tench, Tinca tinca", "goldfish, Carassius auratus"]) == 0
    assert normalize_name("T-shirt/top") == "tshirttop"
    with pytest.raises(UserError, match="names no class"):
        resolve_class("Hat", names)
    with pytest.raises(UserError, match="ambiguous"):
        resolve_class("boot", ["boot, left", "boot, right"])
    with pytest.raises(UserError, match="no class names"):
        resolve_class("Sneaker", None)


def test_parse_classes_accepts_names_next_to_ids():
    names = FASHION_CLASS_NAMES
    assert sampling.parse_classes("Sneaker", 3, 10, class_names=names) == [7, 7, 7]
    assert sampling.parse_classes("Bag,2,trouser", 4, 10, class_names=names) == [8, 2, 1, 8]
    with pytest.raises(UserError, match="--class 'Hat' names no class"):
        sampling.parse_classes("Hat", 1, 10, class_names=names)
    with pytest.raises(UserError, match="has an empty item"):  # the reliability check holds for names too
        sampling.parse_classes("Sneaker,,Bag", 2, 10, class_names=names)
    # without names the old message stays
    with pytest.raises(UserError, match="must be a class id"):
        sampling.parse_classes("Sneaker", 1, 10)


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_counts_and_balance():
    for split, n in SPLIT_SIZES.items():
        arrays = load_fashion_split(split)
        assert arrays.images.shape == (n, 28, 28)
        assert torch.equal(torch.bincount(arrays.labels, minlength=10), torch.full((10,), n // 10))
