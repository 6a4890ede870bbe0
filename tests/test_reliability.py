"""Regression tests of issue 14: nothing lost and no traceback on bad input, full disk or an
interrupted write. One test (or more) per numbered item of the issue; the table-driven sweep of
every flag and checkpoint file is tests/test_hostile_inputs.py."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch

from xdlm_vision import cli
from xdlm_vision import io as xio
from xdlm_vision.checkpoints import PACKAGED_CHECKPOINT, latest_checkpoint, list_checkpoints
from xdlm_vision.config import load_config
from xdlm_vision.errors import UserError
from xdlm_vision.training.trainer import read_metrics

PKG = str(PACKAGED_CHECKPOINT)
TINY = ["training.batch_size=8", "training.ckpt_every=1", "training.keep_checkpoints=0", "data.max_val_samples=8",
        "training.val_batch_size=8", "sampling.per_class=1", "training.log_every=1", "training.tensorboard=false",
        "optim.warmup_steps=0"]


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_error(code: int, err: str, needle: str = "") -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]  # minus progress bars
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert needle in lines[0], lines[0]
    return lines[0]


def hidden(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.startswith((".tmp", ".old_")) or p.name.endswith(".tmp")]


def train(out: Path, steps: int, *extra, resume: bool = False) -> tuple[int, str, str]:
    return run_cli("train", "digits", f"training.steps={steps}", *TINY, *extra, "--out", out, "--no-progress",
                   *(["--resume"] if resume else []))


@pytest.fixture(scope="module")
def run2(tmp_path_factory) -> Path:
    """A finished 2-step digits run (checkpoints at steps 1 and 2)."""
    out = tmp_path_factory.mktemp("rel") / "run"
    code, _, err = train(out, 2)
    assert code == 0, err
    return out


# 1 -------------------------------------------------------------------------------------------


def test_1_bad_sampling_classes_refused_before_training(tmp_path):
    code, _, err = train(tmp_path / "out1", 2, "sampling.classes=[10]")
    one_error(code, err, "sampling.classes: 10 is not a class of digits")
    assert not (tmp_path / "out1").exists()
    one_error(*run_cli("train", "digits", "sampling.cfg=1e308", "--dry-run")[::2], "sampling.cfg")


@pytest.mark.slow
def test_1_checkpoint_is_saved_before_the_end_of_run_grid(tmp_path, monkeypatch):
    from xdlm_vision.training import trainer

    def broken_preview(*args, **kwargs):
        raise RuntimeError("preview failed")

    monkeypatch.setattr(trainer, "save_preview", broken_preview)
    with pytest.raises(RuntimeError, match="preview failed"):
        trainer.train(load_config("digits", ["training.steps=2", *TINY]), tmp_path / "r", progress=False)
    assert latest_checkpoint(tmp_path / "r").name == "step_0000002"  # saved before the end-of-run grid


# 2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,flag", [
    (["sample", "--num", "1", "--steps", "1", "--out", "{dir}"], "--out"),
    (["sample", "--num", "1", "--steps", "1", "--out", ""], "--out"),
    (["sample", "--num", "1", "--steps", "1", "--save-dir", "{file}"], "--save-dir"),
    (["sample", "--num", "1", "--steps", "1", "--trajectory", "{dir}"], "--trajectory"),
    (["train", "digits", "--out", "{file}"], "--out"),
    (["eval", "digits", "--checkpoint", PKG, "--out", "{file}"], "--out"),
    (["eval", "nelbo", "--checkpoint", PKG, "--out", "{file}"], "--out"),
    (["sample-text", "--checkpoint", "x", "--trajectory-html", "{dir}"], "--trajectory-html"),
    (["extract-codes", "--images", "x", "--tokenizer-checkpoint", "x", "--out", "{file}/sub"], "--out"),
])
def test_2_output_paths_are_checked_before_any_work(argv, flag, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d.html").mkdir()
    (tmp_path / "f").write_text("x")
    argv = [a.replace("{dir}", str(tmp_path / "d.html")).replace("{file}", str(tmp_path / "f")) for a in argv]
    one_error(*run_cli(*argv)[::2], flag)
    assert hidden(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["d.html", "f"]


# 3 -------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root with mount permission only)."""
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)], check=False,
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission); "
                    "the monkeypatched ENOSPC tests below still run")
    yield d
    subprocess.run(["umount", str(d)], check=False, capture_output=True)


@pytest.mark.slow
def test_3_full_disk_during_training_is_one_line_and_leaves_no_temporaries(small_disk):
    out = small_disk / "run"
    # DiT-digits checkpoints are ~1 MB each (model + EMA): the disk fills at the second or third
    code, _, err = train(out, 6, "training.keep_checkpoints=0")
    one_error(code, err, "No space left on device")
    assert hidden(small_disk) == []
    text = (out / "metrics.jsonl").read_text()
    assert text == "" or text.endswith("\n")
    for ckpt in list_checkpoints(out):  # whatever was saved is complete and loadable
        code, _, err = run_cli("sample", "--checkpoint", ckpt, "--num", "1", "--steps", "1",
                               "--out", small_disk.parent / "g.png")
        assert code == 0, err


def test_3_full_disk_on_a_sample_grid(small_disk):
    (small_disk / "filler").write_bytes(b"\0" * (3 * 1024 * 1024 - 8192))
    with contextlib.suppress(OSError), open(small_disk / "filler2", "wb") as f:
        f.write(b"\0" * 1024 * 1024)
    code, _, err = run_cli("sample", "--num", "64", "--steps", "1", "--out", small_disk / "g.png")
    assert code == 2 or code == 0
    if code == 2:
        one_error(code, err, "cannot write")
        assert not (small_disk / "g.png").exists()
    assert hidden(small_disk) == []


def test_3_enospc_in_the_middle_of_a_checkpoint_cleans_up(tmp_path, monkeypatch):
    """Portable variant: the write layer raises ENOSPC at the train-state file."""
    from xdlm_vision.checkpoints import files

    real = files.write_bytes_atomic

    def failing(path, data):
        if Path(path).name == "train_state.pt":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(files, "write_bytes_atomic", failing)
    code, _, err = train(tmp_path / "run", 1)
    one_error(code, err, "No space left on device")
    assert hidden(tmp_path) == [] and list_checkpoints(tmp_path / "run") == []


def test_3_metrics_lines_are_atomic_and_a_broken_last_line_is_repaired(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    xio.append_line(path, json.dumps({"step": 1}))
    real_write = os.write

    def short_write(fd, data):  # the disk fills half-way through the line
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(OSError):
        xio.append_line(path, json.dumps({"step": 2, "loss": 1.0}))
    monkeypatch.undo()
    assert path.read_text() == '{"step": 1}\n'
    # a crash (no exception handler ran) leaves half a line: readers ignore it, the next run cuts it
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    assert read_metrics(tmp_path) == [{"step": 1}]
    from xdlm_vision.training.metrics import MetricsLogger

    MetricsLogger(tmp_path, tensorboard=False).log({"step": 3})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 3]


def test_12_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    from xdlm_vision.training.metrics import MetricsLogger

    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 6)))
    MetricsLogger(tmp_path, tensorboard=False, after_step=3).log({"step": 4, "loss": 0.5})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]


# 4 -------------------------------------------------------------------------------------------


def test_4_run_json_of_a_run_without_shards_never_locks_the_folder(tmp_path):
    from xdlm_vision.evaluation.sample_shards import check_run_setup

    out = tmp_path / "fid"
    out.mkdir()
    check_run_setup(out, {"sampler": "ancestrl"})  # a typo that stopped before the first shard
    check_run_setup(out, {"sampler": "ancestral"})  # the corrected rerun is accepted
    assert json.loads((out / "run.json").read_text()) == {"sampler": "ancestral"}
    (out / "run.json").write_text("{corrupt")
    check_run_setup(out, {"sampler": "ancestral"})
    (out / "shards").mkdir()
    (out / "shards" / "shard_00000.npz").write_bytes(b"x")
    with pytest.raises(UserError, match="different setup"):
        check_run_setup(out, {"sampler": "confidence"})
    (out / "run.json").write_text("{corrupt")
    with pytest.raises(UserError, match="run.json is unreadable"):
        check_run_setup(out, {"sampler": "ancestral"})


def test_4_bad_sampler_or_seed_writes_nothing(tmp_path):
    out = tmp_path / "fid"
    for bad in (["--sampler", "ancestrl"], ["--seed", "99999999999999999999999"]):
        code, _, err = run_cli("eval", "fid", "--checkpoint", PKG, "--num", "2", "--sample-only", "--inception-weights",
                               "x", "--reference", "x", "--out", out, *bad)
        one_error(code, err, bad[0])
        assert not out.exists()


# 5 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["sample"], ["sample-text", "--checkpoint", "x"],
                                     ["eval", "digits", "--checkpoint", PKG], ["eval", "fid", "--checkpoint", PKG]])
def test_5_seeds_outside_64_bits(command):
    one_error(*run_cli(*command, "--seed", "99999999999999999999999")[::2], "--seed: must be within 0..")
    one_error(*run_cli(*command, "--seed", "-1")[::2], "--seed")


def test_5_seed_plus_num_must_stay_in_range(tmp_path):
    one_error(*run_cli("sample", "--seed", str(2**63 - 1), "--num", "2", "--out", tmp_path / "g.png")[::2],
              "passes the largest seed")


# 6, 7 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("override,needle", [
    ("optim.eps=-1", "optim.eps must be in (0, 1]"),
    ("optim.weight_decay=-1", "optim.weight_decay must be in [0, 10]"),
    ("optim.lr=.nan", "optim.lr must be a finite number"),
    ("optim.lr=.inf", "optim.lr must be a finite number"),
    ("optim.lr=1e6", "optim.lr must be in (0, 10]"),
    ("data.max_val_samples=0", "data.max_val_samples must be >= 1"),
    ("data.max_val_samples=-5", "data.max_val_samples must be >= 1"),
    ("sampling.cfg=.nan", "sampling.cfg must be a finite number"),
    ("model.overrides.width=-4", "model.overrides.width must be a finite number > 0"),
    ("training.mixed_precision=fp16", "fp16 needs a CUDA GPU"),
])
def test_6_7_run_config_is_validated_up_front(override, needle, tmp_path):
    if "fp16" in override and torch.cuda.is_available():
        pytest.skip("fp16 is valid on this CUDA machine")
    code, _, err = train(tmp_path / "r", 1, override)
    one_error(code, err, needle)
    assert not list_checkpoints(tmp_path / "r")


# 8 -------------------------------------------------------------------------------------------


def test_8_resume_below_the_checkpoint_step_is_an_error(run2, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(run2, out)
    one_error(*train(out, 1, resume=True)[::2], "training.steps=1 is below the checkpoint's step 2")


@pytest.mark.slow
def test_8_files_from_another_run_or_step_are_refused(run2, tmp_path):
    other = tmp_path / "other"
    assert train(other, 1, "training.seed=7")[0] == 0
    out = tmp_path / "r"
    shutil.copytree(run2, out)
    newest = out / "checkpoints" / "step_0000002"
    shutil.copy(other / "checkpoints" / "step_0000001" / "config.json", newest / "config.json")
    one_error(*run_cli("sample", "--checkpoint", newest, "--num", "1", "--out", tmp_path / "g.png")[::2],
              "config.json says step 1 but the directory is step_0000002")
    shutil.copy(run2 / "checkpoints" / "step_0000002" / "config.json", newest / "config.json")
    # a train_state.pt of another run: resume skips that checkpoint and says so
    shutil.copy(other / "checkpoints" / "step_0000001" / "train_state.pt", newest / "train_state.pt")
    code, out_text, err = train(out, 3, resume=True)
    assert code == 0, err
    assert "note: the newest checkpoint step_0000002 is unreadable" in out_text
    assert "train_state.pt is from step 1" in out_text and "resuming from step_0000001" in out_text
    # the metrics of the steps after the checkpoint resumed from are not repeated
    steps = [r["step"] for r in read_metrics(out) if "loss" in r]
    assert steps == [1, 2, 3]


# 9 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,needle", [
    ("step", "abc", "config.json has step 'abc'"),
    ("grid_shape", "8x8", "malformed entry"),
])
def test_9_malformed_config_json(key, value, needle, tmp_path):
    ckpt = tmp_path / "ck"
    shutil.copytree(PKG, ckpt)
    record = json.loads((ckpt / "config.json").read_text())
    if key == "grid_shape":
        record["data"]["grid_shape"] = value
    else:
        record[key] = value
    (ckpt / "config.json").write_text(json.dumps(record))
    one_error(*run_cli("sample", "--checkpoint", ckpt, "--num", "1", "--out", tmp_path / "g.png")[::2], needle)


def test_9_binary_yaml_and_unlistenable_demo(tmp_path):
    (tmp_path / "c.yaml").write_bytes(bytes(range(256)) * 4)
    one_error(*run_cli("train", tmp_path / "c.yaml", "--dry-run")[::2], "not UTF-8")
    one_error(*run_cli("demo", "--host", "999.999.1.1")[::2], "--host '999.999.1.1'")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        one_error(*run_cli("demo", "--port", port)[::2], f"cannot listen on --host 127.0.0.1 --port {port}")


def test_9_devices(tmp_path):
    one_error(*run_cli("sample-text", "--checkpoint", "x", "--device", "bogus")[::2], "--device 'bogus'")
    one_error(*run_cli("sample", "--device", "meta", "--out", tmp_path / "g.png")[::2], "--device 'meta'")
    if not torch.cuda.is_available():
        one_error(*run_cli("sample-text", "--checkpoint", "x", "--device", "cuda")[::2], "CUDA is not available")


def test_9_corrupt_image_in_extract_codes_names_the_file(tmp_path):
    from PIL import Image
    from safetensors.torch import load_file

    tiny = Path(__file__).parent / "data" / "llamagen_tiny"
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(tmp_path / "images" / name / "ok.png")
    (tmp_path / "images" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    torch.save({"model": load_file(str(tiny / "weights.safetensors"))}, tmp_path / "vq.pt")
    for workers in ("0", "1"):
        code, _, err = run_cli("extract-codes", "--images", tmp_path / "images", "--tokenizer-checkpoint",
                               tmp_path / "vq.pt", "--tokenizer", tiny / "config.json", "--image-size", "16",
                               "--out", tmp_path / f"codes{workers}", "--num-workers", workers)
        one_error(code, err, "cannot read image")
        assert "broken.png" in err
    (tmp_path / "bad.json").write_text("{not json")
    one_error(*run_cli("extract-codes", "--images", tmp_path / "images", "--tokenizer-checkpoint", tmp_path / "vq.pt",
                       "--tokenizer", tmp_path / "bad.json", "--out", tmp_path / "c2")[::2], "--tokenizer")


# 10 ------------------------------------------------------------------------------------------


def test_10_stale_temporaries_are_removed_and_never_loaded(run2, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(run2, out)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = out / "checkpoints" / f".tmp_step_0000009_{dead}"
    shutil.copytree(out / "checkpoints" / "step_0000002", stale)
    (out / "samples").mkdir(exist_ok=True)
    old_tmp = out / "samples" / ".step_0000001.png.k3j_9x2a.tmp"  # as atomic_path names it
    old_tmp.write_bytes(b"x")
    os.utime(old_tmp, (0, 0))
    assert latest_checkpoint(out).name == "step_0000002"  # never loaded
    assert train(out, 3, resume=True)[0] == 0
    assert not stale.exists() and not old_tmp.exists()
    assert xio.clean_stale_temps(tmp_path) == []


# 11 ------------------------------------------------------------------------------------------


def test_11_text_checkpoint_on_sample_and_unsafe_advice(tmp_path):
    ckpt = tmp_path / "ck"
    shutil.copytree(PKG, ckpt)
    record = json.loads((ckpt / "config.json").read_text())
    record["tokenizer"] = {"kind": "text", "tokenizer": "byte"}
    (ckpt / "config.json").write_text(json.dumps(record))
    one_error(*run_cli("sample", "--checkpoint", ckpt, "--num", "1", "--out", tmp_path / "g.png")[::2],
              "this is a text model")
    assert cli.one_line("Weights only load failed.\nRe-running with `weights_only=False` will work.\nbad") \
        == "Weights only load failed. bad"


def test_11_pickled_train_state_is_refused_without_unsafe_advice(run2, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(run2, out)
    for step in ("step_0000001", "step_0000002"):
        torch.save({"step": 2, "obj": Path("x")}, out / "checkpoints" / step / "train_state.pt")
    code, _, err = train(out, 3, resume=True)
    line = one_error(code, err, "train_state.pt")
    assert "weights_only" not in line and "unsafe" not in line


def test_11_argparse_errors_are_one_line():
    for argv in (["sample", "--bogus"], ["eval"], ["train"], ["nonsense"], ["sample", "--sampler", "x"]):
        one_error(*run_cli(*argv)[::2])
    # digits-FID needs two samples: refused while parsing, naming --num (not after sampling)
    one_error(*run_cli("eval", "digits", "--checkpoint", PKG, "--num", "1")[::2], "--num: must be within 2..")


# 12 ------------------------------------------------------------------------------------------


def test_12_ignored_flags_become_errors(tmp_path):
    one_error(*run_cli("eval", "nelbo", "--checkpoint", PKG, "--data-path", tmp_path)[::2], "--data-path is for text")
    (tmp_path / "vq.pt").write_bytes(b"x")
    one_error(*run_cli("sample", "--tokenizer-checkpoint", tmp_path / "vq.pt", "--out", tmp_path / "g.png")[::2],
              "--tokenizer-checkpoint: this checkpoint decodes with the pixel tokenizer")
    one_error(*run_cli("sample", "--class", "3,,4", "--out", tmp_path / "g.png")[::2], "empty item")
    one_error(*run_cli("sample", "--trajectory-samples", "4", "--out", tmp_path / "g.png")[::2],
              "--trajectory-samples needs --trajectory")
    one_error(*run_cli("eval", "fid", "--checkpoint", PKG, "--inception-weights", "x", "--reference", "x",
                       "--sample-only", "--precision-recall", "--out", tmp_path / "f")[::2], "--precision-recall")


def test_12_train_help_lists_every_preset(capsys):
    from xdlm_vision.config import preset_names

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "text" in preset_names()
    for name in preset_names():
        assert name in text
