"""End to end: what XDLM (k = 0.1) costs against MDLM (k = 0) in a real training step and sampler.

    python benchmarks/bench_e2e.py            # DiT-S and the digits preset, idle then loaded (~15 min, 2 cores)
    python benchmarks/bench_e2e.py --quick    # a tiny DiT, 1 round: a smoke run (seconds)

Setups (CPU, fp32, the project's own DiT from ``xdlm_vision.backbones``):

* **DiT-S**: depth 12, width 384, 6 heads (about 45 M parameters) over 16 x 16 = 256 tokens,
  N = 16384 (a VQ-16 codebook), 1000 classes, batch 8.
* **digits**: the ``digits`` preset (xdlm_vision/configs/digits.yaml): its DiT size, 8 x 8 pixel
  tokens, N = 17, 10 classes, its batch size and optimizer settings.

Figures, each k = 0.1 against k = 0 on identical models (same initial weights):

* **train step**: one full optimizer step: t and z_t drawn, forward, ``core.nelbo``, backward,
  gradient clipping, AdamW step. Ratio = time(k = 0.1) / time(k = 0); target <= 1.10.
* **sampling**: images per second of the ancestral sampler, 8 steps, classifier-free guidance
  (gamma = 1.0, so two model calls per step), a batch of 8 (DiT-S) or 64 (digits) images; tokens
  only (decoding is the same for both). Ratio = images/s(k = 0.1) / images/s(k = 0); target >= 0.90.

The two k alternate call by call (order rotating), ``--rounds`` times (train steps after a
warm-up call; sampling without one, a DiT-S sampling run takes minutes on 2 cores); each
figure is min / median / max over the rounds, ratios per round. Everything runs idle, then under
the background load of benchmarks/common.py (one other two-thread torch process).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import sys

from common import ROOT, background_load, interleaved, machine_line, max_over_min, ratios, spread

# isort: split
# torch only after common: the thread policy must be in place before torch loads
import torch
import yaml

from xdlm_vision.backbones import build_backbone, count_parameters
from xdlm_vision.core import TokenSpace, ancestral_sampler, corrupt, get_schedule, nelbo, sample_times

CFG_GAMMA = 1.0
SAMPLE_STEPS = 8


def _digits_preset() -> dict:
    cfg = yaml.safe_load((ROOT / "xdlm_vision" / "configs" / "digits.yaml").read_text())
    return {
        "model": {"size": cfg["model"]["size"]},
        "num_tokens": cfg["tokenizer"]["levels"],
        "grid": (8, 8),
        "classes": 10,
        "batch": cfg["training"]["batch_size"],
        "sample_batch": 64,
        "lr": cfg["optim"]["lr"],
        "betas": tuple(cfg["optim"]["betas"]),
        "weight_decay": cfg["optim"]["weight_decay"],
        "grad_clip": cfg["optim"]["grad_clip"],
    }


SETUPS = {
    "DiT-S, 256 tokens, N = 16384": lambda: {
        "model": {"size": "DiT-S"}, "num_tokens": 16384, "grid": (16, 16), "classes": 1000,
        "batch": 8, "sample_batch": 8, "lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "grad_clip": 1.0,
    },
    "digits preset": _digits_preset,
}
QUICK_SETUPS = {
    "quick (DiT-tiny, 64 tokens, N = 512)": lambda: {
        "model": {"size": "DiT-tiny"}, "num_tokens": 512, "grid": (8, 8), "classes": 10,
        "batch": 4, "sample_batch": 4, "lr": 1e-4, "betas": (0.9, 0.99), "weight_decay": 0.0, "grad_clip": 1.0,
    },
}


def build(setup: dict, k_values=(0.1, 0.0)):
    torch.manual_seed(0)
    base = build_backbone("dit", num_tokens=setup["num_tokens"], grid_shape=setup["grid"],
                          num_classes=setup["classes"], **setup["model"])
    models = {k: copy.deepcopy(base) for k in k_values}
    return base, models


def train_fns(setup: dict) -> tuple[dict, int]:
    base, models = build(setup)
    sched = get_schedule("linear")
    n, b = setup["num_tokens"], setup["batch"]
    seq = setup["grid"][0] * setup["grid"][1]
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, n, (b, seq), generator=g)  # (B, L) a fixed batch: data loading is not timed
    labels = torch.randint(0, setup["classes"], (b,), generator=g)
    fns = {}
    for k, model in models.items():
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=setup["lr"], betas=setup["betas"],
                                weight_decay=setup["weight_decay"])
        space = TokenSpace(n, k)
        gen = torch.Generator().manual_seed(2)

        def step(model=model, opt=opt, space=space, gen=gen):
            t = sample_times(b, generator=gen)  # (B,)
            z_t = corrupt(x0, t, space, sched, generator=gen)  # (B, L)
            logits = model(z_t, labels)  # (B, L, N)
            loss = nelbo(logits, x0, z_t, t, space, sched).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), setup["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)

        fns[f"k={k}"] = step
    return fns, count_parameters(base)


def sample_fns(setup: dict) -> dict:
    _, models = build(setup)
    n, nb = setup["num_tokens"], setup["sample_batch"]
    seq = setup["grid"][0] * setup["grid"][1]
    labels = torch.arange(nb) % setup["classes"]
    fns = {}
    for k, model in models.items():
        model.eval()
        space = TokenSpace(n, k)

        @torch.inference_mode()
        def run(model=model, space=space):
            steps = ancestral_sampler(
                lambda z, c, t=None, model=model: model(z, c), num_samples=nb, seq_len=seq, space=space,
                num_steps=SAMPLE_STEPS, class_labels=labels, cfg=CFG_GAMMA, null_class=setup["classes"],
                generator=torch.Generator().manual_seed(3), track_x0=False,
            )
            for _ in steps:
                pass

        fns[f"k={k}"] = run
    return fns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny DiT, 1 round: a smoke run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the train step (default 3)")
    parser.add_argument("--sample-rounds", type=int, default=2, help="interleaved rounds of sampling (default 2)")
    parser.add_argument("--setup", choices=list(SETUPS), action="append", help="measure only these setups")
    parser.add_argument("--no-load", action="store_true", help="skip the run under the background load")
    args = parser.parse_args()
    setups = QUICK_SETUPS if args.quick else {k: v for k, v in SETUPS.items() if not args.setup or k in args.setup}
    rounds, s_rounds = (1, 1) if args.quick else (args.rounds, args.sample_rounds)
    print(f"command: {' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}")
    print(f"machine: {machine_line()}")
    print(f"train rounds {rounds}, sampling rounds {s_rounds}; sampling: {SAMPLE_STEPS} steps, CFG gamma {CFG_GAMMA}\n",
          flush=True)
    conditions = [("idle", False)] if args.no_load else [("idle", False), ("loaded", True)]
    for label, loaded in conditions:
        with background_load() if loaded else contextlib.nullcontext():
            print(f"### {label}: {machine_line()}\n")
            print("| setup | train step k=0.1, s | train step k=0, s | ratio (target ≤ 1.10) | k=0.1 max/min "
                  "| sampling k=0.1, img/s | sampling k=0, img/s | ratio (target ≥ 0.90) | k=0.1 max/min |")
            print("|---|---|---|---|---|---|---|---|---|", flush=True)
            for name, make in setups.items():
                setup = make()
                train, params = train_fns(setup)
                tt = interleaved(train, rounds)
                del train
                samp = interleaved(sample_fns(setup), s_rounds, warmup=0)  # the train steps warmed up the model
                nb = setup["sample_batch"]
                ips = {key: [nb / s for s in v] for key, v in samp.items()}
                print(f"| {name}, {params / 1e6:.1f} M params, batch {setup['batch']} | {spread(tt['k=0.1'])} | "
                      f"{spread(tt['k=0.0'])} | **{spread(ratios(tt['k=0.1'], tt['k=0.0']))}** | "
                      f"{max_over_min(tt['k=0.1']):.2f} | {spread(ips['k=0.1'])} | {spread(ips['k=0.0'])} | "
                      f"**{spread(ratios(ips['k=0.1'], ips['k=0.0']))}** | {max_over_min(samp['k=0.1']):.2f} |",
                      flush=True)
            print()


if __name__ == "__main__":
    main()
