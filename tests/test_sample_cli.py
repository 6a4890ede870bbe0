"""``xdlm-vision sample`` and xdlm_vision.sampling on a tiny untrained checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xdlm_vision import sampling
from xdlm_vision.cli import main
from xdlm_vision.errors import UserError

LLAMAGEN_TINY = Path(__file__).parent / "data" / "llamagen_tiny"


def write_tiny_checkpoint(out: Path, overrides=(), tokenizer_spec=None) -> Path:
    """A real checkpoint directory (untrained DiT-tiny on the digits meta), as the trainer writes it."""
    from xdlm_vision.build import build_model
    from xdlm_vision.checkpoints import checkpoint_record, save_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.data.registry import data_meta

    cfg = load_config("digits", ["model.size=DiT-tiny", *overrides])
    meta = data_meta(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    with torch.no_grad():  # make the head non-trivial so samples depend on the weights
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    info = checkpoint_record(cfg, meta, model)
    if tokenizer_spec is not None:
        info["tokenizer"] = tokenizer_spec
    return save_checkpoint(out, 7, model, model, info, {"step": torch.tensor(7)})


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("run"))


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# --- determinism ------------------------------------------------------------------------------


def test_same_seed_same_image_whatever_num_and_batch_size(ckpt):
    sm = sampling.load_for_sampling(ckpt, device="cpu")
    opts = sampling.SamplingOptions(steps=4, cfg=1.5)
    labels = sampling.parse_classes("3,5", 6, sm.num_classes)
    seeds = sampling.sample_seeds(10, 6)
    full = sampling.generate(sm, labels, seeds, opts, batch_size=6)  # (6, 8, 8)
    small = sampling.generate(sm, labels, seeds, opts, batch_size=4)
    assert torch.equal(full, small)
    # image 4 alone (seed 14, class 3) equals image 4 of the batch
    alone = sampling.generate(sm, [labels[4]], [seeds[4]], opts, batch_size=1)
    assert torch.equal(alone[0], full[4])
    assert not torch.equal(full[0], full[2])  # different seeds, different images


@pytest.mark.parametrize("sampler", ["ancestral", "confidence"])
def test_cli_grid_reproducible_across_num_and_batch(ckpt, tmp_path, capsys, sampler):
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["sample", "--checkpoint", str(ckpt), "--class", "random", "--steps", "3", "--cfg", "1",
            "--sampler", sampler, "--device", "cpu", "--seed", "5"]
    assert run_cli(base + ["--num", "5", "--batch-size", "2", "--out", str(tmp_path / "a.png"),
                           "--save-dir", str(a)], capsys)[0] == 0
    assert run_cli(base + ["--num", "3", "--batch-size", "3", "--out", str(tmp_path / "b.png"),
                           "--save-dir", str(b)], capsys)[0] == 0
    names_a, names_b = sorted(p.name for p in a.iterdir()), sorted(p.name for p in b.iterdir())
    assert len(names_a) == 5 and names_b == names_a[:3]  # same classes (from the seeds) and names
    for name in names_b:
        assert np.array_equal(np.asarray(Image.open(a / name)), np.asarray(Image.open(b / name)))
    assert "_seed5.png" in names_a[0] and names_a[0].startswith("0000_class")


def test_random_classes_follow_seed_and_lists_cycle():
    r1 = sampling.parse_classes("random", 6, 10, seed=3)
    r2 = sampling.parse_classes("random", 3, 10, seed=3)
    assert r1[:3] == r2 and all(0 <= c < 10 for c in r1)
    assert sampling.parse_classes("1,2", 5, 10) == [1, 2, 1, 2, 1]
    assert sampling.parse_classes("4", 2, 10) == [4, 4]


# --- outputs ----------------------------------------------------------------------------------


def test_cli_writes_grid_images_and_trajectory(ckpt, tmp_path, capsys):
    gif = tmp_path / "traj" / "t.gif"
    code, out, err = run_cli(["sample", "--checkpoint", str(ckpt), "--class", "2,7", "--steps", "5",
                              "--num", "4", "--cfg", "2", "--cfg-schedule", "linear", "--out",
                              str(tmp_path / "grid.png"), "--trajectory", str(gif), "--trajectory-samples", "3",
                              "--k", "0.3", "--no-ema", "--device", "cpu"], capsys)
    assert code == 0, err
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == (2 + 2 * (64 + 2),) * 2  # 4 digits upscaled x8 in a 2x2 grid
    with Image.open(gif) as g:
        assert g.n_frames == 5
    with Image.open(gif.with_suffix(".png")) as strip:
        assert strip.size[0] == 2 + 5 * (64 + 2)
    assert (gif.parent / "t_counts.png").is_file()
    assert "k 0.3 (trained k 0.1)" in out and "raw weights" in out


def test_decode_matches_pixel_tokenizer(ckpt):
    sm = sampling.load_for_sampling(ckpt)
    tokens = torch.randint(0, 17, (3, 8, 8))
    images = sampling.decode_tokens(sm, tokens, batch_size=2)
    assert images.shape == (3, 1, 8, 8)
    assert torch.allclose(images, tokens[:, None].float() / 8 - 1)


# --- bad inputs: one clean error line, exit 2, nothing written -------------------------------


def assert_clean_error(capsys, args, needle, tmp_path):
    out_png = tmp_path / "never.png"
    code, _, err = run_cli([*args, "--out", str(out_png)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err
    assert not out_png.exists()


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--class", "10"], "--class 10 is out of range: this checkpoint has 10 classes"),
        (["--class", "1,-1"], "--class -1 is out of range"),
        (["--class", "cat"], "--class must be a class id"),
        (["--steps", "0"], "--steps: must be within 1..10000"),
        (["--cfg", "-0.5"], "--cfg: must be a finite number in [0, 100]"),
        (["--cfg", "nan"], "--cfg: must be a finite number in [0, 100]"),
        (["--cfg", "1e308"], "--cfg: must be a finite number in [0, 100]"),
        (["--num", "0"], "--num: must be within 1..100000"),
        (["--k", "1.5"], "--k: must be a finite number in [0, 1]"),
        (["--class", "3,,4"], "--class '3,,4' has an empty item"),
        (["--seed", "99999999999999999999999"], "--seed: must be within 0..9223372036854775807"),
        (["--device", "meta"], "--device 'meta': only auto, cpu and cuda"),
        (["--device", "bogus"], "--device 'bogus' is not a device"),
        (["--trajectory", "x.mp4"], "--trajectory must name a .gif"),
    ],
)
def test_bad_arguments(ckpt, capsys, tmp_path, extra, needle):
    assert_clean_error(capsys, ["sample", "--checkpoint", str(ckpt), "--device", "cpu", *extra], needle, tmp_path)


def test_missing_checkpoint(capsys, tmp_path):
    assert_clean_error(capsys, ["sample", "--checkpoint", str(tmp_path / "nope")], "no such file or directory",
                       tmp_path)


def test_incomplete_checkpoint_dir(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_clean_error(capsys, ["sample", "--checkpoint", str(tmp_path / "empty")], "not a complete checkpoint",
                       tmp_path)


def test_corrupt_weights(ckpt, capsys, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    (bad / "ema.safetensors").write_bytes(b"\x00garbage" * 10)
    assert_clean_error(capsys, ["sample", "--checkpoint", str(bad)], "cannot load", tmp_path)


def test_corrupt_config(ckpt, capsys, tmp_path):
    bad = tmp_path / "badcfg"
    shutil.copytree(ckpt, bad)
    (bad / "config.json").write_text("{not json")
    assert_clean_error(capsys, ["sample", "--checkpoint", str(bad)], "cannot read config.json", tmp_path)


def test_weights_of_another_model(ckpt, capsys, tmp_path):
    other = write_tiny_checkpoint(tmp_path / "other", ["model.overrides={width: 64, heads: 2}"])
    mixed = tmp_path / "mixed"
    shutil.copytree(ckpt, mixed)
    shutil.copy(other / "ema.safetensors", mixed / "ema.safetensors")
    assert_clean_error(capsys, ["sample", "--checkpoint", str(mixed)], "cannot load", tmp_path)


def test_tokenizer_codebook_size_mismatch(tmp_path, capsys):
    """The checkpoint predicts 17 tokens; the tiny LlamaGen VQ has a 64-code codebook."""
    spec = {"kind": "llamagen", "size": None, "config": str(LLAMAGEN_TINY / "config.json"),
            "checkpoint": str(LLAMAGEN_TINY / "weights.safetensors"), "sha256": None}
    ck = write_tiny_checkpoint(tmp_path / "vq", tokenizer_spec=spec)
    assert_clean_error(capsys, ["sample", "--checkpoint", str(ck)], "tokenizer/codebook size mismatch", tmp_path)


def test_vq_checkpoint_without_tokenizer_weights(tmp_path, capsys):
    ck = write_tiny_checkpoint(tmp_path / "vq16", tokenizer_spec={"kind": "llamagen", "size": "VQ-16",
                                                                  "checkpoint": None})
    assert_clean_error(capsys, ["sample", "--checkpoint", str(ck)], "--tokenizer-checkpoint", tmp_path)
    assert_clean_error(capsys, ["sample", "--checkpoint", str(ck), "--tokenizer-checkpoint",
                                str(tmp_path / "missing.pt")], "no such file", tmp_path)


def test_no_ema_on_ema_only_directory(ckpt, tmp_path, capsys):
    slim = tmp_path / "slim"
    slim.mkdir()
    for f in ("ema.safetensors", "config.json"):
        shutil.copy(ckpt / f, slim / f)
    sm = sampling.load_for_sampling(slim)  # sampling-only directories load without train state
    assert sm.ema and sm.num_classes == 10
    assert_clean_error(capsys, ["sample", "--checkpoint", str(slim), "--no-ema"], "only supports --ema", tmp_path)


def test_help_states_cfg_convention(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "1 + gamma" in text and "LlamaGen" in text


def test_library_errors_are_user_errors(ckpt):
    sm = sampling.load_for_sampling(ckpt)
    with pytest.raises(UserError, match="unknown --sampler"):
        list(sampling.sampler_steps(sm, [0], [0], sampling.SamplingOptions(sampler="nope")))
    assert json.loads((ckpt / "config.json").read_text())["num_classes"] == 10
