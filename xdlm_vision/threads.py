"""Thread policy of the command-line tool: how many CPU threads torch uses and how they wait.

Two settings, both applied by ``xdlm-vision`` before any command runs (docs/benchmarks.md has
the measurements behind them):

* ``OMP_WAIT_POLICY=PASSIVE`` (unless the environment already sets it), put in place before
  torch is imported. OpenMP threads that finish a parallel region early then sleep instead of
  spinning: on a machine shared with other jobs, spinning threads burn the cores the slow thread
  needs, and every parallel op waits for its slowest thread.
* ``--threads N`` (``auto`` by default: ``OMP_NUM_THREADS`` when set, else the cores this
  process may run on) sets
  ``torch.set_num_threads``. The core's chunked loss and sampler use the same number of
  single-threaded workers (:mod:`xdlm_vision.core.chunking`).
"""

from __future__ import annotations

import argparse
import os
import sys

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
DEFAULT_WAIT_POLICY = "PASSIVE"


def prepare_environment(environ=None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless it is set already; True if it was set here.

    Only effective before torch (and its OpenMP runtime) is loaded: when torch is already
    imported the process keeps its policy, so nothing is changed (child processes inherit the
    environment unchanged too). ``environ`` defaults to ``os.environ`` (tests pass a dict).
    """
    environ = os.environ if environ is None else environ
    if WAIT_POLICY_VAR in environ or (environ is os.environ and "torch" in sys.modules):
        return False
    environ[WAIT_POLICY_VAR] = DEFAULT_WAIT_POLICY
    return True


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_threads(value: str) -> int | None:
    """argparse type of ``--threads``: a positive integer, or ``auto`` (None). A bad value is
    an argparse error (``error: argument --threads: ...``, exit status 2)."""
    if value.strip().lower() == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be a positive integer or 'auto', got {value!r}")
    return n


def resolve_threads(requested: int | None, environ=None) -> int:
    """The thread count to use: ``requested``; for ``auto`` (None) a valid ``OMP_NUM_THREADS``
    from the environment, else all available cores."""
    if requested is not None:
        return int(requested)
    environ = os.environ if environ is None else environ
    try:
        from_env = int(environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        from_env = 0
    return from_env if from_env >= 1 else available_cores()


def apply_threads(requested: int | None) -> int:
    """``torch.set_num_threads`` with :func:`resolve_threads`; returns the count set."""
    import torch

    n = resolve_threads(requested)
    torch.set_num_threads(n)
    return n
