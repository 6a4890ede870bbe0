"""The k trade-off study for any supported preset, with error bars (issue 15; docs/k_tradeoff.md).

For every k in --ks and every training seed (--seeds N, same budget for all), one model of the
preset is trained with only ``diffusion.k`` and ``training.seed`` changed. Each model gets

* its validation NELBO in bits per token with a standard error (Monte-Carlo over t), and
* one *cell* per (sampler, CFG gamma, sampler steps): --num class-balanced samples (the same seeds
  for every model and cell), scored by the preset's frozen classifier: agreement with the
  requested class, and the classifier-feature FID against the validation split with a bootstrap
  interval (samples resampled with replacement).

The real-vs-real floors are the same FID of real images against the validation split: the digits
training split; for fashion, --num class-balanced training images and their tokenizer
reconstructions (the ceiling of any model over those tokens).

Resumable at two levels: a model whose ``model.json`` exists is never retrained or re-scored for
NELBO, a cell whose ``cells/*.json`` exists is never recomputed (an interrupted training run
resumes from its last checkpoint). ``--budget-minutes M`` starts no new unit of work (a training
run, a NELBO estimate, a cell) after M minutes; ``--report-only`` starts none at all. Either way
the report (``OUT/PRESET/report.md``, ``summary.json``, ``fid_vs_steps.png``) is written from
what is on disk and lists what is missing.

    python benchmarks/k_tradeoff.py digits [--seeds 3] [--train-steps 800] [--num 1000]
        [--budget-minutes 120] [--report-only] [--out runs/k_tradeoff]
    python benchmarks/k_tradeoff.py fashion --set tokenizer.path=runs/fashion/tokenizer/tokenizer.safetensors ...

Presets are a small table (``PRESETS``: config name, the "with CFG" gamma, the judge). Every
fashion model trains over the one tokenizer given with ``--set tokenizer.path=...``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------------------------------
# what differs between presets


@dataclass(frozen=True)
class Judge:
    """The preset's frozen classifier and its real-image references.

    classify: token grids (M, h, w) -> (penultimate features (M, D) float64, predicted labels (M,));
    reference: features of the real validation split (what every FID is measured against);
    floors: num -> {name: features of real-side images} scored like samples (e.g. real training
    images; for a VQ preset also their tokenizer reconstructions, the ceiling of any model).
    """

    classify: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]]
    reference: Callable[[], np.ndarray]
    floors: Callable[[int], dict[str, np.ndarray]]


@dataclass(frozen=True)
class PresetStudy:
    config: str  # preset name for load_config
    best_cfg: float  # the "with CFG" gamma (XDLM convention)
    judge: Callable[..., Judge]  # (resolved Config) -> Judge, built lazily (loads the classifier)
    note: str  # where the numbers come from


def _digits_judge(cfg) -> Judge:
    from xdlm_vision.data.digits import load_digits_split
    from xdlm_vision.evaluation.digits_classifier import classify_digits

    def classify(tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = classify_digits(tokens)
        return out.features.double().cpu().numpy(), out.labels.cpu().numpy()

    return Judge(classify, lambda: classify(load_digits_split("val").tokens)[0],
                 lambda num: {"real train split": classify(load_digits_split("train").tokens)[0]})


def _fashion_judge(cfg) -> Judge:
    """Samples are decoded through the run's VQ tokenizer and scored by the packaged fashion CNN."""
    from xdlm_vision.data.fashion import load_fashion_split, to_signed_padded
    from xdlm_vision.data.fashion_entry import fashion_tokenizer_spec
    from xdlm_vision.evaluation.fashion_classifier import classify_fashion
    from xdlm_vision.evaluation.fashion_metrics import balanced_train_subset
    from xdlm_vision.tokenizers.factory import load_tokenizer

    if not cfg.tokenizer.path:
        raise SystemExit("error: the fashion study trains every model over one tokenizer: pass "
                         "--set tokenizer.path=runs/fashion/tokenizer/tokenizer.safetensors "
                         "(from `xdlm-vision train fashion` or `train-tokenizer fashion`)")
    tok = load_tokenizer(fashion_tokenizer_spec(cfg))

    def features(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        out = classify_fashion(images)
        return out.features.double().cpu().numpy(), out.labels.cpu().numpy()

    def classify(tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            images = torch.cat([tok.decode(chunk) for chunk in tokens.split(500)])  # (M, 1, 32, 32)
        return features(images)

    def floors(num: int) -> dict[str, np.ndarray]:
        real = to_signed_padded(balanced_train_subset(num, cfg.data.path)[0])  # (num, 1, 32, 32)
        with torch.no_grad():
            recon = torch.cat([tok.decode(tok.encode(chunk)) for chunk in real.split(500)])
        return {"real train images": features(real)[0], "their tokenizer reconstructions": features(recon)[0]}

    return Judge(classify, lambda: features(to_signed_padded(load_fashion_split("test", cfg.data.path).images))[0],
                 floors)


PRESETS: dict[str, PresetStudy] = {
    "digits": PresetStudy("digits", 2.0, _digits_judge,
                          "CFG 2 is the paper's ImageNet setting and the best of the first digits study"),
    "fashion": PresetStudy("fashion", 1.0, _fashion_judge,
                           "CFG 1 is the fashion preset's sampling default (docs/fashion.md)"),
}
NOT_YET: dict[str, str] = {}  # preset -> what it is waiting for


# ---------------------------------------------------------------------------------------------
# the plan: models and cells


def model_key(k: float, seed: int) -> str:
    return f"k{k:g}_seed{seed}"


def cell_key(sampler: str, cfg: float, steps: int) -> str:
    return f"{sampler}_cfg{cfg:g}_steps{steps}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("preset", help=f"one of {sorted(PRESETS)} (not yet: {sorted(NOT_YET)})")
    p.add_argument("--out", default="runs/k_tradeoff", help="study directory (OUT/PRESET/<model>/...)")
    p.add_argument("--ks", default="0,0.1,0.5,1", help="mixing ratios (default 0,0.1,0.5,1)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per k, 0..N-1 (default 3)")
    p.add_argument("--train-steps", type=int, default=800, help="optimizer steps per model, same for every k")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="further config overrides for every model (e.g. training.batch_size=64)")
    p.add_argument("--num", type=int, default=1000, help="class-balanced samples per cell (default 1000)")
    p.add_argument("--sample-steps", default="2,4,8,16,64", help="sampler step counts")
    p.add_argument("--cfg", type=float, default=None, help="the 'with CFG' gamma (default: the preset's best)")
    p.add_argument("--samplers", default="ancestral,confidence")
    p.add_argument("--num-t", type=int, default=8, help="draws of t for the validation NELBO")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples of the FID interval")
    p.add_argument("--batch-size", type=int, default=500, help="images per sampling forward pass")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="start no new training, NELBO or cell after this many minutes; the report lists the rest")
    p.add_argument("--report-only", action="store_true", help="compute nothing; report what is on disk")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, for the report
    if args.preset not in PRESETS:
        why = NOT_YET.get(args.preset, f"unknown preset; supported: {sorted(PRESETS)}")
        p.error(f"preset {args.preset!r} is not supported by the k study yet: {why}")
    for name, low in (("seeds", 1), ("train_steps", 1), ("num", 2), ("num_t", 1), ("bootstrap", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}")
    args.ks = [float(v) for v in args.ks.split(",")]
    args.sample_steps = [int(v) for v in args.sample_steps.split(",")]
    args.samplers = [s for s in args.samplers.split(",") if s]
    study = PRESETS[args.preset]
    args.cfgs = [0.0, float(study.best_cfg if args.cfg is None else args.cfg)]
    return args


def plan(args) -> tuple[list[tuple[float, int]], list[tuple[str, float, int]]]:
    """(models (k, seed) seed-major, cells (sampler, cfg, steps))."""
    models = [(k, s) for s in range(args.seeds) for k in args.ks]
    cells = [(sm, g, t) for sm in args.samplers for g in args.cfgs for t in args.sample_steps]
    return models, cells


class Budget:
    def __init__(self, minutes: float | None, report_only: bool) -> None:
        self.t0, self.minutes, self.report_only = time.time(), minutes, report_only

    def allows(self) -> bool:
        if self.report_only:
            return False
        return self.minutes is None or (time.time() - self.t0) / 60 < self.minutes


def write_json(path: Path, obj) -> None:
    from xdlm_vision.io import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, obj)


# ---------------------------------------------------------------------------------------------
# work units


def train_and_nelbo(args, k: float, seed: int, run: Path, budget: Budget) -> dict | None:
    """model.json of one model (train + NELBO), from disk if done; None if the budget ran out."""
    from xdlm_vision.checkpoints import latest_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.data.registry import build_data
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo
    from xdlm_vision.sampling import load_for_sampling
    from xdlm_vision.training.trainer import train

    done = run / "model.json"
    if done.is_file():
        return json.loads(done.read_text())
    overrides = [*args.set, f"diffusion.k={k}", f"training.seed={seed}", f"training.steps={args.train_steps}",
                 f"training.ckpt_every={max(1, args.train_steps // 4)}", "training.val_every=0",
                 "training.sample_every=0", "training.tensorboard=false", "training.keep_checkpoints=1"]
    cfg = load_config(PRESETS[args.preset].config, overrides)
    trained = run / "trained.json"
    if not trained.is_file():
        if not budget.allows():
            return None
        ckpt = latest_checkpoint(run)
        print(f"== {run.name}: training {args.train_steps} steps" + (f" (resuming {ckpt.name})" if ckpt else ""),
              flush=True)
        t0 = time.time()
        train(cfg, run, resume=ckpt is not None, progress=False)
        write_json(trained, {"seconds": time.time() - t0, "steps": args.train_steps})
    if not budget.allows():
        return None
    t0 = time.time()
    lm = load_for_sampling(latest_checkpoint(run), ema=True, device="cpu", load_tokenizer=False)
    est = monte_carlo_nelbo(lm.model_fn, build_data(cfg).val, lm.spec, num_t=args.num_t, seed=0, batch_size=512,
                             max_examples=cfg.data.max_val_samples)
    record = {"k": k, "seed": seed, "train_steps": args.train_steps,
              "train_seconds": json.loads(trained.read_text())["seconds"], "nelbo_bits": est.bits_per_token,
              "nelbo_stderr": est.stderr_bits, "nelbo_seconds": time.time() - t0}
    write_json(done, record)
    print(f"   {run.name}: NELBO {est.bits_per_token:.4f} ± {est.stderr_bits:.4f} bits/token", flush=True)
    return record


def bootstrap_fid(features: np.ndarray, ref, reps: int, seed: int = 0) -> tuple[float, float]:
    """A 95 % interval for the FID from ``reps`` resamples (with replacement) of ``features``.

    Resampling repeats points, which shifts the resampled FIDs away from the estimate F (up or down,
    depending on the sample size and the feature dimension), so neither the percentile interval nor
    the basic interval [2F - q97.5, 2F - q2.5] reliably contains F. The interval reported is the
    spread of the resampled values around their median, placed around F:
    [F - (median - q2.5), F + (q97.5 - median)] (clipped at 0): the sampling variability, no bias
    correction.
    """
    from xdlm_vision.evaluation.frechet import frechet_distance_stats, gaussian_stats

    rng = np.random.default_rng(seed)
    n = features.shape[0]
    point = frechet_distance_stats(gaussian_stats(features), ref)
    fids = [frechet_distance_stats(gaussian_stats(features[rng.integers(0, n, n)]), ref) for _ in range(reps)]
    q_lo, median, q_hi = np.quantile(fids, [0.025, 0.5, 0.975])
    return max(0.0, float(point - (median - q_lo))), float(point + (q_hi - median))


def score(judge: Judge, tokens: torch.Tensor, labels: np.ndarray, ref, reps: int) -> dict:
    from xdlm_vision.evaluation.frechet import frechet_distance_stats, gaussian_stats

    feats, pred = judge.classify(tokens)
    lo, hi = bootstrap_fid(feats, ref, reps)
    return {"fid": frechet_distance_stats(gaussian_stats(feats), ref), "fid_lo": lo, "fid_hi": hi,
            "agreement": float((pred == labels).mean()), "num": len(labels)}


def run_cell(args, lm, judge: Judge, ref, cell: tuple[str, float, int], path: Path) -> dict:
    from xdlm_vision.sampling import SamplingOptions, generate, sample_seeds

    sampler, cfg, steps = cell
    t0 = time.time()
    labels = [i % lm.num_classes for i in range(args.num)]  # class-balanced
    tokens = generate(lm, labels, sample_seeds(0, args.num), SamplingOptions(steps=steps, cfg=cfg, sampler=sampler),
                      batch_size=args.batch_size)
    res = {"sampler": sampler, "cfg": cfg, "steps": steps,
           **score(judge, tokens, np.asarray(labels), ref, args.bootstrap), "seconds": time.time() - t0}
    write_json(path, res)
    print(f"   {path.parent.parent.name} {path.stem}: FID {res['fid']:.3f} [{res['fid_lo']:.3f}, {res['fid_hi']:.3f}] "
          f"agreement {res['agreement']:.3f}", flush=True)
    return res


def real_floor(args, judge: Judge, ref, root: Path, budget: Budget) -> dict | None:
    """FID (bootstrap interval) and size of each of the judge's real-side floors vs the validation split."""
    from xdlm_vision.evaluation.frechet import frechet_distance_stats, gaussian_stats

    path = root / "floor.json"
    if path.is_file():
        return json.loads(path.read_text())
    if not budget.allows():
        return None
    res = {}
    for name, feats in judge.floors(args.num).items():
        lo, hi = bootstrap_fid(feats, ref, args.bootstrap)
        res[name] = {"fid": frechet_distance_stats(gaussian_stats(feats), ref), "fid_lo": lo, "fid_hi": hi,
                     "num": int(feats.shape[0])}
    write_json(path, res)
    return res


# ---------------------------------------------------------------------------------------------
# report


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (nan error for one seed)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")


def summarise(args, models: dict, cells: dict) -> dict:
    """Per k: NELBO over seeds; per (k, sampler, cfg, steps): FID and agreement over seeds."""
    out = {"nelbo": {}, "cells": []}
    for k in args.ks:
        recs = [models[(k, s)] for s in range(args.seeds) if (k, s) in models]
        if recs:
            m, se = mean_se([r["nelbo_bits"] for r in recs])
            within = math.sqrt(sum(r["nelbo_stderr"] ** 2 for r in recs)) / len(recs)  # Monte-Carlo s.e. of the mean
            out["nelbo"][f"{k:g}"] = {"mean": m, "se_seeds": se, "se_mc": within, "seeds": len(recs)}
    _, cell_plan = plan(args)
    for k in args.ks:
        for sampler, cfg, steps in cell_plan:
            got = [cells[(k, s, cell_key(sampler, cfg, steps))] for s in range(args.seeds)
                   if (k, s, cell_key(sampler, cfg, steps)) in cells]
            if not got:
                continue
            fid, fid_se = mean_se([c["fid"] for c in got])
            agr, agr_se = mean_se([c["agreement"] for c in got])
            out["cells"].append({"k": k, "sampler": sampler, "cfg": cfg, "steps": steps, "seeds": len(got),
                                 "fid": fid, "fid_se": fid_se, "fid_lo": min(c["fid_lo"] for c in got),
                                 "fid_hi": max(c["fid_hi"] for c in got), "agreement": agr, "agreement_se": agr_se})
    out["paired"] = paired_differences(args, models, cells, cell_plan)
    return out


def paired_differences(args, models: dict, cells: dict, cell_plan: list) -> list[dict]:
    """Each k minus k = 0 for the same training seed (seeds where both exist): NELBO, FID and agreement,
    mean ± s.e. over those seeds, and how many seeds favour k (lower NELBO/FID). Pairing by seed
    removes what the seeds share (data order, initialisation), so these errors are the ones a
    verdict "k beats MDLM" should rest on. Empty when k = 0 is not part of the study."""
    if 0 not in args.ks:
        return []
    rows = []
    for k in (k for k in args.ks if k != 0):
        seeds = [s for s in range(args.seeds) if (k, s) in models and (0, s) in models]
        if seeds:
            d = [models[(k, s)]["nelbo_bits"] - models[(0, s)]["nelbo_bits"] for s in seeds]
            m, se = mean_se(d)
            rows.append({"k": k, "what": "nelbo", "seeds": len(d), "delta": m, "delta_se": se,
                         "favour_k": sum(x < 0 for x in d)})
        for sampler, cfg, steps in cell_plan:
            key = cell_key(sampler, cfg, steps)
            both = [(cells[(k, s, key)], cells[(0, s, key)]) for s in range(args.seeds)
                    if (k, s, key) in cells and (0, s, key) in cells]
            if not both:
                continue
            d_fid = [a["fid"] - b["fid"] for a, b in both]
            d_agr = [a["agreement"] - b["agreement"] for a, b in both]
            (m, se), (ma, sea) = mean_se(d_fid), mean_se(d_agr)
            rows.append({"k": k, "what": "cell", "sampler": sampler, "cfg": cfg, "steps": steps, "seeds": len(both),
                         "delta": m, "delta_se": se, "favour_k": sum(x < 0 for x in d_fid),
                         "delta_agreement": ma, "delta_agreement_se": sea})
    return rows


def _fmt(value: float, err: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if math.isnan(err) else f"{value:.{digits}f} ± {err:.{digits}f}"


def floor_sentence(floor: dict | None) -> str:
    if not floor:
        return "Real-vs-real floor: not computed."
    parts = [f"{name} ({f['num']}): **{f['fid']:.2f}** [{f['fid_lo']:.2f}, {f['fid_hi']:.2f}]" for name, f in floor.items()]
    return "Real-vs-real floors (FID against the validation split): " + "; ".join(parts) + "."


def write_plot(args, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one row per sampler, one column per CFG, one y scale for all: panels compare at a glance;
    # error bars: standard error over training seeds, or the bootstrap interval of a lone seed
    rows, cols = len(args.samplers), len(args.cfgs)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False, sharey=True)
    ticks = sorted(args.sample_steps)
    for (r, sampler), (c, cfg) in itertools.product(enumerate(args.samplers), enumerate(args.cfgs)):
        ax = axes[r][c]
        for k in args.ks:
            rows_k = sorted((x for x in summary["cells"] if (x["k"], x["sampler"], x["cfg"]) == (k, sampler, cfg)),
                            key=lambda x: x["steps"])
            if rows_k:
                # s.e. over seeds; with one seed there is none, so the model's bootstrap interval
                err = [[x["fid_se"] if x["seeds"] > 1 else x["fid"] - x["fid_lo"] for x in rows_k],
                       [x["fid_se"] if x["seeds"] > 1 else x["fid_hi"] - x["fid"] for x in rows_k]]
                ax.errorbar([x["steps"] for x in rows_k], [x["fid"] for x in rows_k], yerr=err, marker="o",
                            capsize=3, label=f"k = {k:g}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.set_xlabel("sampler steps")
        if c == 0:
            ax.set_ylabel("classifier-feature FID (lower is better)")
        ax.set_title(f"{sampler}, CFG γ = {cfg:g}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def wide_table(args, summary: dict) -> list[str]:
    """One row per (sampler, CFG, steps), one column per k: FID ± s.e. over seeds and the agreement."""
    by = {(c["sampler"], c["cfg"], c["steps"], c["k"]): c for c in summary["cells"]}
    keys = sorted({(c["sampler"], c["cfg"], c["steps"]) for c in summary["cells"]},
                  key=lambda t: (args.samplers.index(t[0]), t[1], t[2]))
    if not keys:
        return []
    lines = ["", "## FID (agreement) by k", "",
             "| sampler | CFG | steps | " + " | ".join(f"k = {k:g}" for k in args.ks) + " |",
             "|---|---|---|" + "---|" * len(args.ks)]
    for sampler, cfg, steps in keys:
        cols = []
        for k in args.ks:
            c = by.get((sampler, cfg, steps, k))
            cols.append("" if c is None else f"{_fmt(c['fid'], c['fid_se'])} ({c['agreement']:.2f})")
        lines.append(f"| {sampler} | {cfg:g} | {steps} | " + " | ".join(cols) + " |")
    return lines


def write_report(args, root: Path, models: dict, cells: dict, floor: dict | None, missing: list[str],
                 wall: float) -> Path:
    summary = summarise(args, models, cells)
    write_json(root / "summary.json", {"summary": summary, "floor": floor, "missing": missing})
    plotted = False
    if summary["cells"]:
        try:
            write_plot(args, summary, root / "fid_vs_steps.png")
            plotted = True
        except ImportError:  # matplotlib is optional: the tables carry every number
            print("matplotlib is not installed: no fid_vs_steps.png", flush=True)
    spent = sum(m["train_seconds"] + m["nelbo_seconds"] for m in models.values()) + sum(
        c["seconds"] for c in cells.values())
    lines = [f"# k study: {args.preset}", "",
             (f"`python benchmarks/k_tradeoff.py {' '.join(args.argv)}` — ks {', '.join(f'{k:g}' for k in args.ks)}; {args.seeds} training seed(s) per k; "
             f"{args.num} class-balanced samples per cell; compute on disk {spent / 60:.1f} min (this call "
             f"{wall / 60:.1f} min)."), "",
             "FID = Fréchet distance of the preset classifier's features, samples vs the validation split; "
             "± = standard error over training seeds; [lo, hi] = widest 95 % bootstrap interval of one model (resampled spread around the estimate). "
             + floor_sentence(floor), ""]
    if missing:
        lines += [f"**Missing ({len(missing)}):** " + "; ".join(missing[:20]) + (" ..." if len(missing) > 20 else ""),
                  "", "Rerun the same command to continue: finished models and cells are kept.", ""]
    lines += ["## Validation NELBO (bits/token)", "", "| k | seeds | mean ± s.e. over seeds | Monte-Carlo s.e. |",
              "|---|---|---|---|"]
    for k, n in summary["nelbo"].items():
        lines.append(f"| {k} | {n['seeds']} | {_fmt(n['mean'], n['se_seeds'], 4)} | {n['se_mc']:.4f} |")
    lines += wide_table(args, summary)
    lines += ["", "## Cells", "", "| k | sampler | CFG | steps | seeds | FID | bootstrap | agreement |",
              "|---|---|---|---|---|---|---|---|"]
    for c in summary["cells"]:
        lines.append(f"| {c['k']:g} | {c['sampler']} | {c['cfg']:g} | {c['steps']} | {c['seeds']} | "
                     f"{_fmt(c['fid'], c['fid_se'])} | [{c['fid_lo']:.2f}, {c['fid_hi']:.2f}] | "
                     f"{_fmt(c['agreement'], c['agreement_se'])} |")
    if summary["paired"]:
        lines += ["", "## Paired differences: k minus k = 0, same training seed", "",
                  "Mean ± s.e. over the seeds that both have; 'favour k' = seeds where k has the lower value.", "",
                  "| k | what | sampler | CFG | steps | seeds | Δ (k − 0) | favour k | Δ agreement |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in summary["paired"]:
            if r["what"] == "nelbo":
                lines.append(f"| {r['k']:g} | NELBO (bits/token) | | | | {r['seeds']} | "
                             f"{_fmt(r['delta'], r['delta_se'], 4)} | {r['favour_k']}/{r['seeds']} | |")
            else:
                lines.append(f"| {r['k']:g} | FID | {r['sampler']} | {r['cfg']:g} | {r['steps']} | {r['seeds']} | "
                             f"{_fmt(r['delta'], r['delta_se'])} | {r['favour_k']}/{r['seeds']} | "
                             f"{_fmt(r['delta_agreement'], r['delta_agreement_se'], 3)} |")
    if plotted:
        lines += ["", "![FID vs steps](fid_vs_steps.png)"]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------


def check_settings(args, root: Path) -> None:
    """A study directory holds one protocol: refuse to mix models or cells made with other settings."""
    keys = ("train_steps", "set", "num", "num_t", "bootstrap")
    mine = {key: getattr(args, key) for key in keys}
    path = root / "study.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        diff = [key for key in keys if saved.get(key) != mine[key]]
        if diff:
            raise SystemExit(f"error: {root} was made with other settings ({', '.join(f'--{d}' for d in diff)}: "
                             f"{[saved.get(d) for d in diff]}); use another --out or the same settings")
    elif not args.report_only:
        write_json(path, mine)


def main(argv: list[str] | None = None) -> int:
    """Models first (seed-major, so a budget leaves every k with the same number of seeds), then the
    cells from the fewest sampler steps up, round-robin over samplers, CFGs, seeds and ks: a budget
    that runs out leaves the few-step comparisons complete and the 64-step ones missing."""
    from xdlm_vision.checkpoints import latest_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.evaluation.frechet import gaussian_stats
    from xdlm_vision.sampling import load_for_sampling

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    budget = Budget(args.budget_minutes, args.report_only)
    root = Path(args.out) / args.preset
    check_settings(args, root)
    model_plan, cell_plan = plan(args)
    judge = ref = None  # --report-only reads everything from disk: no classifier, no tokenizer
    if not args.report_only:
        judge = PRESETS[args.preset].judge(load_config(PRESETS[args.preset].config, args.set))
        ref = gaussian_stats(judge.reference())
    floor = real_floor(args, judge, ref, root, budget)
    models, cells, missing, new = {}, {}, [], 0
    for k, seed in model_plan:
        run = root / model_key(k, seed)
        rec = train_and_nelbo(args, k, seed, run, budget)
        if rec is None:
            missing.append(f"model {run.name} (+{len(cell_plan)} cells)")
        else:
            models[(k, seed)] = rec
    loaded: dict[tuple[float, int], object] = {}
    for steps in sorted(args.sample_steps):
        for sampler, cfg, cell_steps in cell_plan:
            if cell_steps != steps:
                continue
            for k, seed in model_plan:
                if (k, seed) not in models:
                    continue
                run = root / model_key(k, seed)
                path = run / "cells" / f"{cell_key(sampler, cfg, steps)}.json"
                if path.is_file():
                    cells[(k, seed, path.stem)] = json.loads(path.read_text())
                    continue
                if not budget.allows():
                    missing.append(f"cell {run.name}/{path.stem}")
                    continue
                if (k, seed) not in loaded:
                    loaded[(k, seed)] = load_for_sampling(latest_checkpoint(run), ema=True, device="cpu",
                                                          load_tokenizer=False)
                cells[(k, seed, path.stem)] = run_cell(args, loaded[(k, seed)], judge, ref,
                                                       (sampler, cfg, steps), path)
                new += 1
    if floor is None:
        missing.append("the real-vs-real floor")
    report = write_report(args, root, models, cells, floor, missing, time.time() - budget.t0)
    print(f"{new} new cell(s); {len(cells)} of {len(model_plan) * len(cell_plan)} cells on disk; "
          f"{len(missing)} item(s) missing; wrote {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
