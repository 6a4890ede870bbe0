"""How the core walks a large (rows, N) logits tensor: chunk sizes per device and a CPU runner.

The loss (:mod:`row_stats`) and the sampler step (:mod:`posterior`) never materialise a second
(rows, N) tensor; they process the logits a block of rows at a time. How big a block should be
depends on the device:

* **CUDA**: every op is a kernel launch, so the fewer chunks the better. A chunk is as large as
  the memory budget allows (``memory_fraction`` of the logits, and never less than
  ``cuda_min_chunk_elements``), and there are never more than ``cuda_max_chunks`` of them: a
  handful of launches per op and call instead of thousands.
* **CPU**: a chunk is cache-sized (``cpu_chunk_elements``), and the chunks are spread over a
  small pool of Python threads that each run torch single-threaded (:func:`run_row_chunks`).
  Torch releases the GIL inside its kernels, so the workers compute in parallel, and because
  every op is single-threaded there is no OpenMP barrier per op: a worker that the OS
  deschedules (another job on the machine) only delays its own chunk while the others take the
  next ones from the shared queue. Multi-threaded ops on small chunks did the opposite: one
  loss call became thousands of tiny two-thread jobs, each waiting for the slowest thread, and
  collapsed 20-160x when the CPU was shared (docs/benchmarks.md).

The plan never changes a result: rows are independent, each row is reduced by one
single-threaded op whatever the chunk, and the tests check the chunked code against dense
references (tests/test_core_loss.py, tests/test_core_chunking.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChunkPolicy:
    """Tunables of :func:`plan_rows`; the defaults were measured on a 2-core CPU (see
    docs/benchmarks.md) and chosen for GPUs so that a call is a handful of launches."""

    cpu_chunk_elements: int = 1 << 18  # 1 MiB of float32: fits L2, amortises ~10 us of Python per op
    cpu_min_chunk_elements: int = 1 << 15  # smaller chunks than this cost more in Python than they save
    cpu_max_workers: int = 8  # more Python threads than this fight over the GIL
    cuda_min_chunk_elements: int = 1 << 24  # below 64 MiB of float32 a CUDA chunk is the whole tensor
    cuda_max_chunks: int = 8  # at most this many launches per op and call


DEFAULT_POLICY = ChunkPolicy()


@dataclass(frozen=True)
class ChunkPlan:
    rows_per_chunk: int  # rows of the (rows, N) tensor per chunk (>= 1)
    num_chunks: int  # ceil(rows / rows_per_chunk); 0 when there are no rows
    workers: int  # threads that share the chunks (1 = a plain loop in the caller)

    def bounds(self, rows: int):
        """(lo, hi) row ranges of the chunks, in order."""
        for lo in range(0, rows, self.rows_per_chunk):
            yield lo, min(rows, lo + self.rows_per_chunk)


def plan_rows(
    rows: int,
    n: int,
    device: torch.device | str,
    *,
    total_elements: int | None = None,
    memory_fraction: float = 1 / 16,
    chunk_elements: int | None = None,
    threads: int | None = None,
    policy: ChunkPolicy = DEFAULT_POLICY,
) -> ChunkPlan:
    """How to split ``rows`` rows of width ``n`` into chunks on ``device``.

    total_elements: size of the tensor the memory budget refers to (default rows * n; the
    sampler passes the whole logits while it only walks the rows it draws at).
    memory_fraction: the chunks alive at the same time (one per worker) hold at most this
    fraction of ``total_elements`` (but a CPU chunk is never below ``cpu_min_chunk_elements``,
    and no chunk is below one row). chunk_elements: an explicit
    chunk size (tests), used as given on every device. threads: CPU threads to use
    (default ``torch.get_num_threads()``). Nothing here touches a GPU: ``device`` may be
    ``"cuda"`` on a machine without one.
    """
    if rows < 0 or n < 1:
        raise ValueError(f"plan_rows needs rows >= 0 and n >= 1, got rows={rows}, n={n}")
    if rows == 0:
        return ChunkPlan(1, 0, 1)
    device = torch.device(device)
    total = rows * n if total_elements is None else max(int(total_elements), n)
    budget = memory_fraction * total
    if chunk_elements is not None:
        per_chunk = max(n, int(chunk_elements))
        workers = 1 if device.type != "cpu" else _cpu_workers(threads, policy)
    elif device.type == "cpu":
        workers = _cpu_workers(threads, policy)
        per_chunk = max(n, policy.cpu_min_chunk_elements, min(policy.cpu_chunk_elements, int(budget / workers)))
    else:  # CUDA and other accelerators: few, large chunks
        workers = 1
        per_chunk = max(n, int(budget), min(rows * n, policy.cuda_min_chunk_elements))
        per_chunk = max(per_chunk, math.ceil(rows / policy.cuda_max_chunks) * n)
    rows_per_chunk = max(1, min(rows, per_chunk // n))
    num_chunks = math.ceil(rows / rows_per_chunk)
    return ChunkPlan(rows_per_chunk, num_chunks, min(workers, num_chunks))


def _cpu_workers(threads: int | None, policy: ChunkPolicy) -> int:
    if threads is None:  # inside single_threaded_ops the caller's own count is the one to use
        threads = getattr(_caller, "threads", None) or torch.get_num_threads()
    return max(1, min(int(threads), policy.cpu_max_workers))


# --- MKL's own threads ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _mkl_set_local():
    """MKL's ``mkl_set_num_threads_local`` (C entry point) from the loaded torch library, or None."""
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib", "torch_cpu.dll"):
        try:
            fn = ctypes.CDLL(os.path.join(lib_dir, name)).MKL_Set_Num_Threads_Local  # the C interface
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


@contextlib.contextmanager
def mkl_single_threaded():
    """MKL runs single-threaded in the calling thread inside this block (other threads keep
    their setting; a no-op without MKL). torch hands elementwise exp/log1p/... of float tensors
    to MKL's vector library, which starts its own OpenMP team even for a few thousand elements:
    on a shared CPU each of those calls waited milliseconds for the team (docs/benchmarks.md)."""
    set_local = _mkl_set_local()
    if set_local is None:
        yield
        return
    previous = set_local(1)  # 0 = the thread had no local setting (use the global one)
    try:
        yield
    finally:
        set_local(previous)


@functools.lru_cache(maxsize=1)
def _openmp_backend() -> bool:
    """torch's intra-op backend is OpenMP (the Linux and Windows wheels): its team size is a
    per-thread setting, cheap to change. The native backend refuses changes after the first
    parallel op (with a warning), so there the ops keep their threads."""
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


_caller = threading.local()  # .threads: the calling thread's torch thread count inside single_threaded_ops


@contextlib.contextmanager
def single_threaded_ops():
    """The calling thread runs torch ops (and MKL) single-threaded inside this block; the row
    chunks of :func:`run_row_chunks` still go to as many workers as the caller had threads.

    For the sampler step's per-position arithmetic (indexing, comparisons, index_put over B * L
    elements): split over an OpenMP team, each such op waited for every team member, and on a
    shared CPU a descheduled member made a 20 us op take milliseconds (docs/benchmarks.md). Alone
    in one thread the same ops cost the same idle and do not wait for anyone under load. No-op on
    a caller that already runs one thread; nested use keeps the outer count.
    """
    threads = torch.get_num_threads()
    if threads == 1 or getattr(_caller, "threads", None) or not _openmp_backend():
        with mkl_single_threaded():
            yield
        return
    _caller.threads = threads
    torch.set_num_threads(1)
    try:
        with mkl_single_threaded():
            yield
    finally:
        torch.set_num_threads(threads)
        _caller.threads = None


# --- the CPU runner --------------------------------------------------------------------------

_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _reset_pools() -> None:  # a forked child (data-loader worker) inherits no threads
    _pools.clear()


os.register_at_fork(after_in_child=_reset_pools)


def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool of ``workers`` threads that each run torch with one intra-op thread."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is None:
            caller_threads = torch.get_num_threads()
            ready = threading.Barrier(workers + 1)

            def single_threaded():
                torch.get_num_threads()  # torch's once-per-thread init first, or it would undo the next line
                torch.set_num_threads(1)  # this thread's OpenMP team size
                set_local = _mkl_set_local()
                if set_local is not None:
                    set_local(1)  # and MKL's, for this thread only
                ready.wait()

            pool = ThreadPoolExecutor(workers, thread_name_prefix="xdlm-chunks", initializer=single_threaded)
            for _ in range(workers):  # start every thread now, while the barrier holds them
                pool.submit(int)
            ready.wait()
            # torch.set_num_threads also stores a process-wide default for new threads: put the
            # caller's back (its own team size was never changed).
            torch.set_num_threads(caller_threads)
            _pools[workers] = pool
        return pool


def run_row_chunks(fn, rows: int, plan: ChunkPlan) -> None:
    """Call ``fn(lo, hi)`` once for every chunk of ``plan`` over ``rows`` rows.

    With ``plan.workers > 1`` the calls run on a pool of single-threaded workers that take
    chunks from a shared counter (so a descheduled worker holds up nothing but its own chunk);
    ``fn`` must then only write disjoint row ranges of preallocated outputs. Gradient tracking is
    off inside the workers; inference mode follows the caller. Exceptions propagate.
    """
    if plan.num_chunks == 0:
        return
    if plan.workers <= 1 or plan.num_chunks == 1:
        for lo, hi in plan.bounds(rows):
            fn(lo, hi)
        return
    inference = torch.is_inference_mode_enabled()
    chunks = plan.bounds(rows)
    lock = threading.Lock()
    failed = threading.Event()

    def work():
        with torch.inference_mode(inference), torch.no_grad():
            while not failed.is_set():
                with lock:
                    span = next(chunks, None)
                if span is None:
                    return
                try:
                    fn(*span)
                except BaseException:
                    failed.set()
                    raise

    futures = [_pool(plan.workers).submit(work) for _ in range(plan.workers)]
    for f in futures:
        f.result()
