"""Two CPU processes through ``accelerate launch`` train together and write one checkpoint."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
TINY = [
    "model.size=DiT-tiny", "training.batch_size=16", "training.steps=2", "training.ckpt_every=2",
    "training.val_every=0", "training.sample_every=0", "training.val_batch_size=32", "training.log_every=1",
    "training.tensorboard=false", "data.max_val_samples=64", "sampling.per_class=1", "sampling.num_steps=2",
]


@pytest.mark.slow
def test_two_process_cpu_run_writes_one_checkpoint(tmp_path):
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate launcher not on PATH")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # accelerate 1.x: `--cpu --num_processes 2` starts ONE process (its simple launcher expects mpirun);
    # `--multi_gpu` uses torchrun, and the trainer passes cpu=True without CUDA -> two gloo CPU processes
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "xdlm_vision.cli", "train", "digits", *TINY,
           "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 process(es)" in proc.stdout
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert ckpts == ["step_0000002"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))
    weights = load_file(str(tmp_path / "checkpoints/step_0000002/model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert proc.stdout.count("done: 2 steps") == 1  # only the main process reports

