"""The k trade-off on the embedded digits data (the XDLM paper's Fig. 1, at laptop scale).

Trains one model per k in {0, 0.1, 0.5, 1} with the *same* budget (preset ``digits``, same seed,
steps and batch), then reports for each model

* understanding: validation NELBO in bits per token (Monte-Carlo over t, standard error), and
* generation: digits-FID (Fréchet distance on the frozen digits classifier's penultimate
  features, samples vs. the 359-image validation split) and classifier accuracy of
  class-conditional samples at 4, 8, 16 and 64 ancestral steps, without and with CFG.

Optionally a second, longer budget for k in {0, 0.1} (``--long-steps``), because the paper reports
a crossover (masked models lead early in training). Results go to ``OUT/results.json``,
``docs/k_tradeoff.md`` (table + verdict) and ``docs/k_tradeoff.png``.

CPU only, 2 cores; see docs/k_tradeoff.md for the measured wall time. Rerunning resumes: a model
whose final checkpoint exists is not retrained.

    python benchmarks/k_tradeoff_digits.py [--train-steps 400] [--batch-size 64] [--num 200] [--long-steps 0]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/k_tradeoff", help="run directory (one sub-folder per model)")
    p.add_argument("--ks", default="0,0.1,0.5,1", help="mixing ratios to train")
    p.add_argument("--train-steps", type=int, default=400, help="optimizer steps per model (same for every k)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch")
    p.add_argument("--long-steps", type=int, default=0, help="second budget for k in --long-ks (0 = skip)")
    p.add_argument("--long-ks", default="0,0.1")
    p.add_argument("--sample-steps", default="4,8,16,64", help="sampler step counts")
    p.add_argument("--cfg", type=float, default=2.0, help="guidance gamma of the 'with CFG' column (paper: 2.0)")
    p.add_argument("--num", type=int, default=200, help="samples per setting (balanced over the 10 classes)")
    p.add_argument("--num-t", type=int, default=4, help="draws of t for the validation NELBO")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--docs", default=str(ROOT / "docs"), help="where k_tradeoff.md / .png are written")
    p.add_argument("--report-only", action="store_true",
                   help="write the docs from OUT/results.json as it stands (no training or sampling)")
    return p.parse_args()


def train_model(k: float, steps: int, batch: int, seed: int, out: Path) -> tuple[Path, float]:
    """Train (or reuse) the digits preset with diffusion.k = k; returns (checkpoint dir, train seconds)."""
    from xdlm_vision.checkpoints import latest_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.training.trainer import train

    done = out / "train_seconds.json"
    ckpt = latest_checkpoint(out)
    if ckpt is not None and done.is_file() and json.loads(done.read_text())["steps"] == steps:
        return ckpt, float(json.loads(done.read_text())["seconds"])
    overrides = [
        f"diffusion.k={k}", f"training.steps={steps}", f"training.batch_size={batch}", f"training.seed={seed}",
        f"training.ckpt_every={steps}", "training.val_every=0", "training.sample_every=0",
        "training.tensorboard=false", f"optim.warmup_steps={min(100, steps // 10)}",
    ]
    t0 = time.time()
    result = train(load_config("digits", overrides), out, resume=ckpt is not None, progress=False)
    seconds = time.time() - t0
    done.write_text(json.dumps({"steps": steps, "seconds": seconds}))
    return result.checkpoint, seconds


def evaluate_model(ckpt: Path, args, sample_steps: list[int]) -> dict:
    from xdlm_vision.config import load_config
    from xdlm_vision.data.registry import build_data
    from xdlm_vision.evaluation.digits_metrics import digits_metrics, reference_digit_stats
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo
    from xdlm_vision.sampling import SamplingOptions, generate, load_for_sampling, parse_classes, sample_seeds

    sm = load_for_sampling(ckpt, ema=True, device="cpu", load_tokenizer=False)
    val = build_data(load_config("digits")).val  # the fixed 359-image validation split
    t0 = time.time()
    est = monte_carlo_nelbo(sm.model_fn, val, sm.spec, num_t=args.num_t, seed=args.seed, batch_size=512)
    ref = reference_digit_stats("val")
    labels = parse_classes(",".join(str(c) for c in range(10)), args.num, 10)
    seeds = sample_seeds(args.seed, args.num)
    rows = []
    for cfg in (0.0, args.cfg):
        for steps in sample_steps:
            tokens = generate(sm, labels, seeds, SamplingOptions(steps=steps, cfg=cfg), batch_size=args.num)
            m = digits_metrics(tokens, torch.tensor(labels), ref)
            rows.append({"steps": steps, "cfg": cfg, "digits_fid": m.digits_fid, "accuracy": m.accuracy})
            print(f"  k={sm.space.k:g} steps={steps:3d} cfg={cfg:g}: digits-FID {m.digits_fid:7.3f} "
                  f"accuracy {m.accuracy:.3f}", flush=True)
    return {"nelbo_bits": est.bits_per_token, "nelbo_stderr": est.stderr_bits, "samples": rows,
            "eval_seconds": time.time() - t0}


def lookup(res: dict, steps: int, cfg: float, key: str) -> float:
    return next(r[key] for r in res["samples"] if r["steps"] == steps and r["cfg"] == cfg)


def write_plot(results: dict, path: Path, sample_steps: list[int], cfg: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({r["budget"] for r in results.values()})
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for name, res in results.items():
        style = "-" if res["budget"] == budgets[0] else "--"
        for ax, g in zip(axes[:2], (0.0, cfg)):
            ax.plot(sample_steps, [lookup(res, s, g, "digits_fid") for s in sample_steps], style, marker="o", label=name)
    for ax, g in zip(axes[:2], (0.0, cfg)):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sample_steps, [str(s) for s in sample_steps])
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("digits-FID (lower is better)")
        ax.set_title(f"generation, CFG gamma = {g:g}")
        ax.legend(fontsize=8)
    names = list(results)
    axes[2].bar(range(len(names)), [results[n]["nelbo_bits"] for n in names],
                yerr=[2 * results[n]["nelbo_stderr"] for n in names], color="tab:gray")
    axes[2].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    axes[2].set_ylabel("validation NELBO (bits/token, lower is better)")
    axes[2].set_title("understanding (±2 s.e.)")
    lo = min(results[n]["nelbo_bits"] for n in names)
    axes[2].set_ylim(lo * 0.9, max(results[n]["nelbo_bits"] for n in names) * 1.03)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(results: dict, budget: int, cfg: float) -> list[str]:
    """Plain statements about the paper's two claims at one training budget."""
    r = {v["k"]: v for v in results.values() if v["budget"] == budget}
    lines = []
    if 0.0 in r:
        base = r[0.0]
        for k in sorted(r):
            if k == 0.0:
                continue
            for g in (0.0, cfg):
                a, b = lookup(r[k], 4, g, "digits_fid"), lookup(base, 4, g, "digits_fid")
                better = "better" if a < b else "worse"
                lines.append(f"- 4 steps, CFG {g:g}: k = {k:g} digits-FID {a:.2f} vs k = 0 {b:.2f} ({better}).")
        if 0.1 in r:
            d = r[0.1]["nelbo_bits"] - base["nelbo_bits"]
            se = math.hypot(r[0.1]["nelbo_stderr"], base["nelbo_stderr"])
            lines.append(f"- NELBO: k = 0.1 minus k = 0 = {d:+.4f} bits/token (s.e. of the difference {se:.4f}; "
                         f"relative {d / base['nelbo_bits']:+.1%}).")
    return lines


def write_markdown(results: dict, path: Path, args, sample_steps: list[int], floor: float, wall: float,
                   missing: list[str]) -> None:
    cols = " | ".join(f"{s} st." for s in sample_steps)
    lines = [
        "# The k trade-off on the embedded digits data",
        "",
        ("Generated by `python benchmarks/k_tradeoff_digits.py "
         f"--train-steps {args.train_steps} --num {args.num} --long-steps {args.long_steps}` "
         f"(CPU, 2 cores; whole study {wall / 60:.1f} min). Every model: preset `digits` (DiT-digits), "
         f"batch {args.batch_size}, seed {args.seed}, EMA weights; only `diffusion.k` and the step budget differ."),
        "",
        (f"* **NELBO**: validation split (359 images), bits per token, {args.num_t} independent draws of t, ± one "
         "standard error (`xdlm-vision eval nelbo`)."),
        (f"* **digits-FID / accuracy**: {args.num} class-conditional samples (balanced, seeds 0..{args.num - 1}), "
         "ancestral sampler, judged by the frozen digits classifier (`xdlm-vision eval digits`). digits-FID compares "
         f"penultimate features against the validation split; its floor (real train split vs validation) is "
         f"**{floor:.2f}**. CFG gamma = {args.cfg:g} in the XDLM convention (LlamaGen/DiT scale {1 + args.cfg:g})."),
        "",
        "![k trade-off](k_tradeoff.png)",
        "",
        *([f"**Not run yet:** {', '.join(missing)} (rerun the command: finished models are kept).", ""]
          if missing else []),
        f"## digits-FID (lower is better), without CFG | with CFG {args.cfg:g}",
        "",
        f"| model | train steps | train min | NELBO bits/token | {cols} | {cols} |",
        "|---|---|---|---|" + "---|" * (2 * len(sample_steps)),
    ]
    for name, res in results.items():
        fids = [f"{lookup(res, s, g, 'digits_fid'):.2f}" for g in (0.0, args.cfg) for s in sample_steps]
        lines.append(f"| {name} | {res['budget']} | {res['train_seconds'] / 60:.1f} | "
                     f"{res['nelbo_bits']:.4f} ± {res['nelbo_stderr']:.4f} | " + " | ".join(fids) + " |")
    lines += ["", f"## Classifier accuracy (higher is better), without CFG | with CFG {args.cfg:g}", "",
              f"| model | {cols} | {cols} |", "|---|" + "---|" * (2 * len(sample_steps))]
    for name, res in results.items():
        accs = [f"{lookup(res, s, g, 'accuracy'):.3f}" for g in (0.0, args.cfg) for s in sample_steps]
        lines.append(f"| {name} | " + " | ".join(accs) + " |")
    lines += ["", "## Do the paper's claims hold here?", ""]
    for budget in sorted({r["budget"] for r in results.values()}):
        lines.append(f"Budget {budget} steps:")
        lines.append("")
        lines += verdict(results, budget, args.cfg)
        lines.append("")
    lines += ["<!-- VERDICT -->", ""]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    ks = [float(v) for v in args.ks.split(",")]
    sample_steps = [int(v) for v in args.sample_steps.split(",")]
    plan = [(k, args.train_steps) for k in ks]
    if args.long_steps > 0:
        plan += [(float(k), args.long_steps) for k in args.long_ks.split(",")]
    t_start = time.time()
    results = {}
    res_path = out / "results.json"
    if res_path.is_file():
        results = json.loads(res_path.read_text())
    from xdlm_vision.evaluation.digits_metrics import digits_fid_floor

    floor = digits_fid_floor()
    for k, steps in plan:
        name = f"k={k:g}, {steps} steps"
        if name in results or args.report_only:
            continue
        print(f"== {name}: training", flush=True)
        ckpt, train_s = train_model(k, steps, args.batch_size, args.seed, out / f"k{k:g}_s{steps}")
        print(f"   trained in {train_s / 60:.1f} min; evaluating", flush=True)
        res = evaluate_model(ckpt, args, sample_steps)
        results[name] = {"k": k, "budget": steps, "train_seconds": train_s, **res}
        res_path.parent.mkdir(parents=True, exist_ok=True)
        res_path.write_text(json.dumps(results, indent=2))
        print(f"   NELBO {res['nelbo_bits']:.4f} ± {res['nelbo_stderr']:.4f} bits/token", flush=True)
    wall = time.time() - t_start
    docs = Path(args.docs)
    write_plot(results, docs / "k_tradeoff.png", sample_steps, args.cfg)
    total = sum(r["train_seconds"] + r["eval_seconds"] for r in results.values())
    missing = [f"k={k:g}, {steps} steps" for k, steps in plan if f"k={k:g}, {steps} steps" not in results]
    write_markdown(results, docs / "k_tradeoff.md", args, sample_steps, floor, max(wall, total), missing)
    print(f"wrote {docs / 'k_tradeoff.md'} and {docs / 'k_tradeoff.png'} ({max(wall, total) / 60:.1f} min)")


if __name__ == "__main__":
    main()
