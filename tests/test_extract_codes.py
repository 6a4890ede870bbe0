"""`xdlm-vision extract-codes` end to end on a generated ImageFolder and the tiny VQ fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from xdlm_vision.cli import main
from xdlm_vision.data import extract as extract_mod
from xdlm_vision.data.codes import CodesDataset, read_manifest
from xdlm_vision.data.extract import ExtractConfig, extract_codes
from xdlm_vision.data.transforms import extraction_transform
from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers import load_tokenizer

TINY = Path(__file__).parent / "data" / "llamagen_tiny"
CLASSES = ["cat", "dog", "eel"]
SIZES = [(20, 20), (24, 18), (18, 30)]  # (w, h): square, landscape, portrait -> all centre-cropped to 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("extract")
    images = base / "images"
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (images / name).mkdir(parents=True)
        for j, (w, h) in enumerate(SIZES):
            arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            Image.fromarray(arr).save(images / name / f"img{j}.png")
    ckpt = base / "vq_tiny.pt"
    torch.save({"model": load_file(str(TINY / "weights.safetensors"))}, ckpt)
    return SimpleNamespace(base=base, images=images, ckpt=ckpt, config=TINY / "config.json")


def _args(s, out, *extra):
    return [
        "extract-codes", "--images", str(s.images), "--tokenizer-checkpoint", str(s.ckpt), "--out", str(out),
        "--tokenizer", str(s.config), "--image-size", "16", "--batch-size", "2", "--shard-size", "4",
        "--num-workers", "0", *extra,
    ]  # fmt: skip


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_*.npy"))}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_end_to_end_with_flip(setup, tmp_path, capsys):
    out = tmp_path / "codes"
    assert main(_args(setup, out, "--flip")) == 0
    capsys.readouterr()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 9 and manifest["num_classes"] == 3
    assert manifest["class_to_idx"] == {"cat": 0, "dog": 1, "eel": 2}
    assert json.loads((out / "class_map.json").read_text()) == manifest["class_to_idx"]
    assert manifest["class_counts"] == [3, 3, 3]
    assert [s["count"] for s in manifest["shards"]] == [4, 4, 1]
    assert manifest["grid_shape"] == [8, 8] and manifest["views"] == 2 and manifest["flip"] is True
    assert manifest["token_dtype"] == "uint16" and manifest["codebook_size"] == 64
    assert manifest["tokenizer"]["kind"] == "llamagen"
    assert manifest["tokenizer_sha256"] == manifest["tokenizer"]["sha256"]

    # the shards hold exactly the tokenizer's codes of the centre-cropped images and their mirrors
    tok = load_tokenizer(manifest["tokenizer"])
    transform = extraction_transform(16)
    files = [setup.images / c / f"img{j}.png" for c in CLASSES for j in range(3)]
    crops = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])  # (9, 3, 16, 16)
    expected = torch.stack([tok.encode(crops), tok.encode(crops.flip(-1))], dim=1)  # (9, 2, 8, 8)
    tokens = np.concatenate([np.load(out / f"tokens_{i:05d}.npy") for i in range(3)])
    labels = np.concatenate([np.load(out / f"labels_{i:05d}.npy") for i in range(3)])
    assert tokens.shape == (9, 2, 8, 8)
    np.testing.assert_array_equal(tokens, expected.numpy())
    np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], 3))
    assert not torch.equal(expected[:, 0], expected[:, 1])  # mirrored codes differ

    # the dataset reads them back, memory-mapped
    ds = CodesDataset(out, views="all")
    assert len(ds) == 18 and ds.num_classes == 3 and ds.codebook_size == 64 and ds.grid_shape == (8, 8)
    item = ds[3]  # image 1, flipped view
    assert item.tokens.dtype == torch.int64 and item.tokens.shape == (8, 8)
    assert torch.equal(item.tokens, expected[1, 1]) and int(item.label) == 0
    original = CodesDataset(out, views="original")
    assert (
        len(original) == 9 and torch.equal(original[8].tokens, expected[8, 0]) and int(original[8].label) == 2
    )
    torch.manual_seed(0)
    rand = CodesDataset(out, views="random")
    seen = {bool(torch.equal(rand[5].tokens, expected[5, 1])) for _ in range(20)}
    assert seen == {True, False}  # both views get drawn
    batch = next(iter(torch.utils.data.DataLoader(original, batch_size=4)))
    assert batch.tokens.shape == (4, 8, 8) and batch.label.tolist() == [0, 0, 0, 1]
    assert read_manifest(out).class_names == CLASSES


@pytest.fixture(scope="module")
def clean(setup):
    """One uninterrupted single-process extraction (no flip) to compare against."""
    out = setup.base / "clean"
    assert main(_args(setup, out)) == 0
    return out


def test_resume_after_interruption_gives_identical_shards(setup, clean, tmp_path, monkeypatch, capsys):
    reference = _shard_bytes(clean)
    assert len(reference) == 6

    # interrupt in the middle of the second shard
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real = extract_mod._encode_views

    def flaky(tok, images, flip):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(tok, images, flip)

    monkeypatch.setattr(extract_mod, "_encode_views", flaky)
    assert main(_args(setup, out)) == 130
    assert not (out / "manifest.json").exists()  # nothing a later run (or a trainer) would trust
    assert (out / "done_00000.json").exists() and not (out / "done_00001.json").exists()
    with pytest.raises(UserError, match="unfinished"):
        CodesDataset(out)
    monkeypatch.setattr(extract_mod, "_encode_views", real)

    # resuming skips shard 0 and finishes the rest
    capsys.readouterr()
    assert main(_args(setup, out)) == 0
    assert "encoded 2 shards here, 1 already done" in capsys.readouterr().out
    assert _shard_bytes(out) == reference
    # a half-written / damaged last shard (marker gone, array truncated) is redone
    (out / "done_00002.json").unlink()
    (out / "tokens_00002.npy").write_bytes(b"\x93NUMPY garbage")
    assert main(_args(setup, out)) == 0
    assert "encoded 1 shards here, 2 already done" in capsys.readouterr().out
    assert _shard_bytes(out) == reference


def test_shards_split_across_processes(setup, clean, tmp_path):
    """Two simulated accelerate processes: each writes shards i % 2 == rank; rank 0 the manifest.

    Rank 1 runs while rank 0 waits at its last barrier, as it would under ``accelerate launch``.
    """
    cfg = {
        "images": str(setup.images),
        "checkpoint": str(setup.ckpt),
        "tokenizer": str(setup.config),
        "image_size": 16,
        "batch_size": 2,
        "shard_size": 4,
        "num_workers": 0,
    }
    out = tmp_path / "two"
    results = {}

    def run_rank1():
        results[1] = extract_codes(ExtractConfig(out=str(out), **cfg), _FakeDist(1, 2))
        assert not (out / "manifest.json").exists()  # only rank 0 writes it
        assert sorted(p.name for p in out.glob("done_*")) == [
            "done_00000.json",
            "done_00001.json",
            "done_00002.json",
        ]

    results[0] = extract_codes(ExtractConfig(out=str(out), **cfg), _FakeDist(0, 2, {3: run_rank1}))
    assert (results[1].written, results[1].complete) == (1, False)
    assert (results[0].written, results[0].complete) == (2, True)
    assert _shard_bytes(out) == _shard_bytes(clean)
    assert (out / "manifest.json").read_text() == (clean / "manifest.json").read_text()


class _FakeDist:
    """Stands in for accelerate.PartialState; runs ``hooks[n]`` at the n-th barrier."""

    def __init__(self, rank: int, world: int, hooks: dict | None = None) -> None:
        self.process_index, self.num_processes = rank, world
        self.device = torch.device("cpu")
        self.is_local_main_process = rank == 0
        self.hooks, self.barriers = hooks or {}, 0

    def wait_for_everyone(self) -> None:
        self.barriers += 1
        if self.barriers in self.hooks:
            self.hooks[self.barriers]()


def test_bad_inputs_fail_cleanly(setup, tmp_path, capsys):
    out = tmp_path / "out"
    # missing checkpoint
    args = _args(setup, out)
    args[args.index("--tokenizer-checkpoint") + 1] = str(tmp_path / "missing.pt")
    assert main(args) == 2
    assert "--tokenizer-checkpoint" in _error_line(capsys) and not out.exists()
    # wrong keys
    bad = tmp_path / "bad.pt"
    state = load_file(str(TINY / "weights.safetensors"))
    state["encoder.extra"] = state.pop("encoder.conv_in.bias")
    torch.save(state, bad)
    args[args.index("--tokenizer-checkpoint") + 1] = str(bad)
    assert main(args) == 2
    err = _error_line(capsys)
    assert "missing keys (1): encoder.conv_in.bias" in err and "unexpected keys (1): encoder.extra" in err
    assert "--tokenizer-checkpoint" in err and not out.exists()
    # image size not divisible by the downsample factor (2)
    args = _args(setup, out)
    args[args.index("--image-size") + 1] = "15"
    assert main(args) == 2
    assert "--image-size" in _error_line(capsys) and not out.exists()
    # empty folder / missing folder
    empty = tmp_path / "empty"
    empty.mkdir()
    for images in (empty, tmp_path / "nowhere"):
        args = _args(setup, out)
        args[args.index("--images") + 1] = str(images)
        assert main(args) == 2
        assert "--images" in _error_line(capsys) and not out.exists()
    # class folders without images
    (empty / "cls").mkdir()
    assert main(args[:2] + [str(empty)] + args[3:]) == 2
    assert "--images" in _error_line(capsys) and not out.exists()
    # unknown architecture name
    args = _args(setup, out)
    args[args.index("--tokenizer") + 1] = "VQ-99"
    assert main(args) == 2
    assert "--tokenizer" in _error_line(capsys) and not out.exists()


def test_class_map_is_checked_and_settings_cannot_be_mixed(setup, clean, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    # a second machine with one class folder missing must not renumber classes
    partial = tmp_path / "partial"
    shutil.copytree(setup.images, partial)
    shutil.rmtree(partial / "dog")
    args = _args(setup, tmp_path / "other", "--class-map", str(out / "class_map.json"))
    args[args.index("--images") + 1] = str(partial)
    assert main(args) == 2
    err = _error_line(capsys)
    assert "missing folders: dog" in err and "--class-map" in err
    # the recorded map itself is accepted for the original folders (here: a finished run, all skipped)
    assert main(_args(setup, out, "--class-map", str(out / "class_map.json"))) == 0
    assert "encoded 0 shards here, 3 already done" in capsys.readouterr().out
    # resuming into a folder made with other settings is refused, the folder is left untouched
    before = _shard_bytes(out)
    assert main(_args(setup, out, "--flip")) == 2
    assert "different settings (flip" in _error_line(capsys)
    assert _shard_bytes(out) == before
    # a non-empty folder that is not an extraction is refused
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("mine")
    assert main(_args(setup, junk)) == 2
    assert "not empty" in _error_line(capsys)
