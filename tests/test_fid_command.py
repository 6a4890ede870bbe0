"""`xdlm-vision eval fid` end to end on a tiny random checkpoint with stand-in Inception weights.

The stand-in weights have torch-fidelity's exact InceptionV3 layout with random values, so the
whole path (weights-only read, torch-fidelity's extractor, resize, features, FID/IS, the card)
runs offline; the numbers themselves are meaningless.
"""

import hashlib
import json

import numpy as np
import pytest
import torch

from xdlm_vision.cli import main

TINY = ["model.size=DiT-tiny", "training.batch_size=16", "training.tensorboard=false"]


def make_checkpoint(root):
    """A random tiny digits checkpoint written with the trainer's own checkpoint writer (no training)."""
    from xdlm_vision.build import build_model
    from xdlm_vision.checkpoints import checkpoint_record, save_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.data.registry import data_meta

    cfg = load_config("digits", TINY)
    meta = data_meta(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    with torch.no_grad():  # the zero-initialised head would make every prediction uniform
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_checkpoint(root, 1, model, model, checkpoint_record(cfg, meta, model), {"step": torch.tensor(1)})


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from xdlm_vision.evaluation.inception import random_inception_state_dict

    root = tmp_path_factory.mktemp("fid")
    ckpt = make_checkpoint(root / "run")
    weights = root / "inception_standin.pth"
    torch.save(random_inception_state_dict(), weights)
    rng = np.random.default_rng(0)
    adm = root / "adm_ref.npz"  # ADM-style statistics: mu (2048,), sigma (2048, 2048)
    np.savez(adm, mu=rng.normal(size=2048).astype(np.float32), sigma=np.eye(2048, dtype=np.float32) * 0.01)
    images = root / "ref_images.npz"
    np.savez(images, arr_0=rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8))
    return {"ckpt": ckpt, "weights": weights, "adm": adm, "images": images, "root": root}


def fid_args(a, out, *extra, num=6):
    return ["eval", "fid", "--checkpoint", str(a["ckpt"]), "--inception-weights", str(a["weights"]),
            "--reference", str(a["adm"]), "--num", str(num), "--steps", "2", "--shard-size", "2",
            "--batch-size", "2", "--out", str(out), "--no-progress", *extra]


def test_interrupted_sampling_resumes_and_keeps_finished_shards(assets, tmp_path):
    out = tmp_path / "fid"
    assert main(fid_args(assets, out, "--sample-only", "--max-shards", "1")) == 0
    first = out / "shards" / "shard_00000.npz"
    assert first.is_file() and not (out / "shards" / "shard_00001.npz").exists()
    assert not (out / "samples.npz").exists() and not (out / "metrics.json").exists()
    stamp = (first.stat().st_ino, first.stat().st_mtime_ns)
    assert main(fid_args(assets, out, "--sample-only")) == 0
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == stamp  # kept, not rewritten
    with np.load(out / "samples.npz") as z:
        assert z["arr_0"].shape == (6, 8, 8, 3) and z["arr_0"].dtype == np.uint8  # ADM: NHWC uint8
        np.testing.assert_array_equal(z["arr_1"], np.arange(6) % 10)  # per-class labels
        resumed = z["arr_0"].copy()
    # an uninterrupted run with another batch size and shard size gives the same images
    other = tmp_path / "fid_other"
    args = fid_args(assets, other, "--sample-only")
    args[args.index("--batch-size") + 1] = "3"
    args[args.index("--shard-size") + 1] = "6"
    assert main(args) == 0
    with np.load(other / "samples.npz") as z:
        np.testing.assert_array_equal(z["arr_0"], resumed)


def test_rerun_with_a_different_setup_is_refused(assets, tmp_path, capsys):
    out = tmp_path / "fid"
    assert main(fid_args(assets, out, "--sample-only", "--max-shards", "1")) == 0
    capsys.readouterr()
    args = fid_args(assets, out, "--sample-only")
    args[args.index("--steps") + 1] = "3"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out") and "steps" in err[0]


def test_fid_against_adm_stats_writes_the_protocol_card(assets, tmp_path):
    out = tmp_path / "fid"
    assert main(fid_args(assets, out, "--cfg", "0.5", "--random-labels", num=2)) == 0  # 2 images: Inception is slow on CPU
    payload = json.loads((out / "metrics.json").read_text())
    m, card = payload["metrics"], payload["protocol"]
    assert np.isfinite(m["fid"]) and m["fid"] > 0 and m["inception_score"] >= 1.0 - 1e-6
    assert card["reference"]["kind"] == "adm-stats" and card["reference"]["statistics"] == "file"
    assert card["reference"]["sha256"] == hashlib.sha256(assets["adm"].read_bytes()).hexdigest()
    assert card["num_samples"] == 2 and card["label_sampling"].startswith("random")
    assert card["sampler"] == "ancestral" and card["steps"] == 2
    assert card["cfg"]["gamma"] == 0.5 and card["cfg"]["llamagen_dit_scale"] == 1.5
    assert "1 + gamma" in card["cfg"]["convention"]
    assert card["k"] == {"sampling": 0.1, "trained": 0.1} and card["ema"] is True
    assert card["seeds"]["base"] == 0 and "seed + i" in card["seeds"]["rule"]
    assert card["precision"].startswith("float32")
    assert card["feature_extractor"]["weights_sha256"] == hashlib.sha256(assets["weights"].read_bytes()).hexdigest()
    assert card["toolkit"]["torch_fidelity"] and card["toolkit"]["xdlm_vision"]
    assert "git" in card  # {"commit", "dirty"} in a checkout, None otherwise


@pytest.mark.slow
def test_png_shards_image_reference_and_precision_recall(assets, tmp_path):
    out = tmp_path / "fid"
    args = fid_args(assets, out, "--format", "png", "--precision-recall", num=5)
    args[args.index("--reference") + 1] = str(assets["images"])
    assert main(args) == 0
    pngs = sorted((out / "shards").glob("shard_*/*.png"))
    assert len(pngs) == 5 and pngs[0].name == "000000_class0_seed0.png"
    payload = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= payload["metrics"]["precision"] <= 1.0 and 0.0 <= payload["metrics"]["recall"] <= 1.0
    assert payload["protocol"]["reference"]["statistics"] == "computed"
    assert payload["protocol"]["reference"]["num_images"] == 6
    assert list(out.glob("reference_*.npy"))  # reference features cached for reruns


@pytest.mark.parametrize("what", ["weights", "reference", "weights_layout", "num"])
def test_bad_inputs_give_one_error_line_and_write_nothing(assets, tmp_path, capsys, what):
    out = tmp_path / "fid"
    args = fid_args(assets, out)
    if what == "weights":
        args[args.index("--inception-weights") + 1] = str(tmp_path / "missing.pth")
    elif what == "reference":
        args[args.index("--reference") + 1] = str(tmp_path / "missing.npz")
    elif what == "weights_layout":
        bad = tmp_path / "bad.pth"
        torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
        args[args.index("--inception-weights") + 1] = str(bad)
    else:
        args[args.index("--num") + 1] = "1"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    flag = {"weights": "--inception-weights", "reference": "--reference", "weights_layout": "--inception-weights",
            "num": "--num"}[what]
    assert flag in err[0]
    assert not (out / "shards").exists()
