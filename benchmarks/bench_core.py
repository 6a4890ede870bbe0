"""The core's loss and sampler step against plain baselines, idle and under a background load.

    python benchmarks/bench_core.py            # the three shapes, idle then loaded (~15 min, 2 cores)
    python benchmarks/bench_core.py --quick    # a small shape and few rounds: a smoke run (seconds)

Figures (CPU, fp32, XDLM k = 0.1 by default):

* **loss**: ``core.nelbo`` forward + backward against the plain masked cross-entropy
  (``core.masked_cross_entropy``: ``F.cross_entropy`` over every position, masked and weighted
  as MDLM does), forward + backward.
* **sampler step**: ``core.posterior_step`` against the plain step: softmax over N at every
  position and one inverse-CDF draw per position (cumsum + searchsorted), then the MDLM update
  (a masked position takes the draw with probability (alpha_s - alpha_t) / (1 - alpha_t)).
  Every one of the 32 steps of a linear-schedule trajectory is timed, on states z_t drawn from
  the forward process at that step's t (k = 0.1 states for ours, MDLM states for the baseline);
  reported: the mean over all 32 steps, the worst single step, and the last step on its own.

Methods alternate call by call (A, B, then B, A, ...), ``--rounds`` times, after one warm-up
call each; every figure is given as min / median / max over the rounds, ratios per round. The
whole set runs twice: idle, then with a background load this script starts itself (one other
two-thread torch process, see benchmarks/common.py). "Idle" only means that this script adds no
load: the header prints the machine's load average.

Memory runs in a child process per method and shape (MALLOC_MMAP_THRESHOLD_=65536, so every
large temporary shows in the resident set): the resident-set high-water mark and the peak of
torch's allocation counter (profiler memory events), both beyond the logits (and, for the
loss, beyond the gradient of the logits that any method must return), as multiples of the
logits' bytes. The plain sampler's memory is dense and the same at every step; it is probed at
steps 0, 16 and 31; ours at all 32 steps (resident set) and at steps 0, 16 and 31 (allocation
counter, which runs the step with one torch thread: the profiler cannot see worker threads).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys

from common import (
    background_load,
    interleaved,
    machine_line,
    max_over_min,
    ms_spread,
    peak_allocated_extra,
    peak_rss_extra,
    ratios,
    run_probe,
    spread,
    timed,
)

# isort: split
# torch only after common: the thread policy must be in place before torch loads
import torch

from xdlm_vision.core import TokenSpace, corrupt, get_schedule, masked_cross_entropy, nelbo, posterior_step

SHAPES = {
    "VQ-16 codes": (8, 256, 16384),
    "CIFAR pixels": (4, 3072, 256),
    "GPT-2 text": (4, 1024, 50257),
}
QUICK_SHAPES = {"quick": (2, 64, 512)}
NUM_STEPS = 32


# --- the loss ---------------------------------------------------------------------------------


def loss_setup(shape, k: float):
    b, l, n = shape
    g = torch.Generator().manual_seed(0)
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = torch.randn(shape, generator=g).requires_grad_()  # (B, L, N)
    x0 = torch.randint(0, n, (b, l), generator=g)  # (B, L)
    t = torch.rand(b, generator=g) * 0.98 + 0.01  # (B,)
    z_t = corrupt(x0, t, space, sched, generator=g)  # (B, L)
    # the baseline sees MDLM states of the same x0 and t
    z_mdlm = corrupt(x0, t, TokenSpace(n, 0.0), sched, generator=g)

    def call(name):
        def go():
            logits.grad = None
            if name == "xdlm":
                nelbo(logits, x0, z_t, t, space, sched).mean().backward()
            else:
                masked_cross_entropy(logits, x0, z_mdlm, t, TokenSpace(n, 0.0), sched).mean().backward()
        return go

    return logits, call


def bench_loss(shape, k: float, rounds: int) -> dict:
    _, call = loss_setup(shape, k)
    times = interleaved({"xdlm": call("xdlm"), "masked_ce": call("masked_ce")}, rounds)
    return {"xdlm": times["xdlm"], "masked_ce": times["masked_ce"],
            "ratio": ratios(times["xdlm"], times["masked_ce"])}


def probe_loss(shape, k: float, method: str) -> dict:
    logits, call = loss_setup(shape, k)
    fn, reset = call(method), lambda: setattr(logits, "grad", None)
    nbytes = logits.numel() * logits.element_size()
    rss = peak_rss_extra(fn, reset) - nbytes  # minus the gradient every method returns
    alloc = peak_allocated_extra(fn, reset) - nbytes
    return {"rss": max(rss, 0) / nbytes, "alloc": max(alloc, 0) / nbytes}


# --- the sampler step -------------------------------------------------------------------------


def plain_step(logits, z_t, alpha_t: float, alpha_s: float, mask_id: int, u_keep, u_draw):
    """The plain MDLM step: softmax over N everywhere, one inverse-CDF draw per position."""
    n = logits.shape[-1]
    p = torch.softmax(logits, dim=-1)  # (B, L, N)
    cdf = p.cumsum(dim=-1)  # (B, L, N)
    target = u_draw[..., None] * cdf[..., -1:]  # (B, L, 1)
    draw = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_max(n - 1)  # (B, L)
    unmask = (z_t == mask_id) & (u_keep < (alpha_s - alpha_t) / (1.0 - alpha_t))  # (B, L)
    return torch.where(unmask, draw, z_t)


def sampler_setup(shape, k: float):
    """Per step i: a callable of our step and of the plain step, on that step's states."""
    b, l, n = shape
    g = torch.Generator().manual_seed(0)
    space, mdlm, sched = TokenSpace(n, k), TokenSpace(n, 0.0), get_schedule("linear")
    logits = torch.randn(shape, generator=g)  # (B, L, N)
    x0 = torch.randint(0, n, (b, l), generator=g)
    ours, plain = [], []
    for i in range(NUM_STEPS):
        t, s = 1.0 - i / NUM_STEPS, 1.0 - (i + 1) / NUM_STEPS
        a_t = float(sched.alpha(torch.tensor(t, dtype=torch.float64)))
        a_s = 1.0 if i == NUM_STEPS - 1 else float(sched.alpha(torch.tensor(s, dtype=torch.float64)))
        tt = torch.full((b,), t)
        z_ours = corrupt(x0, tt, space, sched, generator=g)  # (B, L) a state at time t
        z_plain = corrupt(x0, tt, mdlm, sched, generator=g)
        gen = torch.Generator().manual_seed(1000 + i)
        ours.append(lambda z=z_ours, a_t=a_t, a_s=a_s, gen=gen: posterior_step(logits, z, a_t, a_s, space, gen))

        def plain_i(z=z_plain, a_t=a_t, a_s=a_s, gen=gen):
            u_keep = torch.rand((b, l), generator=gen)
            u_draw = torch.rand((b, l), generator=gen)
            return plain_step(logits, z, a_t, a_s, n, u_keep, u_draw)

        plain.append(plain_i)
    return logits, ours, plain


@torch.no_grad()
def bench_sampler(shape, k: float, rounds: int) -> dict:
    _, ours, plain = sampler_setup(shape, k)
    ours[0](), plain[0]()  # warm-up
    per_round = {"ours": [], "plain": []}  # each: a list (rounds) of 32 step times
    for r in range(rounds):
        t_ours, t_plain = [], []
        for i in range(NUM_STEPS):
            if (r + i) % 2 == 0:
                t_ours.append(timed(ours[i]))
                t_plain.append(timed(plain[i]))
            else:
                t_plain.append(timed(plain[i]))
                t_ours.append(timed(ours[i]))
        per_round["ours"].append(t_ours)
        per_round["plain"].append(t_plain)
    ro, rp = per_round["ours"], per_round["plain"]
    return {
        "ours_mean": [statistics.mean(x) for x in ro],
        "plain_mean": [statistics.mean(x) for x in rp],
        "mean_ratio": [sum(a) / sum(b) for a, b in zip(ro, rp)],
        "worst_ratio": [max(x / y for x, y in zip(a, b)) for a, b in zip(ro, rp)],
        "ours_last": [x[-1] for x in ro],
        "plain_last": [x[-1] for x in rp],
        "last_ratio": [a[-1] / b[-1] for a, b in zip(ro, rp)],
        # per step: max/min of our time over the rounds, the worst step reported
        "ours_step_spread": max(max_over_min([x[i] for x in ro]) for i in range(NUM_STEPS)),
    }


@torch.no_grad()
def probe_sampler(shape, k: float, method: str) -> dict:
    logits, ours, plain = sampler_setup(shape, k)
    nbytes = logits.numel() * logits.element_size()
    steps = range(NUM_STEPS) if method == "xdlm" else (0, NUM_STEPS // 2, NUM_STEPS - 1)
    fns = ours if method == "xdlm" else plain
    rss = max(peak_rss_extra(fns[i]) for i in steps)
    alloc = max(peak_allocated_extra(fns[i]) for i in (0, NUM_STEPS // 2, NUM_STEPS - 1))
    return {"rss": rss / nbytes, "alloc": alloc / nbytes}


def memory(kind: str, shape, k: float, method: str) -> dict:
    args = ["--_probe", kind, "--_method", method, "--k", str(k), "--_dims", *map(str, shape)]
    return json.loads(run_probe(__file__, args))


# --- report -----------------------------------------------------------------------------------


def _mem(probes: dict, method: str) -> str:
    m = probes.get(method)
    return f"{m['rss']:.3f} · {m['alloc']:.3f}" if m else "—"


def loss_table(results: dict, mem: dict) -> list[str]:
    lines = [
        ("| shape (B, L, N) | XDLM fwd+bwd, ms | masked CE fwd+bwd, ms | ratio (target idle ≤ 1.6, loaded ≤ 2.0) "
         "| XDLM max/min | XDLM extra mem / logits, RSS · alloc (≤ 0.25) | masked CE extra mem, RSS · alloc |"),
        "|---|---|---|---|---|---|---|",
    ]
    for name, (shape, r) in results.items():
        m = mem.get(name, {})
        lines.append(f"| {name} {shape} | {ms_spread(r['xdlm'])} | {ms_spread(r['masked_ce'])} | "
                     f"**{spread(r['ratio'])}** | {max_over_min(r['xdlm']):.2f} | {_mem(m, 'xdlm')} | "
                     f"{_mem(m, 'masked_ce')} |")
    return lines


def sampler_table(results: dict, mem: dict) -> list[str]:
    lines = [
        ("| shape (B, L, N) | XDLM step, mean of 32, ms | plain step, mean of 32, ms "
         "| ratio, mean of 32 (target idle ≤ 0.5, loaded ≤ 0.8) | worst single step | last step, ms (XDLM · plain) "
         "| last-step ratio (≤ 1.0) | XDLM max/min | XDLM extra mem / logits, RSS · alloc (≤ 0.1) "
         "| plain extra mem, RSS · alloc |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (shape, r) in results.items():
        m = mem.get(name, {})
        spread_ours = max(max_over_min(r["ours_mean"]), r["ours_step_spread"])
        lines.append(
            f"| {name} {shape} | {ms_spread(r['ours_mean'])} | {ms_spread(r['plain_mean'])} | "
            f"**{spread(r['mean_ratio'])}** | {spread(r['worst_ratio'])} | "
            f"{statistics.median(r['ours_last']) * 1e3:.3g} · {statistics.median(r['plain_last']) * 1e3:.3g} | "
            f"**{spread(r['last_ratio'])}** | {spread_ours:.2f} | {_mem(m, 'xdlm')} | {_mem(m, 'plain')} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small shape, 2 rounds: a smoke run")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the loss (default 7)")
    parser.add_argument("--sampler-rounds", type=int, default=2, help="rounds of the 32-step sampler grid (default 2)")
    parser.add_argument("--k", type=float, default=0.1, help="mixing ratio k of the XDLM side")
    parser.add_argument("--only", choices=["loss", "sampler"], default=None)
    parser.add_argument("--shape", choices=list(SHAPES), action="append", help="measure only these shapes")
    parser.add_argument("--no-load", action="store_true", help="skip the run under the background load")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probes")
    parser.add_argument("--_probe", choices=["loss", "sampler"], help=argparse.SUPPRESS)
    parser.add_argument("--_method", help=argparse.SUPPRESS)
    parser.add_argument("--_dims", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._probe:  # child process of memory(): print one JSON line
        fn = probe_loss if args._probe == "loss" else probe_sampler
        print(json.dumps(fn(tuple(args._dims), args.k, args._method)))
        return
    shapes = QUICK_SHAPES if args.quick else {k: v for k, v in SHAPES.items() if not args.shape or k in args.shape}
    rounds, s_rounds = (2, 1) if args.quick else (args.rounds, args.sampler_rounds)
    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"machine: {machine_line()}")
    print(f"k = {args.k}, loss rounds {rounds}, sampler rounds {s_rounds} x {NUM_STEPS} steps\n", flush=True)

    mem_loss, mem_sampler = {}, {}
    if not args.no_memory:
        for name, shape in shapes.items():
            if args.only != "sampler":
                mem_loss[name] = {m: memory("loss", shape, args.k, m) for m in ("xdlm", "masked_ce")}
                print(f"memory, loss, {name}: {json.dumps(mem_loss[name])}", flush=True)
            if args.only != "loss":
                mem_sampler[name] = {m: memory("sampler", shape, args.k, m) for m in ("xdlm", "plain")}
                print(f"memory, sampler step, {name}: {json.dumps(mem_sampler[name])}", flush=True)
        print()

    conditions = [("idle", None)] if args.no_load else [("idle", None), ("loaded", True)]
    for label, loaded in conditions:
        with background_load() if loaded else contextlib.nullcontext():
            print(f"### {label}: {machine_line()}\n", flush=True)
            if args.only != "sampler":
                res = {name: (shape, bench_loss(shape, args.k, rounds)) for name, shape in shapes.items()}
                print("\n".join(loss_table(res, mem_loss)) + "\n", flush=True)
            if args.only != "loss":
                res = {name: (shape, bench_sampler(shape, args.k, s_rounds)) for name, shape in shapes.items()}
                print("\n".join(sampler_table(res, mem_sampler)) + "\n", flush=True)


if __name__ == "__main__":
    main()
