"""The chunking policy (chunk counts per device and shape) and the CPU runner that uses it."""

import threading

import pytest
import torch

from xdlm_vision.core import TokenSpace, corrupt, get_schedule, nelbo, posterior_step
from xdlm_vision.core.chunking import ChunkPlan, ChunkPolicy, plan_rows, run_row_chunks

SHAPES = {  # (rows = B * L, N) of the benchmark shapes
    "vq16": (8 * 256, 16384),
    "cifar": (4 * 3072, 256),
    "gpt2": (4 * 1024, 50257),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_cpu_chunks_are_cache_sized_and_shared_by_the_threads(name):
    rows, n = SHAPES[name]
    plan = plan_rows(rows, n, "cpu", threads=2)
    assert plan.workers == 2
    per_chunk = plan.rows_per_chunk * n
    assert per_chunk <= max(n, 1 << 18)  # cache-sized
    assert 2 * per_chunk <= rows * n / 16 or plan.rows_per_chunk == 1  # both workers' chunks within 1/16
    assert plan.num_chunks == -(-rows // plan.rows_per_chunk)
    assert plan.num_chunks >= 8 * plan.workers  # enough chunks to balance two workers


def test_cpu_plans_of_the_benchmark_shapes():
    assert plan_rows(2048, 16384, "cpu", threads=2) == ChunkPlan(16, 128, 2)
    assert plan_rows(12288, 256, "cpu", threads=2) == ChunkPlan(384, 32, 2)
    assert plan_rows(4096, 50257, "cpu", threads=2) == ChunkPlan(5, 820, 2)
    # one thread: no workers, same cache-sized chunks (the budget then allows twice as much)
    assert plan_rows(12288, 256, "cpu", threads=1) == ChunkPlan(768, 16, 1)


@pytest.mark.parametrize("name", list(SHAPES))
def test_cuda_uses_a_handful_of_large_chunks(name):
    rows, n = SHAPES[name]
    plan = plan_rows(rows, n, torch.device("cuda"))  # a plan only: no GPU needed
    assert plan.workers == 1
    assert 1 <= plan.num_chunks <= DEFAULT_MAX_CUDA
    assert plan.rows_per_chunk * n >= min(rows * n, 1 << 24)


DEFAULT_MAX_CUDA = ChunkPolicy().cuda_max_chunks


def test_cuda_plans_of_the_benchmark_shapes():
    assert plan_rows(2048, 16384, "cuda").num_chunks == 2  # 64 MiB chunks of a 128 MiB tensor
    assert plan_rows(12288, 256, "cuda").num_chunks == 1  # small: the whole tensor at once
    assert plan_rows(4096, 50257, "cuda").num_chunks == 8  # 822 MiB: capped at 8 launches
    assert plan_rows(10, 7, "cuda:0").num_chunks == 1


def test_cuda_policy_parameters_are_respected():
    policy = ChunkPolicy(cuda_min_chunk_elements=1000, cuda_max_chunks=3)
    plan = plan_rows(100, 50, "cuda", memory_fraction=0.01, policy=policy)
    assert plan.num_chunks == 3 and plan.rows_per_chunk == 34
    plan = plan_rows(100, 50, "cuda", memory_fraction=0.5, policy=policy)
    assert plan.num_chunks == 2 and plan.rows_per_chunk == 50  # the memory budget allows half


def test_explicit_chunk_size_and_edge_cases():
    assert plan_rows(52 * 7, 11, "cpu", chunk_elements=7 * 11, threads=2) == ChunkPlan(7, 52, 2)
    assert plan_rows(10, 11, "cuda", chunk_elements=3 * 11) == ChunkPlan(3, 4, 1)
    assert plan_rows(0, 11, "cpu").num_chunks == 0
    assert plan_rows(1, 1 << 30, "cpu", threads=4) == ChunkPlan(1, 1, 1)  # one huge row: one chunk
    # the sampler's budget refers to the whole logits while it walks only some rows
    assert plan_rows(1000, 256, "cpu", total_elements=1 << 24, memory_fraction=1 / 64, threads=2).rows_per_chunk == 512
    # ... but CPU chunks never go below cpu_min_chunk_elements (2^15): Python overhead would dominate
    assert plan_rows(1000, 256, "cpu", total_elements=1 << 20, memory_fraction=1 / 64, threads=2).rows_per_chunk == 128
    with pytest.raises(ValueError):
        plan_rows(-1, 3, "cpu")
    with pytest.raises(ValueError):
        plan_rows(3, 0, "cpu")


def test_bounds_cover_every_row_once():
    plan = plan_rows(103, 5, "cpu", chunk_elements=10 * 5, threads=3)
    spans = list(plan.bounds(103))
    assert len(spans) == plan.num_chunks == 11
    assert [lo for lo, _ in spans] == list(range(0, 103, 10)) and spans[-1] == (100, 103)


def test_runner_visits_each_chunk_once_on_worker_threads():
    plan = plan_rows(1000, 3, "cpu", chunk_elements=7 * 3, threads=2)
    seen = torch.zeros(1000, dtype=torch.long)
    names = set()
    lock = threading.Lock()

    def fn(lo, hi):
        seen[lo:hi] += 1
        with lock:
            names.add(threading.current_thread().name)
        assert torch.get_num_threads() == 1  # single-threaded ops in the workers
        assert not torch.is_grad_enabled()

    before = torch.get_num_threads()
    run_row_chunks(fn, 1000, plan)
    assert bool((seen == 1).all())
    assert all(name.startswith("xdlm-chunks") for name in names)
    assert torch.get_num_threads() == before  # the caller's threads are untouched


def test_runner_inline_with_one_worker_and_errors_propagate():
    calls = []
    run_row_chunks(lambda lo, hi: calls.append((lo, hi, threading.current_thread())), 5, ChunkPlan(2, 3, 1))
    assert [c[:2] for c in calls] == [(0, 2), (2, 4), (4, 5)]
    assert all(c[2] is threading.current_thread() for c in calls)

    def boom(lo, hi):
        if lo == 6:
            raise RuntimeError("chunk 6 failed")

    with pytest.raises(RuntimeError, match="chunk 6"):
        run_row_chunks(boom, 20, ChunkPlan(2, 10, 2))


def test_runner_follows_inference_mode():
    out = torch.zeros(40)
    with torch.inference_mode():
        buf = torch.zeros(40)  # an inference tensor: writable only inside inference mode

        def fn(lo, hi):
            buf[lo:hi] = torch.arange(lo, hi, dtype=torch.float32)

        run_row_chunks(fn, 40, ChunkPlan(3, 14, 2))
        out.copy_(buf)
    assert torch.equal(out, torch.arange(40, dtype=torch.float32))


def _loss_and_grad(logits, x0, z_t, t, space, chunk_elements):
    logits = logits.clone().requires_grad_()
    loss = nelbo(logits, x0, z_t, t, space, get_schedule("linear"), chunk_elements=chunk_elements)
    loss.sum().backward()
    return loss.detach(), logits.grad


@pytest.mark.parametrize("k", [0.0, 0.3])
def test_threaded_chunks_give_bitwise_the_same_loss_as_one_thread(k):
    gen = torch.Generator().manual_seed(3)
    b, l, n = 3, 40, 33
    space = TokenSpace(n, k)
    logits = 3 * torch.randn(b, l, n, generator=gen)
    x0 = torch.randint(0, n, (b, l), generator=gen)
    t = torch.rand(b, generator=gen) * 0.9 + 0.05
    z_t = corrupt(x0, t, space, get_schedule("linear"), generator=gen)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = _loss_and_grad(logits, x0, z_t, t, space, 4 * n)
        torch.set_num_threads(2)
        got = _loss_and_grad(logits, x0, z_t, t, space, 4 * n)  # 30 chunks on 2 workers
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_threaded_sampler_step_matches_one_thread():
    gen = torch.Generator().manual_seed(5)
    b, l, n = 2, 300, 2000  # enough rows for several chunks on 2 workers
    space = TokenSpace(n, 0.2)
    logits = torch.randn(b, l, n, generator=gen)
    z_t = torch.randint(0, n + 1, (b, l), generator=gen)
    threads = torch.get_num_threads()
    draws = []
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            draw = posterior_step(logits, z_t, 0.6, 1.0, space, torch.Generator().manual_seed(9))
            draws.append(draw)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(draws[0].z_s, draws[1].z_s) and torch.equal(draws[0].component, draws[1].component)


def test_single_threaded_ops_keep_the_callers_workers_and_restore_its_threads(monkeypatch):
    """Inside the scope this thread runs ops on one thread while row chunks still get the caller's workers."""
    from xdlm_vision.core import chunking

    threads = torch.get_num_threads()
    seen = {}
    try:
        torch.set_num_threads(2)
        with chunking.single_threaded_ops():
            seen["inside"] = torch.get_num_threads()
            seen["workers"] = plan_rows(4096, 2000, "cpu").workers
            with chunking.single_threaded_ops():  # nested: still the outer count
                seen["nested"] = plan_rows(4096, 2000, "cpu").workers
        seen["after"] = torch.get_num_threads()
        seen["plain"] = plan_rows(4096, 2000, "cpu").workers

        calls = []
        real = torch.set_num_threads
        monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
        monkeypatch.setattr(chunking, "_openmp_backend", lambda: False)  # the native backend: leave threads alone
        with chunking.single_threaded_ops():
            seen["native"] = torch.get_num_threads()
        assert calls == []
    finally:
        torch.set_num_threads(threads)
    assert seen == {"inside": 1, "workers": 2, "nested": 2, "after": 2, "plain": 2, "native": 2}


def test_sampler_step_leaves_the_callers_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        posterior_step(torch.randn(2, 50, 300), torch.full((2, 50), 300), 0.5, 0.75, TokenSpace(300, 0.1),
                       torch.Generator().manual_seed(0))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
