"""``xdlm-vision edit`` and xdlm_vision.sampling.edit on the packaged digits model and a tiny VQ model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xdlm_vision import sampling
from xdlm_vision.cli import main
from xdlm_vision.core import sample_prior, seeded_generators
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.edit import (
    EditOptions,
    canvas_steps,
    edit_steps,
    model_image_size,
    prepare_edit,
    run_edit,
)
from xdlm_vision.sampling.edit_inputs import Outpaint, cells_from_pixels


@pytest.fixture(scope="module")
def lm():
    return sampling.load_for_sampling(None, device="cpu")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("edit")
    digits = load_digits()
    Image.fromarray((digits.images[3] / 16 * 255).astype(np.uint8)).save(d / "three.png")  # label 3
    bottom = np.zeros((8, 8), np.uint8)
    bottom[4:] = 255
    Image.fromarray(bottom).save(d / "bottom.png")
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(d / "full.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "empty.png")
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(d / "wrong_size.png")
    (d / "notes.txt").write_text("not an image")
    return {p.stem: p for p in d.iterdir()}


def _job(lm, files, mask="bottom", **kw):
    return prepare_edit(lm, Image.open(files["three"]), Image.open(files[mask]) if mask else None, **kw)


@pytest.mark.parametrize("sampler,k,cfg", [("ancestral", None, 0.0), ("ancestral", 1.0, 2.0),
                                           ("confidence", None, 1.0), ("confidence", 0.0, 0.0)])
def test_held_tokens_never_change(lm, files, sampler, k, cfg):
    model = lm if k is None else sampling.load_for_sampling(None, device="cpu", k=k)
    job = _job(model, files)
    assert int((~job.keep).sum()) == 32  # the bottom 4 of 8 rows
    opts = sampling.SamplingOptions(steps=4, cfg=cfg, sampler=sampler)
    for step in edit_steps(model, job, [3] * 5, range(5), opts, EditOptions()):
        assert torch.equal(step.z_s[:, job.keep.reshape(-1)], job.ids.reshape(1, -1).expand(5, -1)[:, job.keep.reshape(-1)])
    result = run_edit(model, job, [3] * 5, list(range(5)), opts, EditOptions())
    assert result.held_unchanged == 1.0 and result.num_held == 32
    assert (result.tokens < model.space.num_tokens).all()


@pytest.mark.parametrize("sampler", ["ancestral", "confidence"])
def test_whole_image_masked_equals_sample(lm, files, sampler):
    job = _job(lm, files, "full")
    opts = sampling.SamplingOptions(steps=4, cfg=1.0, sampler=sampler)
    labels, seeds = [1, 2, 3], [10, 11, 12]
    edited = run_edit(lm, job, labels, seeds, opts, EditOptions()).tokens
    assert torch.equal(edited, sampling.generate(lm, labels, seeds, opts))


def test_strength_zero_returns_the_input_and_one_starts_from_the_prior(lm, files):
    job = _job(lm, files)
    opts = sampling.SamplingOptions(steps=3)
    same = run_edit(lm, job, [3, 5], [0, 1], opts, EditOptions(strength=0.0)).tokens
    assert torch.equal(same, job.input_ids[None].expand(2, -1, -1))
    first = next(iter(edit_steps(lm, job, [3, 5], [0, 1], opts, EditOptions(strength=1.0))))
    prior = sample_prior((2, 64), lm.space, seeded_generators([0, 1]))
    free = ~job.keep.reshape(-1)
    assert torch.equal(first.z_t[:, free], prior[:, free])  # the region starts as the prior draw of its seed
    assert first.t == 1.0


def test_partial_strength_runs_from_t_and_keeps_held(lm, files):
    job = _job(lm, files, "full")
    steps = list(edit_steps(lm, job, [8] * 4, range(4), sampling.SamplingOptions(steps=4), EditOptions(strength=0.5)))
    assert steps[0].t == pytest.approx(0.5) and steps[-1].s == 0.0
    # at t = 0.5 about half of the input tokens survive re-noising
    kept = (steps[0].z_t == job.ids.reshape(1, -1)).float().mean()
    assert 0.35 < float(kept) < 0.75
    with pytest.raises(UserError, match="ancestral"):
        list(edit_steps(lm, job, [8], [0], sampling.SamplingOptions(steps=2, sampler="confidence"),
                        EditOptions(strength=0.5)))


def test_revise_border_moves_only_next_to_the_region(lm, files):
    job = _job(lm, files, revise_border=1)
    assert job.revise.any() and not (job.revise & ~job.keep).any()
    assert job.revise[3].all() and not job.revise[:3].any()  # the row above the region only
    res = run_edit(lm, job, [3] * 8, list(range(8)), sampling.SamplingOptions(steps=8), EditOptions(revise_border=1))
    assert res.held_unchanged == 1.0 and res.num_held == 24
    mdlm = sampling.load_for_sampling(None, device="cpu", k=0.0)
    with pytest.raises(UserError, match="k > 0"):
        _job(mdlm, files, revise_border=1)


def test_outpaint_extends_the_canvas(lm, files):
    job = _job(lm, files, None, outpaint=Outpaint.parse("right:3"))
    assert job.canvas_shape == (8, 11)
    res = run_edit(lm, job, [3, 3], [0, 1], sampling.SamplingOptions(steps=4), EditOptions())
    assert res.tokens.shape == (2, 8, 11)
    assert torch.equal(res.tokens[:, :, :8], job.input_ids[None].expand(2, -1, -1))
    steps = list(canvas_steps(job, edit_steps(lm, job, [3], [0], sampling.SamplingOptions(steps=2), EditOptions())))
    assert steps[-1].z_s.shape == (1, 88) and not steps[-1].created.reshape(1, 8, 11)[:, :, :8].any()
    for spec in ("up:2", "right", "right:x", "left:8", "top:0"):
        with pytest.raises(UserError, match="--outpaint"):
            Outpaint.parse(spec).check((8, 8))


def test_cells_from_pixels_vq_and_pixel_grids():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[5, 9] = True
    cells = cells_from_pixels(region, (4, 4))  # VQ, 4x4 pixels per cell
    assert cells.sum() == 1 and cells[1, 2]
    rgb = cells_from_pixels(region, (16, 48))  # pixel tokens, 3 channels side by side
    assert rgb.sum() == 3 and rgb[5, 27:30].all()
    with pytest.raises(UserError, match="does not divide"):
        cells_from_pixels(torch.zeros(10, 10, dtype=torch.bool), (4, 4))


def run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_sheet_and_trajectory(files, tmp_path, capsys):
    out, gif = tmp_path / "e.png", tmp_path / "t.gif"
    code, stdout, err = run_cli(["edit", "--image", str(files["three"]), "--mask", str(files["bottom"]), "--class", "3",
                                 "--cfg", "1", "--num", "3", "--steps", "4", "--out", str(out), "--trajectory", str(gif),
                                 "--device", "cpu"], capsys)
    assert code == 0, err
    assert "held tokens unchanged: 100.0% of 32" in stdout
    sheet = Image.open(out)
    assert sheet.width > 3 * sheet.height  # the input then three results in one row
    assert np.any(np.all(np.asarray(sheet.convert("RGB")) == (255, 150, 0), axis=-1))  # the region outline
    with Image.open(gif) as im:
        assert im.n_frames == 4
    assert (tmp_path / "t.png").is_file() and (tmp_path / "t_counts.png").is_file()


def test_cli_full_mask_is_plain_sampling_with_a_note(files, tmp_path, capsys):
    code, stdout, err = run_cli(["edit", "--image", str(files["three"]), "--mask", str(files["full"]), "--class", "3",
                                 "--num", "1", "--steps", "2", "--out", str(tmp_path / "f.png"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "note: the mask covers the whole image" in stdout


@pytest.mark.parametrize("extra,message", [
    (["--mask", "wrong_size"], "same size|of the image's size"),
    (["--mask", "empty"], "selects no token cell"),
    (["--mask", "notes"], "not a readable image"),
    (["--mask", "missing"], "no such file"),
    ([], "exactly one of --mask"),
    (["--mask", "bottom", "--outpaint", "right:2"], "exactly one of --mask"),
    (["--outpaint", "middle:2"], "--outpaint must look like"),
    (["--mask", "bottom", "--cfg", "1"], "--cfg needs --class"),
    (["--mask", "bottom", "--strength", "1.5"], "--strength"),
    (["--mask", "bottom", "--strength", "0.5", "--sampler", "confidence", "--class", "1"], "ancestral"),
    (["--mask", "bottom", "--revise-border", "1", "--k", "0"], "k > 0"),
    (["--mask", "bottom", "--class", "12"], "out of range"),
])
def test_cli_bad_inputs_give_one_error_line(files, tmp_path, capsys, extra, message):
    import re

    args = ["edit", "--image", str(files["three"]), "--num", "1", "--steps", "1", "--out", str(tmp_path / "x.png"),
            "--device", "cpu"]
    for i, a in enumerate(extra):
        args.append(str(files.get(a, tmp_path / "missing.png")) if extra[i - 1] == "--mask" and i > 0 else a)
    code, _, err = run_cli(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and re.search(message, lines[0]), err
    assert not (tmp_path / "x.png").exists()


def test_cli_non_image_input(files, tmp_path, capsys):
    code, _, err = run_cli(["edit", "--image", str(files["notes"]), "--mask", str(files["bottom"]), "--out",
                            str(tmp_path / "x.png")], capsys)
    assert code == 2 and "--image" in err and "not a readable image" in err


def test_vq_model_edit_holds_vq_tokens(tmp_path):
    """A tiny LlamaGen VQ model (2x2-pixel cells, a 16x16 grid of 64 codes): the mask maps to VQ cells,
    held codes stay exactly, and the decoded result has the input's size."""
    from test_sample_cli import LLAMAGEN_TINY

    from xdlm_vision.build import build_model
    from xdlm_vision.checkpoints import checkpoint_record, save_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.data.meta import DataMeta

    spec = {"kind": "llamagen", "size": None, "config": str(LLAMAGEN_TINY / "config.json"),
            "checkpoint": str(LLAMAGEN_TINY / "weights.safetensors"), "sha256": None}
    cfg = load_config("digits", ["model.size=DiT-tiny"])
    meta = DataMeta(num_tokens=64, grid_shape=(16, 16), num_classes=2, class_names=["a", "b"], tokenizer_spec=spec)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    ckpt = save_checkpoint(tmp_path / "vq", 1, model, model, checkpoint_record(cfg, meta, model), {"step": torch.tensor(1)})
    vq = sampling.load_for_sampling(ckpt, device="cpu")
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[5, 9] = 255  # one pixel -> one 2x2-pixel VQ cell
    job = prepare_edit(vq, Image.fromarray(rgb), Image.fromarray(mask))
    assert int((~job.keep).sum()) == 1 and not job.keep[2, 4]
    res = run_edit(vq, job, [0, 1], [0, 1], sampling.SamplingOptions(steps=2, cfg=1.0), EditOptions())
    assert res.held_unchanged == 1.0 and res.num_held == 255
    assert sampling.decode_tokens(vq, res.tokens).shape == (2, 3, 32, 32)
    # a 30x30 input and mask are fitted to the model's 32x32 together: the region stays one cell
    small = np.zeros((30, 30), np.uint8)
    small[0, 0] = 255
    assert int((~prepare_edit(vq, Image.fromarray(rgb[:30, :30]), Image.fromarray(small)).keep).sum()) == 1


def test_fit_and_mask_keep_thin_strokes_and_integer_upscales():
    from xdlm_vision.sampling.edit_inputs import image_tensor, mask_tensor

    small = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    big = Image.fromarray(small).resize((256, 256), Image.NEAREST)  # what the demo's editor shows
    back = image_tensor(big, 8, 8, 1)[0, 0]
    assert torch.equal(((back + 1) * 127.5).round().to(torch.uint8), torch.from_numpy(small))
    stroke = np.zeros((256, 256), np.uint8)
    stroke[100, 40:200] = 255  # a one-pixel brush line
    cells = mask_tensor(Image.fromarray(stroke), (256, 256), 8, 8)
    assert cells[3, 1:7].all() and cells.sum() == 6
    wide = np.zeros((100, 200), np.uint8)
    wide[:, :50] = 255  # outside the centre crop of a 2:1 image
    assert not mask_tensor(Image.fromarray(wide), (200, 100), 8, 8).any()


def test_edit_an_imported_official_model(tmp_path, capsys):
    """Official checkpoints (official process: N + 2 data states) edit like any image model."""
    ckpt = Path(__file__).parent / "data" / "xdlm_official_tiny" / "checkpoint.ckpt"
    imported = tmp_path / "official"
    assert main(["import-official", str(ckpt), "--out", str(imported)]) == 0
    lm = sampling.load_for_sampling(imported, device="cpu")
    _, height, width = model_image_size(lm)
    rgb = (np.random.default_rng(1).random((height, width, 3)) * 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 2:] = 255
    Image.fromarray(rgb).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    capsys.readouterr()
    code, out, err = run_cli(["edit", "--checkpoint", str(imported), "--image", str(tmp_path / "in.png"), "--mask",
                              str(tmp_path / "mask.png"), "--class", "1", "--cfg", "2", "--num", "2", "--steps", "3",
                              "--out", str(tmp_path / "e.png"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert "held tokens unchanged: 100.0%" in out
