"""Reference sets by path: kinds, checksums, and clean errors (no Inception needed)."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.references import load_reference
from xdlm_vision.evaluation.sample_shards import Shard, read_shard, shard_ranges, to_uint8_rgb, write_shard


def test_adm_stats_npz_reads_mu_sigma_and_skips_images_unless_asked(tmp_path):
    path = tmp_path / "ref.npz"
    imgs = np.zeros((3, 4, 4, 3), np.uint8)
    np.savez(path, mu=np.ones(5), sigma=np.eye(5), arr_0=imgs)
    ref = load_reference(path)
    assert ref.kind == "adm-stats" and ref.images is None and ref.stats.mu.shape == (5,)
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_reference(path, need_images=True).images.shape == (3, 4, 4, 3)


def test_image_folder_checksum_follows_the_content(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(tmp_path / f"{i}.png")
    ref = load_reference(tmp_path)
    assert ref.kind == "image-folder" and ref.images.shape == (3, 4, 4, 3) and ref.stats is None
    assert load_reference(tmp_path).sha256 == ref.sha256
    Image.fromarray(np.full((4, 4, 3), 99, np.uint8)).save(tmp_path / "1.png")
    assert load_reference(tmp_path).sha256 != ref.sha256


@pytest.mark.parametrize("case", ["missing", "empty_npz", "bad_sigma", "float_images", "mixed_sizes", "txt"])
def test_bad_references_are_user_errors(tmp_path, case):
    path = tmp_path / "ref.npz"
    if case == "empty_npz":
        np.savez(path, other=np.zeros(2))
    elif case == "bad_sigma":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(4))
    elif case == "float_images":
        np.savez(path, arr_0=np.zeros((2, 4, 4, 3), np.float32))
    elif case == "mixed_sizes":
        path = tmp_path / "folder"
        path.mkdir()
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path / "a.png")
        Image.fromarray(np.zeros((5, 4, 3), np.uint8)).save(path / "b.png")
    elif case == "txt":
        path = tmp_path / "ref.txt"
        path.write_text("x")
    with pytest.raises(UserError, match="--reference"):
        load_reference(path)


@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_shard_round_trip(tmp_path, fmt):
    import torch

    images = to_uint8_rgb(torch.linspace(-1, 1, 2 * 1 * 3 * 3).reshape(2, 1, 3, 3))  # grey -> RGB
    assert images.shape == (2, 3, 3, 3) and images[0, 0, 0, 0] == 0 and images[-1, -1, -1, -1] == 255
    shard = Shard(images, np.array([3, 4]), np.array([10, 11]))
    path = write_shard(tmp_path / ("s.npz" if fmt == "npz" else "s"), shard, [10, 11], fmt)
    back = read_shard(path, fmt)
    np.testing.assert_array_equal(back.images, images)
    np.testing.assert_array_equal(back.labels, [3, 4])
    np.testing.assert_array_equal(back.indices, [10, 11])
    assert not list(tmp_path.glob(".tmp_*"))  # nothing half-written left behind
    assert [len(r) for r in shard_ranges(7, 3)] == [3, 3, 1]
