"""``xdlm-vision sample --compare`` and xdlm_vision.sampling.compare; packaged:NAME short names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_sample_cli import run_cli, write_tiny_checkpoint
from test_viz_compare import _columns_of

from xdlm_vision import sampling
from xdlm_vision.checkpoints import PACKAGED, packaged_names, resolve_packaged
from xdlm_vision.errors import UserError


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two tiny checkpoints in run directories named run_a (k 0.1) and run_b (k 0)."""
    root = tmp_path_factory.mktemp("runs")
    write_tiny_checkpoint(root / "run_a")
    write_tiny_checkpoint(root / "run_b", ["diffusion.k=0"])
    return root / "run_a", root / "run_b"


def test_packaged_short_names():
    assert packaged_names()[0] == "digits"
    assert resolve_packaged("packaged:digits") == PACKAGED["digits"]
    assert resolve_packaged(None) == PACKAGED["digits"]
    assert resolve_packaged("some/dir") == "some/dir"
    with pytest.raises(UserError, match="--checkpoint packaged:nope: no such packaged checkpoint; choose one of"):
        resolve_packaged("packaged:nope")
    lm = sampling.load_for_sampling("packaged:digits", load_tokenizer=False)
    assert lm.path == PACKAGED["digits"] and lm.trained_k == pytest.approx(0.1)


def test_same_checkpoint_twice_gives_identical_columns(runs, tmp_path, capsys):
    run_a, _ = runs
    out, gif = tmp_path / "cmp.png", tmp_path / "cmp.gif"
    code, stdout, _ = run_cli(["sample", "--compare", str(run_a), str(run_a), "--class", "0,1,2,3", "--num", "4",
                               "--steps", "3", "--cfg", "1.0", "--out", str(out), "--trajectory", str(gif),
                               "--device", "cpu"], capsys)
    assert code == 0 and "compared 2 checkpoints (run_a, run_a)" in stdout
    img = Image.open(out)
    ranges = _columns_of(img)
    assert len(ranges) == 2
    arr = np.asarray(img.convert("RGB"))
    (a0, b0), (a1, b1) = ranges
    assert b0 - a0 == b1 - a1 and np.array_equal(arr[:, a0:b0], arr[:, a1:b1])  # titles too: same run
    with Image.open(gif) as im:
        assert im.n_frames == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.gif", "cmp.png"]


def test_different_checkpoints_share_seeds_and_get_their_titles(runs, tmp_path, capsys):
    run_a, run_b = runs
    models = sampling.load_compare_models([str(run_a), str(run_b)])
    assert [m.name for m in models] == ["run_a", "run_b"]
    assert [m.subtitle for m in models] == ["k 0.1, step 7, EMA", "k 0, step 7, EMA"]
    labels, seeds = [1, 2, 3], [5, 6, 7]
    opts = sampling.SamplingOptions(steps=3)
    tokens = sampling.sample_compare(models, labels, seeds, opts, batch_size=2)
    for m, t in zip(models, tokens):  # each column is exactly what `sample` draws for that model
        assert torch.equal(t, sampling.generate(m.lm, labels, seeds, opts))
    lockstep = list(sampling.compare_steps(models, labels, seeds, opts))
    assert len(lockstep) == 3 and all(len(s) == 2 for s in lockstep)
    assert torch.equal(lockstep[-1][1].z_s.reshape(3, 8, 8).cpu(), tokens[1])

    out = tmp_path / "ab.png"
    code, _, _ = run_cli(["sample", "--compare", str(run_a), str(run_b), "--num", "4", "--steps", "2",
                          "--no-ema", "--out", str(out)], capsys)
    assert code == 0 and len(_columns_of(Image.open(out))) == 2


@pytest.mark.parametrize(
    "extra,needle",
    [
        ([], "--compare needs two or more checkpoints, got 1"),
        (["{a}", "--checkpoint", "{a}"], "drop --checkpoint"),
        (["{a}", "--save-dir", "x"], "--save-dir is not supported with --compare"),
        (["{a}", "--trajectory", "t.png"], "--trajectory must name a .gif"),
        (["{a}", "--num", "65"], "--num (65) must be <= --batch-size (64)"),
        (["{a}", "--class", "12"], "--class 12 is out of range"),
        (["packaged:nope"], "packaged:nope: no such packaged checkpoint"),
    ],
)
def test_bad_compare_requests_exit_2_and_write_nothing(runs, tmp_path, capsys, extra, needle):
    run_a, _ = runs
    out = tmp_path / "never.png"
    args = ["sample", "--compare", str(run_a), *[e.format(a=run_a) for e in extra], "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and needle in err
    assert not out.exists()
