"""Core performance ratios, measured in one run on the same tensors (issue 2).

    python benchmarks/bench_core.py            # all three shapes (about 10 minutes on 2 CPU cores)
    python benchmarks/bench_core.py --quick    # smaller shapes, a smoke run (seconds)

For each (B, L, N) it reports, CPU fp32:
  * loss: XDLM ``nelbo`` forward+backward / masked cross-entropy (the MDLM loss done the usual way,
    ``F.cross_entropy`` + mask) forward+backward, median over repetitions after a warm-up, and the
    peak memory each needs beyond the logits and their gradient, as a fraction of the logits;
  * sampler step: XDLM ``posterior_step`` (mixture form) / an MDLM step done the usual way (softmax
    over every position, (B, L, N+1) transition probabilities, Gumbel-argmax draw), on states z_t
    drawn from the forward process at each step's t: the mean over a 32-step grid and the last
    step (alpha_s = 1) separately, plus the peak extra memory.

Peak memory is the resident-set high-water mark (reset through /proc/self/clear_refs), measured
in a child process started with MALLOC_MMAP_THRESHOLD_=65536: large buffers then go straight back
to the OS when freed, so the high-water mark sees every temporary (Linux only). Timings are taken
in this process with the normal allocator (the mmap setting would charge a page-fault storm to
every chunk allocation, which no real run pays). Timings on a shared machine are noisy; the
ratios are what the targets are about.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import torch

from xdlm_vision.core import TokenSpace, corrupt, get_schedule, masked_cross_entropy, nelbo, posterior_step

SHAPES = {
    "VQ-16 codes": (8, 256, 16384),
    "CIFAR pixels": (4, 3072, 256),
    "GPT-2 text": (4, 1024, 50257),
}
QUICK_SHAPES = {"quick": (2, 64, 1024)}


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1)) * 1024


def peak_extra_bytes(fn, reset=lambda: None) -> int:
    """Resident-set growth at the peak of fn() over the resident set before it. fn runs once
    first (lazily initialised buffers are not counted), then ``reset()`` drops what it left."""
    fn()
    reset()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status("VmRSS")
    fn()
    return _status("VmHWM") - before


def probe_memory(kind: str, shape, k: float) -> dict:
    """Run the memory measurement of ``kind`` ("loss" or "sampler") in a child process with
    MALLOC_MMAP_THRESHOLD_ set; returns its dict of extra-memory fractions."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, os.path.abspath(__file__), "--_probe", kind, "--k", str(k), "--_dims", *map(str, shape)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mdlm_step_usual(logits, z_t, alpha_t, alpha_s, mask_id, generator):
    """An MDLM reverse step as reference code usually writes it: dense probabilities over N + 1
    states at every position, a Gumbel-argmax draw, then unmasked tokens copied over."""
    p_x0 = torch.softmax(logits.float(), dim=-1)  # (B, L, N)
    q = torch.cat([p_x0 * (alpha_s - alpha_t), torch.full_like(p_x0[..., :1], 1.0 - alpha_s)], dim=-1)  # (B, L, N+1)
    gumbel = -(torch.rand(q.shape, generator=generator) + 1e-10).log()  # (B, L, N+1)
    draw = (q / gumbel).argmax(dim=-1)  # (B, L)
    return torch.where(z_t == mask_id, draw, z_t)


def bench_loss(shape, reps: int, k: float, memory: bool = False) -> dict:
    """Times (``memory=False``) or extra-memory fractions (``memory=True``, run in the probe)."""
    b, l, n = shape
    g = torch.Generator().manual_seed(0)
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = torch.randn(shape, generator=g).requires_grad_()
    x0 = torch.randint(0, n, (b, l), generator=g)
    t = torch.rand(b, generator=g) * 0.98 + 0.01
    z_t = corrupt(x0, t, space, sched, generator=g)
    logit_bytes = logits.numel() * logits.element_size()

    def run(loss_fn):
        def go():
            logits.grad = None
            loss_fn(logits, x0, z_t, t, space, sched).mean().backward()
        return go

    out = {}
    for name, fn in (("xdlm", nelbo), ("masked_ce", masked_cross_entropy)):
        if memory:
            extra = peak_extra_bytes(run(fn), lambda: setattr(logits, "grad", None)) - logit_bytes  # minus the grad
            out[f"{name}_mem"] = max(extra, 0) / logit_bytes
        else:
            out[f"{name}_s"] = median_time(run(fn), reps)
    if not memory:
        out["ratio"] = out["xdlm_s"] / out["masked_ce_s"]
    return out


def bench_sampler(shape, reps: int, k: float, memory: bool = False, num_steps: int = 32, probe_every: int = 4) -> dict:
    b, l, n = shape
    g = torch.Generator().manual_seed(0)
    space, sched = TokenSpace(n, k), get_schedule("linear")
    logits = torch.randn(shape, generator=g)
    x0 = torch.randint(0, n, (b, l), generator=g)
    logit_bytes = logits.numel() * logits.element_size()
    steps = sorted(set(range(0, num_steps, probe_every)) | {num_steps - 1})
    ours, theirs, mem_ours, mem_theirs = {}, {}, 0.0, 0.0
    for i in steps:
        t = 1.0 - i / num_steps
        s = 1.0 - (i + 1) / num_steps if i + 1 < num_steps else 0.0
        a_t, a_s = float(sched.alpha(torch.tensor(t))), 1.0 if s == 0 else float(sched.alpha(torch.tensor(s)))
        z_t = corrupt(x0, torch.full((b,), t), space, sched, generator=g)  # a state at time t
        mdlm_z = corrupt(x0, torch.full((b,), t), TokenSpace(n, 0.0), sched, generator=g)

        def xdlm_step(z_t=z_t, a_t=a_t, a_s=a_s):
            return posterior_step(logits, z_t, a_t, a_s, space, g)

        def mdlm_step(mdlm_z=mdlm_z, a_t=a_t, a_s=a_s):
            return mdlm_step_usual(logits, mdlm_z, a_t, a_s, n, g)

        if memory:
            mem_ours = max(mem_ours, peak_extra_bytes(xdlm_step) / logit_bytes)
            mem_theirs = max(mem_theirs, peak_extra_bytes(mdlm_step) / logit_bytes)
        else:
            ours[i], theirs[i] = median_time(xdlm_step, reps), median_time(mdlm_step, reps)
    if memory:
        return {"xdlm_mem": mem_ours, "mdlm_mem": mem_theirs}
    last = num_steps - 1
    mid = [i for i in steps if i != last]
    return {
        "mean_ratio": sum(ours[i] for i in mid) / sum(theirs[i] for i in mid),
        "last_ratio": ours[last] / theirs[last],
        "worst_mid_ratio": max(ours[i] / theirs[i] for i in mid),
        "xdlm_mean_s": statistics.mean(ours[i] for i in mid),
        "mdlm_mean_s": statistics.mean(theirs[i] for i in mid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shapes, a smoke run")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (after a warm-up)")
    parser.add_argument("--k", type=float, default=0.1, help="mixing ratio k of the XDLM side")
    parser.add_argument("--only", choices=["loss", "sampler"], default=None)
    parser.add_argument("--shape", choices=list(SHAPES), action="append", help="measure only these shapes")
    parser.add_argument("--_probe", choices=["loss", "sampler"], help=argparse.SUPPRESS)
    parser.add_argument("--_dims", type=int, nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._probe:  # child process of probe_memory: print one JSON line
        fn = bench_loss if args._probe == "loss" else bench_sampler
        print(json.dumps(fn(tuple(args._dims), 1, args.k, memory=True)))
        return
    shapes = QUICK_SHAPES if args.quick else {k: v for k, v in SHAPES.items() if not args.shape or k in args.shape}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32, k = {args.k}\n")
    if args.only != "sampler":
        print("| shape (B, L, N) | XDLM loss fwd+bwd | masked CE fwd+bwd | ratio (target <= 2.0) "
              "| XDLM extra mem / logits (target <= 0.25) | masked CE extra mem / logits |")
        print("|---|---|---|---|---|---|")
        for name, shape in shapes.items():
            r = bench_loss(shape, args.reps, args.k) | probe_memory("loss", shape, args.k)
            print(f"| {name} {shape} | {r['xdlm_s'] * 1e3:.1f} ms | {r['masked_ce_s'] * 1e3:.1f} ms | "
                  f"**{r['ratio']:.2f}** | **{r['xdlm_mem']:.3f}** | {r['masked_ce_mem']:.3f} |", flush=True)
        print()
    if args.only != "loss":
        print("| shape (B, L, N) | XDLM step (mean of 32) | MDLM step (mean) | ratio (target <= 0.5) "
              "| worst single step | last step ratio (target <= 1.0) | XDLM extra mem / logits (target <= 0.1) "
              "| MDLM extra mem / logits |")
        print("|---|---|---|---|---|---|---|---|")
        for name, shape in shapes.items():
            r = bench_sampler(shape, max(1, args.reps - 2), args.k) | probe_memory("sampler", shape, args.k)
            print(f"| {name} {shape} | {r['xdlm_mean_s'] * 1e3:.1f} ms | {r['mdlm_mean_s'] * 1e3:.1f} ms | "
                  f"**{r['mean_ratio']:.2f}** | {r['worst_mid_ratio']:.2f} | **{r['last_ratio']:.2f}** | "
                  f"**{r['xdlm_mem']:.3f}** | {r['mdlm_mem']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
