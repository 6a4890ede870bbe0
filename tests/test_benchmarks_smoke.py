"""The benchmark scripts run end to end in their --quick mode and print their tables."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_bench_core_quick_prints_loss_and_sampler_tables_idle_and_loaded():
    text = _run("bench_core.py")
    assert "OMP_WAIT_POLICY=PASSIVE" in text  # the CLI's thread policy is applied
    assert text.count("### idle") == 1 and text.count("### loaded") == 1
    assert text.count("| quick (2, 64, 512) |") == 4  # loss + sampler, idle + loaded
    row = next(line for line in text.splitlines() if line.startswith("| quick"))
    assert " / " in row and "·" in row  # min / median / max and both memory figures


def test_bench_e2e_quick_prints_train_and_sampling_ratios():
    text = _run("bench_e2e.py", "--no-load")
    rows = [line for line in text.splitlines() if line.startswith("| quick")]
    assert len(rows) == 1 and rows[0].count("**") == 4  # the two ratios, bold
    assert "### loaded" not in text


@pytest.mark.slow
def test_bench_threads_quick_prints_every_policy_idle_and_loaded():
    text = _run("bench_threads.py")
    rows = [line for line in text.splitlines() if line.startswith(("| idle", "| loaded"))]
    assert len(rows) == 6
    assert any("| one thread | 1 |" in row for row in rows)
