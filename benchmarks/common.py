"""Shared pieces of the benchmark scripts: a background load, interleaved timing, memory probes.

Imported by ``benchmarks/bench_core.py`` and ``benchmarks/bench_e2e.py`` (run them from the
repository root). Importing this module applies the command-line tool's thread policy
(``xdlm_vision.threads``) before torch is loaded, so the benchmarks measure what
``xdlm-vision`` commands get.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xdlm_vision import threads

threads.prepare_environment()

# isort: split
import torch

# The background load: one other two-thread torch job (a chain of 384x384 matmuls), started as a
# plain process (default OpenMP settings), as a second training on the same machine would be.
LOAD_CODE = (
    "import torch\n"
    "torch.set_num_threads({threads})\n"
    "a = torch.randn(384, 384)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


@contextlib.contextmanager
def background_load(threads_: int = 2):
    """Run the background load in a subprocess for the duration of the block."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.Popen([sys.executable, "-c", LOAD_CODE.format(threads=threads_)], env=env)
    # a plain SIGTERM would end this process without the cleanup below and orphan the load
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        time.sleep(2.0)  # let it start and spin up its threads
        yield proc
    finally:
        proc.kill()
        proc.wait()
        signal.signal(signal.SIGTERM, previous)


def machine_line() -> str:
    load = os.getloadavg()
    policy = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    return (f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads, "
            f"OMP_WAIT_POLICY={policy}, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(methods: dict, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every method, round by round: A, B, C, then B, C, A, ... (the order
    rotates so no method always follows the same one). One untimed warm-up call each first."""
    names = list(methods)
    for _ in range(warmup):
        for name in names:
            methods[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            out[name].append(timed(methods[name]))
    return out


def spread(values) -> str:
    """'min / median / max' of a list."""
    return f"{min(values):.3g} / {statistics.median(values):.3g} / {max(values):.3g}"


def ms_spread(values) -> str:
    return spread([v * 1e3 for v in values])


def ratios(num: list[float], den: list[float]) -> list[float]:
    """Per-round ratios (the methods of one round ran back to back under the same conditions)."""
    return [a / b for a, b in zip(num, den)]


def max_over_min(values) -> float:
    return max(values) / min(values)


# --- memory ---------------------------------------------------------------------------------


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1)) * 1024


def peak_rss_extra(fn, reset=lambda: None) -> int:
    """Resident-set growth at the peak of fn() over the resident set before it (Linux). fn runs
    once first (lazily created buffers are not counted), then ``reset()`` drops what it left."""
    fn()
    reset()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current resident set
    before = _status("VmRSS")
    fn()
    return _status("VmHWM") - before


def peak_allocated_extra(fn, reset=lambda: None) -> int:
    """Peak of torch's CPU allocation counter during fn() above its level at the start: the
    profiler's per-op memory deltas (each op's own allocations minus frees, plus allocations
    outside ops), summed in time order. The profiler sees only threads that existed when it
    started, so fn runs with one torch thread here (the core's chunked code then runs inline;
    its memory budget counts all workers' chunks together, so the peak is the same)."""
    from torch.profiler import ProfilerActivity, profile

    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn()
        reset()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
    finally:
        torch.set_num_threads(threads_before)
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    level = peak = 0
    for e in events:
        level += e.self_cpu_memory_usage
        peak = max(peak, level)
    return peak


def run_probe(script: str, args: list[str]) -> str:
    """Run ``script`` with ``args`` in a child process with MALLOC_MMAP_THRESHOLD_=65536 (large
    buffers go straight back to the OS when freed, so the resident high-water mark sees every
    temporary); return its last stdout line."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory probe failed: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]
