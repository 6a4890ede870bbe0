"""`train fashion` (tokenizer -> codes -> DiT), then sample / trajectory / eval on the result, at tiny size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fashion_fixture import TINY_VQ as VQ
from fashion_fixture import write_tiny_fashion
from PIL import Image

from xdlm_vision.cli import main
from xdlm_vision.config import load_config
from xdlm_vision.data.fashion import DEFAULT_DIR
from xdlm_vision.data.registry import data_meta
from xdlm_vision.errors import UserError


def tiny_overrides(data_dir: Path, steps: int = 2) -> list[str]:
    return [f"data.path={data_dir}", "tokenizer.codebook_size=16", "model.size=DiT-tiny", "model.overrides.depth=1",
            f"training.steps={steps}", "training.batch_size=8", "training.val_batch_size=10", "training.log_every=1",
            "training.val_every=0", "training.sample_every=0", "training.ckpt_every=1", "sampling.per_class=1",
            "training.tensorboard=false", "data.max_val_samples=10", "optim.warmup_steps=1"] + [
        f"tokenizer.train.{k}={v}" for k, v in VQ.items()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data_dir = write_tiny_fashion(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs") / "fashion"
    assert main(["train", "fashion", *tiny_overrides(data_dir), "--out", str(out), "--no-progress"]) == 0
    return out, data_dir


def test_three_stages_leave_tokenizer_codes_and_checkpoint(run_dir):
    out, _ = run_dir
    vq = out / "tokenizer"
    assert (vq / "tokenizer.safetensors").is_file() and (vq / "tokenizer.json").is_file()
    assert json.loads((vq / "tokenizer.json").read_text())["in_channels"] == 1
    codes = list(vq.glob("codes-*/train/manifest.json"))
    assert len(codes) == 1 and (codes[0].parent.parent / "test" / "manifest.json").is_file()
    cfg = json.loads((out / "checkpoints" / "step_0000002" / "config.json").read_text())
    assert cfg["class_names"][7] == "Sneaker" and cfg["num_tokens"] == 16 and cfg["grid_shape"] == [8, 8]
    assert cfg["tokenizer"]["kind"] == "llamagen" and cfg["tokenizer"]["checkpoint"] == str(
        (vq / "tokenizer.safetensors").resolve())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_bits_per_token" in m for m in metrics)  # validation NELBO on the test split
    assert list((out / "samples").glob("*.png"))  # sample grid decoded through the VQ


def test_resume_reuses_tokenizer_and_codes(run_dir, capsys):
    out, data_dir = run_dir
    weights = out / "tokenizer" / "tokenizer.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert main(["train", "fashion", *tiny_overrides(data_dir, steps=3), "--out", str(out), "--no-progress",
                 "--resume"]) == 0
    text = capsys.readouterr().out
    assert "stage 1/3" not in text and "tokenizer 0 s" in text
    assert weights.stat().st_mtime_ns == stamp
    assert (out / "checkpoints" / "step_0000003").is_dir()


def test_given_tokenizer_checkpoint_skips_stage_one(run_dir, tmp_path, capsys):
    out, data_dir = run_dir
    weights = out / "tokenizer" / "tokenizer.safetensors"
    assert main(["train", "fashion", *tiny_overrides(data_dir, steps=1), "--out", str(tmp_path / "b"),
                 "--no-progress", "--tokenizer-checkpoint", str(weights)]) == 0
    assert not (tmp_path / "b" / "tokenizer").exists()
    assert "stage 1/3" not in capsys.readouterr().out


def test_sample_by_class_name_with_trajectory(run_dir, tmp_path, capsys):
    out, _ = run_dir
    gif = tmp_path / "traj.gif"
    assert main(["sample", "--checkpoint", str(out), "--class", "Sneaker,Ankle boot", "--num", "2", "--steps", "3",
                 "--cfg", "1", "--out", str(tmp_path / "grid.png"), "--save-dir", str(tmp_path / "each"),
                 "--trajectory", str(gif), "--trajectory-samples", "2", "--device", "cpu"]) == 0
    names = sorted(p.name for p in (tmp_path / "each").iterdir())
    assert names == ["0000_class7_Sneaker_seed0.png", "0001_class9_Ankle_boot_seed1.png"]
    with Image.open(gif) as im:
        assert im.n_frames >= 3
    assert main(["sample", "--checkpoint", str(out), "--class", "Hat", "--num", "1", "--out",
                 str(tmp_path / "x.png")]) == 2
    assert "names no class" in capsys.readouterr().err


def package_script():
    """scripts/package_checkpoint.py as a module (scripts/ is not a package)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "package_checkpoint.py"
    spec = importlib.util.spec_from_file_location("package_checkpoint", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packaged_copy_carries_its_tokenizer_and_samples_anywhere(run_dir, tmp_path):
    """scripts/package_checkpoint.py: fp16 EMA + the VQ weights beside config.json, recorded by a
    relative path, so the folder samples the same images after the run (and its tokenizer) are gone."""
    import shutil

    from xdlm_vision import sampling

    out, _ = run_dir
    pc = package_script()
    packaged = tmp_path / "pkg"
    assert pc.main([str(out), "--out", str(packaged), "--fp16"]) == 0
    record = json.loads((packaged / "config.json").read_text())
    assert record["tokenizer"]["checkpoint"] == "tokenizer.safetensors"
    assert record["config"]["tokenizer"]["path"] == "tokenizer.safetensors"  # no path of the training machine
    assert sorted(p.name for p in packaged.iterdir()) == ["config.json", "ema.safetensors", "tokenizer.json",
                                                          "tokenizer.safetensors"]
    moved = tmp_path / "elsewhere" / "fashion"
    shutil.copytree(packaged, moved)
    shutil.rmtree(packaged)
    opts = sampling.SamplingOptions(steps=3, cfg=1.0)
    a = sampling.load_for_sampling(out, device="cpu")
    b = sampling.load_for_sampling(moved, device="cpu")
    assert b.tokenizer_spec["checkpoint"] == str((moved / "tokenizer.safetensors").resolve())
    assert b.config.tokenizer.path == str((moved / "tokenizer.safetensors").resolve())
    assert next(b.model.parameters()).dtype == torch.float32  # fp16 on disk, float32 in memory
    ta = sampling.generate(a, [7, 9], sampling.sample_seeds(0, 2), opts)
    tb = sampling.generate(b, [7, 9], sampling.sample_seeds(0, 2), opts)
    assert (ta == tb).float().mean() > 0.9  # fp16 rounding of the weights may flip a rare draw
    assert b.tokenizer.decode(tb).shape == (2, 1, 32, 32)


def test_packaged_twin_refers_to_its_siblings_tokenizer(run_dir, tmp_path):
    """--tokenizer-from: a twin over the same tokenizer records the sibling's copy by a relative path
    (no second copy), still loads after both folders move together, and a foreign tokenizer is refused."""
    import shutil

    from safetensors.torch import load_file, save_file

    from xdlm_vision import sampling

    out, _ = run_dir
    pc = package_script()
    assets = tmp_path / "assets"
    assert pc.main([str(out), "--out", str(assets / "fashion"), "--fp16"]) == 0
    assert pc.main([str(out), "--out", str(assets / "fashion_mdlm"), "--fp16", "--tokenizer-from",
                    str(assets / "fashion")]) == 0
    twin = assets / "fashion_mdlm"
    assert sorted(p.name for p in twin.iterdir()) == ["config.json", "ema.safetensors"]
    record = json.loads((twin / "config.json").read_text())
    assert record["tokenizer"]["checkpoint"] == "../fashion/tokenizer.safetensors"
    assert record["config"]["tokenizer"]["path"] == "../fashion/tokenizer.safetensors"
    moved = tmp_path / "site-packages" / "assets"
    shutil.copytree(assets, moved)
    shutil.rmtree(assets)
    sm = sampling.load_for_sampling(moved / "fashion_mdlm", device="cpu")
    assert sm.tokenizer_spec["checkpoint"] == str((moved / "fashion" / "tokenizer.safetensors").resolve())
    tokens = sampling.generate(sm, [1], sampling.sample_seeds(0, 1), sampling.SamplingOptions(steps=2))
    assert sm.tokenizer.decode(tokens).shape == (1, 1, 32, 32)
    other = tmp_path / "other"
    other.mkdir()
    weights = load_file(str(moved / "fashion" / "tokenizer.safetensors"))
    name = min(weights)
    weights[name] = weights[name] + 1
    save_file(weights, str(other / "tokenizer.safetensors"))
    with pytest.raises(SystemExit, match="not the one"):
        pc.main([str(out), "--out", str(tmp_path / "bad"), "--tokenizer-from", str(other)])
    with pytest.raises(SystemExit, match="no tokenizer.safetensors"):
        pc.main([str(out), "--out", str(tmp_path / "bad2"), "--tokenizer-from", str(tmp_path)])
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad2").exists()  # nothing half-written


def test_trajectory_frames_paint_masked_cells_grey(run_dir):
    from xdlm_vision import sampling
    from xdlm_vision.viz.render import decode_state

    out, _ = run_dir
    sm = sampling.load_for_sampling(out, device="cpu")
    tokens = torch.zeros(1, 8, 8, dtype=torch.long)
    tokens[0, :4] = sm.mask_id  # top half masked
    img = decode_state(tokens, sampling.decoder(sm.tokenizer), sm.mask_id)
    assert img.shape == (1, 1, 32, 32)
    assert torch.all(img[0, 0, :16] == 0.0)  # grey = 0 in [-1, 1]


def test_eval_fashion_reports_agreement_fid_and_floors(run_dir, tmp_path, capsys):
    from xdlm_vision.evaluation.fashion_classifier import default_asset_path

    if not default_asset_path().is_file():
        pytest.fail("the packaged fashion classifier is missing; run scripts/train_fashion_classifier.py")
    out, data_dir = run_dir
    assert main(["eval", "fashion", "--checkpoint", str(out), "--num", "20", "--steps", "2", "--data-dir",
                 str(data_dir), "--floors", "--no-progress", "--device", "cpu", "--grid", str(tmp_path / "g.png"),
                 "--out", str(tmp_path / "ev")]) == 0
    payload = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    m = payload["metrics"]
    assert 0 <= m["agreement"] <= 1 and m["fashion_fid"] >= 0
    assert set(m["per_class_agreement"]) >= {"Sneaker", "Bag"}
    assert {"real_train_agreement", "recon_fashion_fid"} <= set(m["floors"])
    assert (tmp_path / "g.png").is_file()
    assert "Fashion-FID" in capsys.readouterr().out


def test_eval_fashion_refuses_a_digits_checkpoint(capsys):
    from xdlm_vision.sampling import packaged_checkpoint

    assert main(["eval", "fashion", "--checkpoint", str(packaged_checkpoint()), "--num", "4"]) == 2
    assert "not a fashion checkpoint" in capsys.readouterr().err


def test_preset_meta_without_data_and_clear_errors(tmp_path):
    cfg = load_config("fashion")
    meta = data_meta(cfg)
    assert meta.num_tokens == 512 and meta.grid_shape == (8, 8) and meta.class_names[9] == "Ankle boot"
    from xdlm_vision.data.registry import build_data

    with pytest.raises(UserError, match="tokenizer.path"):
        build_data(cfg)
    with pytest.raises(UserError, match="no VQ weights"):
        data_meta(load_config("fashion", [f"tokenizer.path={tmp_path}"]))


def test_missing_data_is_one_line(tmp_path, capsys):
    assert main(["train", "fashion", f"data.path={tmp_path / 'nothing'}", "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err
    assert not (tmp_path / "r" / "tokenizer" / "tokenizer.safetensors").exists()


def test_train_tokenizer_command_and_report_only(tmp_path, capsys):
    data_dir = write_tiny_fashion(tmp_path / "d")
    args = ["train-tokenizer", "fashion", "codebook_size=16", *[f"{k}={v}" for k, v in VQ.items()],
            "--out", str(tmp_path / "vq"), "--data-dir", str(data_dir), "--no-progress"]
    assert main(args) == 0
    report = json.loads((tmp_path / "vq" / "report.json").read_text())
    assert report["num_images"] == 20 and 0 < report["codes_used"] <= 16 and "psnr_db" in report
    assert report["train"]["steps"] == 4
    assert main(["train-tokenizer", "fashion", "--out", str(tmp_path / "vq"), "--data-dir", str(data_dir),
                 "--report-only", "--max-eval-images", "10"]) == 0
    assert json.loads((tmp_path / "vq" / "report.json").read_text())["num_images"] == 10
    capsys.readouterr()
    assert main(["train-tokenizer", "fashion", "stepz=3", "--out", str(tmp_path / "x")]) == 2
    assert "stepz" in capsys.readouterr().err
    assert main(["train-tokenizer", "fashion", "steps=abc", "--out", str(tmp_path / "x")]) == 2
    assert "expects int" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason=f"Fashion-MNIST not installed at {DEFAULT_DIR} "
                    "(apt-get install dataset-fashion-mnist)")
def test_packaged_fashion_classifier_accuracy_on_the_real_test_split():
    from xdlm_vision.data.fashion import load_fashion_split, to_signed_padded
    from xdlm_vision.evaluation.fashion_classifier import classify_fashion, default_asset_path

    test = load_fashion_split("test")
    acc = float((classify_fashion(to_signed_padded(test.images)).labels == test.labels).double().mean())
    recorded = json.loads(default_asset_path().with_suffix(".json").read_text())
    assert acc >= 0.89
    assert recorded["test_accuracy"] == pytest.approx(acc, abs=1e-4)  # the JSON tells the truth


@pytest.mark.parametrize("name", ["fashion", "fashion-mdlm"])
def test_packaged_fashion_model_draws_the_requested_garments(name, capsys):
    """packaged:fashion (fp16 DiT + its VQ tokenizer, <= 12 MB together) and its MDLM twin (which
    decodes through the same tokenizer file) work out of the box, by class name."""
    from xdlm_vision import sampling
    from xdlm_vision.checkpoints.packaged import packaged_path
    from xdlm_vision.evaluation.fashion_classifier import classify_fashion

    folder = packaged_path(name)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 12e6
    lm = sampling.load_for_sampling(f"packaged:{name}", device="cpu")
    assert Path(lm.tokenizer_spec["checkpoint"]) == (packaged_path("fashion") / "tokenizer.safetensors").resolve()
    labels = [i % 10 for i in range(20)]
    tokens = sampling.generate(lm, labels, sampling.sample_seeds(0, 20), sampling.SamplingOptions(steps=8, cfg=1.0))
    agreement = float((classify_fashion(lm.tokenizer.decode(tokens)).labels == torch.tensor(labels)).double().mean())
    assert agreement >= 0.8  # 95.2 % (fashion) on 1,000 samples (docs/fashion.md, docs/k_tradeoff.md)
    assert main(["sample", "--checkpoint", f"packaged:{name}", "--class", "Sneaker", "--num", "1", "--steps", "2",
                 "--out", "/dev/null/x.png"]) == 2  # a bad --out is refused before any sampling
    assert "error:" in capsys.readouterr().err


def test_demo_sampler_streams_a_fashion_checkpoint(run_dir):
    from xdlm_vision.demo.app import DemoSampler

    out, _ = run_dir
    demo = DemoSampler.from_checkpoint(out, device="cpu")
    assert demo.class_choices[7] == ("7: Sneaker", 7)
    frames = list(demo.stream(label=7, cfg=1.0, steps=3, sampler="ancestral", seed=0, num_images=2))
    assert len(frames) == 3 and frames[-1].final is not None and frames[0].final is None
    assert frames[-1].final.size[0] >= 64  # 32x32 images, upscaled and tiled


def test_edit_a_fashion_model_by_class_name(run_dir, tmp_path, capsys):
    """`xdlm-vision edit` on the one-channel fashion VQ model: the mask maps to 4x4-pixel VQ cells,
    held codes stay exactly, and --class takes a garment name."""
    import numpy as np

    from xdlm_vision import sampling
    from xdlm_vision.data.fashion import load_fashion_split
    from xdlm_vision.sampling.edit import EditOptions, prepare_edit, run_edit

    out, data_dir = run_dir
    image = tmp_path / "garment.png"
    Image.fromarray(load_fashion_split("test", data_dir).images[0].numpy()).save(image)  # 28x28 grey
    mask = np.zeros((28, 28), np.uint8)
    mask[:, 14:] = 255  # right half
    Image.fromarray(mask).save(tmp_path / "mask.png")
    lm = sampling.load_for_sampling(out, device="cpu")
    job = prepare_edit(lm, Image.open(image), Image.open(tmp_path / "mask.png"))
    assert job.keep.shape == (8, 8) and 0 < int((~job.keep).sum()) < 64
    result = run_edit(lm, job, [7, 9], [0, 1], sampling.SamplingOptions(steps=2, cfg=1.0), EditOptions())
    assert result.held_unchanged == 1.0 and result.num_held == int(job.keep.sum())
    assert sampling.decode_tokens(lm, result.tokens).shape == (2, 1, 32, 32)
    sheet = tmp_path / "edit.png"
    assert main(["edit", "--checkpoint", str(out), "--image", str(image), "--mask", str(tmp_path / "mask.png"),
                 "--class", "Sneaker", "--cfg", "1", "--num", "2", "--steps", "2", "--out", str(sheet),
                 "--device", "cpu"]) == 0
    assert "held tokens unchanged: 100.0%" in capsys.readouterr().out
    assert Image.open(sheet).width > 2 * Image.open(sheet).height  # the input then two results in one row


def test_compare_two_fashion_models_by_class_name(run_dir, tmp_path):
    """`sample --compare` takes a class name when every compared model has the same class names."""
    from xdlm_vision.sampling import compare_class_names, load_compare_models

    out, _ = run_dir
    step = str(min((out / "checkpoints").glob("step_*")))
    models = load_compare_models([str(out), step], device="cpu")
    assert compare_class_names(models)[7] == "Sneaker"
    assert main(["sample", "--compare", str(out), step, "--class", "Sneaker",
                 "--num", "2", "--steps", "2", "--out", str(tmp_path / "cmp.png"), "--device", "cpu"]) == 0
    assert (tmp_path / "cmp.png").is_file()
