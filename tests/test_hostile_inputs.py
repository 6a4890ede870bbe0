"""The hostile-input sweep (issue 14): every numeric flag, every path flag, every checkpoint file.

The table is generated from the argparse parsers themselves (:func:`xdlm_vision.cli.build_parser`,
walking every subcommand), so a flag or command added later joins the sweep without editing this
file. Each case calls ``xdlm_vision.cli.main([...])`` in-process and asserts one of two outcomes:

* refused: exit status 2, exactly one line on stderr, starting with ``error:``, no traceback, and
  no output file or hidden temporary left behind;
* accepted: a correct result (exit status 0 and the expected output) — or, for commands this file
  has no cheap base invocation for, a clean one-line refusal of whatever is still missing.

Values: numeric flags at 0, negative, NaN, inf, huge and non-numeric; path flags as a directory, a
file, in a read-only folder, missing, and under a file; checkpoint files truncated, empty, garbage
and swapped in from another step. The expensive resume matrix is marked ``slow``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xdlm_vision import cli
from xdlm_vision.checkpoints import PACKAGED_CHECKPOINT

PKG = str(PACKAGED_CHECKPOINT)
NUMERIC_VALUES = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "huge": "1" + "0" * 30,
                  "text": "abc"}


# ---------------------------------------------------------------------------------------------
# the table, from the parsers


def leaf_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) for every leaf subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_parsers(sub, (*prefix, name))


def option_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._SubParsersAction):
            yield action


COMMANDS = list(leaf_parsers(cli.build_parser()))


def _numeric(action) -> bool:
    return action.type in (int, float) or hasattr(action.type, "bounds")


def _path_kind(action) -> str | None:
    return getattr(action.type, "path_kind", None)


def _accepts(action, text: str) -> bool:
    low, high = action.type.bounds
    try:
        value = float(text) if isinstance(low, float) else int(text)
    except ValueError:
        return False
    return math.isfinite(value) and low <= value <= high


SLOW_RUNS = {("eval", "fid"), ("eval", "nelbo")}  # an accepted value runs these for real: seconds each

NUMERIC_CASES = [
    pytest.param(words, action.option_strings[-1], name, value, _accepts(action, value),
                 id=f"{'-'.join(words)}{action.option_strings[-1]}={name}",
                 marks=[pytest.mark.slow] if _accepts(action, value) and words in SLOW_RUNS else [])
    for words, parser in COMMANDS for action in option_actions(parser) if hasattr(action.type, "bounds")
    for name, value in NUMERIC_VALUES.items()
]
def _runs_for_real(words, action, where) -> bool:
    """True if this path case runs an expensive command to the end (then it is marked slow)."""
    if words not in SLOW_RUNS:
        return False
    flag = action.option_strings[-1]
    if (*words, flag) in {("eval", "fid", "--inception-weights"), ("eval", "fid", "--reference")}:
        return True  # --sample-only never opens them: the sampling runs whatever the value
    return _path_kind(action) == "out-dir" and where in ("missing", "directory")


PATH_CASES = [
    pytest.param(words, action.option_strings[-1], _path_kind(action), where,
                 id=f"{'-'.join(words)}{action.option_strings[-1]}={where}",
                 marks=[pytest.mark.slow] if _runs_for_real(words, action, where) else [])
    for words, parser in COMMANDS for action in option_actions(parser) if _path_kind(action)
    for where in ("directory", "file", "read-only", "missing", "under-a-file")
]


def test_every_numeric_flag_is_bounded():
    """A numeric flag with a plain int/float type would accept NaN, inf or 10**30: use
    flags.int_in / flags.float_in / flags.SEED so the sweep below knows its range."""
    raw = [f"{' '.join(w)} {a.option_strings[-1]}" for w, p in COMMANDS for a in option_actions(p)
           if a.type in (int, float)]
    assert raw == [], f"unbounded numeric flags: {raw}"


def test_the_table_covers_every_command():
    words = {w[0] for w, _ in COMMANDS}
    assert {"train", "sample", "sample-text", "eval", "extract-codes", "demo"} <= words
    assert len(NUMERIC_CASES) >= 100 and len(PATH_CASES) >= 40


# ---------------------------------------------------------------------------------------------
# running one case


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def assert_one_error_line(code: int, err: str, argv) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and "%|" not in ln]  # minus progress bars
    assert code == 2, (argv, code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err


def hidden_temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if p.name.startswith((".tmp", ".old_")) or p.name.endswith(".tmp")]


def base_argv(words: tuple[str, ...], tmp: Path) -> list[str] | None:
    """A cheap complete invocation of each command (None: parse-level checks only)."""
    fid = ["--checkpoint", PKG, "--num", "2", "--steps", "1", "--batch-size", "2", "--sample-only",
           "--inception-weights", "unused", "--reference", "unused", "--out", tmp / "fid", "--no-progress"]
    return {
        ("sample",): ["--num", "1", "--steps", "1", "--out", tmp / "grid.png"],
        ("eval", "digits"): ["--checkpoint", PKG, "--num", "2", "--steps", "1", "--batch-size", "2",
                             "--no-progress"],
        ("eval", "nelbo"): ["--checkpoint", PKG, "--max-examples", "4", "--num-t", "1", "--batch-size", "4",
                            "--no-progress"],
        ("eval", "fid"): fid,
    }.get(words)


def with_flag(base: list, flag: str, value) -> list:
    """``base`` with ``flag`` set to ``value`` (replacing an existing occurrence)."""
    argv = list(base)
    if flag in argv:
        i = argv.index(flag)
        argv[i + 1] = value
        return argv
    return [*argv, flag, value]


@pytest.mark.parametrize("words,flag,name,value,accepted", NUMERIC_CASES)
def test_numeric_flag(words, flag, name, value, accepted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = base_argv(words, tmp_path)
    if not accepted:
        argv = [*words, *(base or []), flag, value] if base is None else [*words, *with_flag(base, flag, value)]
        code, _, err = run_cli(argv)
        assert_one_error_line(code, err, argv)
        assert flag in err, err  # the line names the flag
        assert hidden_temporaries(tmp_path) == [] and not (tmp_path / "grid.png").exists()
        return
    if base is None:  # accepted by the parser; the command itself is not run here
        parser = dict(COMMANDS)[words]
        action = next(a for a in option_actions(parser) if flag in a.option_strings)
        assert action.type(value) is not None
        return
    argv = [*words, *with_flag(base, flag, value)]
    code, _out, err = run_cli(argv)
    if flag == "--max-shards" and value == "0":
        assert code == 0 and "--max-shards" in err
        return
    assert code == 0, (argv, err)
    assert "Traceback" not in err and hidden_temporaries(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# path flags


def readonly_dir(tmp: Path) -> Path | None:
    """A read-only folder: a read-only tmpfs mount when we may mount (root ignores chmod), else a
    chmod-555 folder when not root; None if neither refuses writes."""
    d = tmp / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        return d
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], check=False, capture_output=True)
    return d if ok.returncode == 0 else None


def unmount(d: Path | None) -> None:
    if d is not None and os.geteuid() == 0:
        subprocess.run(["umount", str(d)], check=False, capture_output=True)
    elif d is not None:
        d.chmod(0o755)


SUFFIX = {"--trajectory": ".gif", "--trajectory-html": ".html"}


def path_value(flag: str, where: str, tmp: Path, ro: Path | None):
    name = "thing" + SUFFIX.get(flag, ".png")
    if where == "directory":
        d = tmp / "adir"
        d.mkdir(exist_ok=True)
        return d
    if where == "file":
        f = tmp / ("afile" + SUFFIX.get(flag, ".png"))
        f.write_bytes(b"\x00garbage\xff" * 10)
        return f
    if where == "read-only":
        return None if ro is None else ro / name
    if where == "missing":
        return tmp / "missing" / "deeper" / name
    f = tmp / "plainfile"
    f.write_text("x")
    return f / name  # under a file


# (kind, where) -> True if the value must be refused, False if it must work (None: either, cleanly)
EXPECTED = {
    ("out-file", "directory"): True, ("out-file", "file"): False, ("out-file", "read-only"): True,
    ("out-file", "missing"): False, ("out-file", "under-a-file"): True,
    ("out-dir", "directory"): False, ("out-dir", "file"): True, ("out-dir", "read-only"): True,
    ("out-dir", "missing"): False, ("out-dir", "under-a-file"): True,
    ("in-any", "directory"): True, ("in-any", "file"): True, ("in-any", "read-only"): True,
    ("in-any", "missing"): True, ("in-any", "under-a-file"): True,
}
# input flags the base invocations ignore (fid --sample-only never opens the Inception weights or
# the reference) or accept as a plain name
NOT_OPENED = {("eval", "fid", "--inception-weights"), ("eval", "fid", "--reference")}


@pytest.mark.parametrize("words,flag,kind,where", PATH_CASES)
def test_path_flag(words, flag, kind, where, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ro = readonly_dir(tmp_path) if where == "read-only" else None
    try:
        value = path_value(flag, where, tmp_path, ro)
        if value is None:
            pytest.skip("cannot make a read-only folder here (root without mount permission)")
        parser = dict(COMMANDS)[words]
        action = next(a for a in option_actions(parser) if flag in a.option_strings)
        if words[0] == "demo":  # never start a server in the sweep: the parse-time check only
            with contextlib.suppress(argparse.ArgumentTypeError):
                action.type(str(value))
            return
        base = base_argv(words, tmp_path)
        argv = [*words, *(with_flag(base, flag, value) if base else [flag, value])]
        code, _out, err = run_cli(argv)
        assert "Traceback" not in err
        if code != 0:
            assert_one_error_line(code, err, argv)
        expected = EXPECTED[(kind, where)] if base is not None else None
        if (*words, flag) in NOT_OPENED:
            expected = None
        if kind.startswith("out") and where in ("directory", "read-only", "under-a-file", "file") and \
                EXPECTED[(kind, where)]:
            expected = True  # output paths are refused at parse time, whatever else is missing
        if expected is True:
            assert code == 2 and flag in err or (kind.startswith("in") and code == 2), (argv, err)
        elif expected is False:
            assert code == 0, (argv, err)
            assert Path(value).exists()
        assert hidden_temporaries(tmp_path) == []
    finally:
        unmount(ro)


# ---------------------------------------------------------------------------------------------
# checkpoint files: truncated, empty, garbage, swapped


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step digits run with a checkpoint at steps 1 and 2."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    code, _, err = run_cli(["train", "digits", "training.steps=2", "training.batch_size=8", "training.ckpt_every=1",
                            "training.keep_checkpoints=0", "data.max_val_samples=8", "training.val_batch_size=8",
                            "sampling.per_class=1", "training.log_every=1", "training.tensorboard=false",
                            "optim.warmup_steps=0", "--out", out, "--no-progress"])
    assert code == 0, err
    return out


FILE_DAMAGE = ("truncated", "empty", "garbage", "swapped")
CKPT_FILES = ("model.safetensors", "ema.safetensors", "config.json", "train_state.pt")


def damage(run: Path, fname: str, how: str, dest: Path) -> Path:
    """Copy ``run`` to ``dest`` and damage ``fname`` of its newest checkpoint."""
    shutil.copytree(run, dest)
    target = dest / "checkpoints" / "step_0000002" / fname
    data = target.read_bytes()
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        target.write_bytes(b"")
    elif how == "garbage":
        target.write_bytes(os.urandom(len(data)))
    else:  # the same file of the step-1 checkpoint
        shutil.copy(dest / "checkpoints" / "step_0000001" / fname, target)
    return dest


@pytest.mark.parametrize("how", FILE_DAMAGE)
@pytest.mark.parametrize("fname", CKPT_FILES)
def test_damaged_checkpoint_file_on_sample(tiny_run, fname, how, tmp_path):
    run = damage(tiny_run, fname, how, tmp_path / "run")
    step_dir = run / "checkpoints" / "step_0000002"
    argv = ["sample", "--checkpoint", step_dir, "--num", "1", "--steps", "1", "--out", tmp_path / "g.png",
            "--no-ema" if fname == "model.safetensors" else "--ema"]
    code, _out, err = run_cli(argv)
    if fname == "train_state.pt":  # sampling never reads it
        assert code == 0 and (tmp_path / "g.png").is_file(), err
        return
    assert_one_error_line(code, err, argv)
    assert not (tmp_path / "g.png").exists()
    assert "weights_only" not in err and "unsafe" not in err


@pytest.mark.slow
@pytest.mark.parametrize("how", FILE_DAMAGE)
@pytest.mark.parametrize("fname", CKPT_FILES)
def test_damaged_newest_checkpoint_on_resume_falls_back(tiny_run, fname, how, tmp_path):
    """--resume skips a damaged newest checkpoint with a one-line notice and continues from the
    previous intact one; the run then ends with a complete, consistent newest checkpoint."""
    run = damage(tiny_run, fname, how, tmp_path / "run")
    argv = ["train", "digits", "training.steps=3", "training.batch_size=8", "training.ckpt_every=1",
            "training.keep_checkpoints=0", "data.max_val_samples=8", "training.val_batch_size=8",
            "sampling.per_class=1", "training.log_every=1", "training.tensorboard=false", "optim.warmup_steps=0",
            "--out", run, "--resume", "--no-progress"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    assert "resuming from step_0000001" in out
    code, _, err = run_cli(["sample", "--checkpoint", run, "--num", "1", "--steps", "1", "--out",
                            tmp_path / "g.png"])
    assert code == 0, err
    assert hidden_temporaries(run) == []
