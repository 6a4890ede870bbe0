"""The thread policy of the command-line tool (xdlm_vision.threads, the global --threads flag)."""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xdlm_vision import threads
from xdlm_vision.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_prepare_environment_sets_passive_unless_set():
    env = {}
    assert threads.prepare_environment(env) is True and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.prepare_environment(env) is False and env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_prepare_environment_is_applied_before_torch_loads_in_a_fresh_process():
    code = ("import os, sys; from xdlm_vision import threads; threads.prepare_environment(); "
            "assert 'torch' not in sys.modules; import torch; print(os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "PASSIVE"


@pytest.mark.parametrize("value,want", [("1", 1), ("3", 3), ("auto", None), (" AUTO ", None)])
def test_parse_threads(value, want):
    assert threads.parse_threads(value) == want


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5", ""])
def test_parse_threads_rejects_bad_values(value):
    with pytest.raises(argparse.ArgumentTypeError, match="--threads"):
        threads.parse_threads(value)


def test_resolve_threads():
    assert threads.resolve_threads(3) == 3
    assert threads.resolve_threads(None, {"OMP_NUM_THREADS": "1"}) == 1
    assert threads.resolve_threads(None, {"OMP_NUM_THREADS": "junk"}) == threads.available_cores()
    assert threads.resolve_threads(None, {}) == threads.available_cores() >= 1


def test_threads_flag_on_the_top_level_parser():
    args = build_parser().parse_args(["--threads", "1"])
    assert args.threads == 1
    assert build_parser().parse_args([]).threads is None


def test_apply_threads_sets_torch():
    before = torch.get_num_threads()
    try:
        assert threads.apply_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_bad_threads_value_is_a_usage_error(capsys):
    assert main(["--threads", "0", "sample"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")  # one line, no usage block
    assert "--threads must be a positive integer or 'auto'" in err[0]
