"""Which thread policy holds up on a shared CPU: OpenMP wait policy and thread count, measured.

    python benchmarks/bench_threads.py           # ~3 minutes on 2 cores
    python benchmarks/bench_threads.py --quick   # smaller work, 1 round

For each policy, a fresh child process (the wait policy is read once, when torch's OpenMP
runtime loads) times, interleaved over ``--rounds`` rounds:

* ``train``: one training step of the digits preset's DiT (batch 64, 8 x 8 tokens, N = 17,
  k = 0.1): forward, ``core.nelbo``, backward, AdamW;
* ``ce``: plain masked cross-entropy forward + backward at (8, 256, 16384);
* ``nelbo``: ``core.nelbo`` forward + backward at (8, 256, 16384), k = 0.1;

idle, then under the background load of benchmarks/common.py. Policies: OpenMP's default
(active) wait with all cores, ``OMP_WAIT_POLICY=PASSIVE`` with all cores (what ``xdlm-vision``
commands use), and one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

from common import ROOT, background_load, machine_line, spread

POLICIES = {
    "active, all cores": {"OMP_WAIT_POLICY": "ACTIVE"},
    "passive, all cores (default)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread": {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"},
}


def child(rounds: int, quick: bool) -> dict:
    import torch

    from xdlm_vision.backbones import build_backbone
    from xdlm_vision.core import TokenSpace, corrupt, get_schedule, masked_cross_entropy, nelbo, sample_times

    torch.manual_seed(0)
    sched = get_schedule("linear")
    model = build_backbone("dit", num_tokens=17, grid_shape=(8, 8), num_classes=10, size="DiT-digits")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    space17 = TokenSpace(17, 0.1)
    x_digits = torch.randint(0, 17, (64, 64))
    y_digits = torch.randint(0, 10, (64,))

    def train():
        t = sample_times(64)
        z = corrupt(x_digits, t, space17, sched)
        nelbo(model(z, y_digits), x_digits, z, t, space17, sched).mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    b, l, n = (2, 64, 4096) if quick else (8, 256, 16384)
    logits = torch.randn(b, l, n).requires_grad_()
    x0 = torch.randint(0, n, (b, l))
    t = torch.rand(b) * 0.98 + 0.01
    space, mdlm = TokenSpace(n, 0.1), TokenSpace(n, 0.0)
    z_t, z_m = corrupt(x0, t, space, sched), corrupt(x0, t, mdlm, sched)

    def ce():
        logits.grad = None
        masked_cross_entropy(logits, x0, z_m, t, mdlm, sched).mean().backward()

    def ours():
        logits.grad = None
        nelbo(logits, x0, z_t, t, space, sched).mean().backward()

    fns = {"train": train, "ce": ce, "nelbo": ours}
    for fn in fns.values():
        fn()
    out = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    out["threads"] = torch.get_num_threads()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    if args._child:
        print(json.dumps(child(rounds, args.quick)))
        return
    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"machine: {machine_line()}\n")
    print("| condition | policy | threads | digits train step, ms | masked CE fwd+bwd, ms | nelbo fwd+bwd, ms |")
    print("|---|---|---|---|---|---|", flush=True)
    for label, loaded in (("idle", False), ("loaded", True)):
        with background_load() if loaded else contextlib.nullcontext():
            for name, env_extra in POLICIES.items():
                env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
                env.update(env_extra, PYTHONPATH=str(ROOT))
                cmd = [sys.executable, __file__, "--_child", "--rounds", str(rounds)] + (["--quick"] if args.quick else [])
                res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
                if res.returncode != 0:
                    raise RuntimeError(res.stderr[-2000:])
                r = json.loads(res.stdout.strip().splitlines()[-1])
                ms = {k: [v * 1e3 for v in r[k]] for k in ("train", "ce", "nelbo")}
                print(f"| {label} | {name} | {r['threads']} | {spread(ms['train'])} | {spread(ms['ce'])} | "
                      f"{spread(ms['nelbo'])} |", flush=True)


if __name__ == "__main__":
    main()
