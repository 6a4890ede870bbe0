"""What an evaluation run is asked to do (``xdlm-vision eval nelbo|digits``), and the shared card.

A job is a plain dataclass filled by the command from its flags (already checked by
:func:`xdlm_vision.commands.flags.check`); ``run_*`` load the checkpoint once
(:class:`~xdlm_vision.checkpoints.LoadedModel`, whose diffusion spec carries the ``--k`` override),
compute, print one summary line and optionally write ``OUT/metrics.json``. The FID job is
:mod:`xdlm_vision.evaluation.fid_job`. The protocol is documented in docs/evaluation.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.card import CFG_CONVENTION, git_commit, toolkit_versions
from xdlm_vision.io import write_json_atomic


@dataclass(frozen=True)
class ModelJob:
    """Which weights, where, and the seeds."""

    checkpoint: str
    ema: bool = True
    k: float | None = None  # evaluate with this k (None: the trained k)
    device: str = "auto"
    seed: int = 0
    progress: bool = True


@dataclass(frozen=True)
class SamplingJob(ModelJob):
    """A model job that also draws samples."""

    steps: int = 8
    cfg: float = 0.0  # guidance gamma, XDLM convention
    cfg_schedule: str = "constant"
    sampler: str = "ancestral"
    num: int = 500
    batch_size: int = 64
    out: str | None = None


@dataclass(frozen=True)
class NelboJob(ModelJob):
    split: str = "val"
    num_t: int = 8
    batch_size: int = 256
    max_examples: int | None = None
    data_path: str | None = None
    out: str | None = None


def sampling_options(job: SamplingJob):
    from xdlm_vision.sampling import SamplingOptions

    return SamplingOptions(steps=job.steps, cfg=job.cfg, cfg_schedule=job.cfg_schedule, sampler=job.sampler)


def sampling_card(job: SamplingJob, lm) -> dict:
    """The part of a protocol card that says how the samples were drawn."""
    on_cuda = lm.device.type == "cuda"
    return {
        "sampler": job.sampler,
        "steps": job.steps,
        "cfg": {"gamma": job.cfg, "schedule": job.cfg_schedule, "convention": CFG_CONVENTION,
                "llamagen_dit_scale": 1.0 + job.cfg},
        "k": {"sampling": lm.spec.k, "trained": lm.trained_k},
        "schedule": lm.schedule,
        "ema": lm.ema,
        "precision": ("bf16 autocast forward, float32 logits, float64 sampler draws" if on_cuda
                      else "float32 forward, float64 sampler draws"),
        "seeds": {"base": job.seed, "rule": "image i uses its own torch.Generator seeded with seed + i"},
        "checkpoint": {"path": str(lm.path), "step": lm.step},
        # the XDLM authors' models: the official process and how many sampled special ids were clamped
        **({"official": {**lm.record["official"], "clamped_ids_this_run": getattr(lm.tokenizer, "clamped", None)}}
           if "official" in lm.record else {}),
    }


def _image_split(cfg, split: str):
    from xdlm_vision.data.registry import build_data

    bundle = build_data(cfg)
    dataset = bundle.val if split == "val" else bundle.train
    if dataset is None:
        raise UserError(f"the {cfg.data.name} data of this checkpoint has no {split} split; use --split train")
    return dataset


def run_nelbo(job: NelboJob) -> int:
    """Bits per token (and a perplexity bound for text) with a standard error over ``num_t`` draws."""
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo
    from xdlm_vision.sampling import load_for_sampling

    if job.num_t < 1:
        raise UserError(f"--num-t must be >= 1, got {job.num_t}")
    if job.max_examples is not None and job.max_examples < 1:
        raise UserError(f"--max-examples must be >= 1, got {job.max_examples}")
    lm = load_for_sampling(job.checkpoint, ema=job.ema, device=job.device, k=job.k, load_tokenizer=False)
    if lm.is_text:  # the text checkpoint's own tokenizer and packing, on --data-path or its validation split
        from xdlm_vision.data.text.dataset import evaluation_set_from_spec

        dataset = evaluation_set_from_spec(lm.tokenizer_spec, job.data_path, lm.class_names)
        dataset_name = f"text:{job.data_path or 'val'}"
    else:
        if job.data_path is not None:
            raise UserError(f"--data-path is for text checkpoints; {lm.path} is an image checkpoint "
                            f"(it is evaluated on its own dataset's --split)")
        dataset = _image_split(lm.config, job.split)
        dataset_name = f"{lm.config.data.name}:{job.split}"
    # one estimator for images and text: num_t seeded replicates -> mean and standard error
    est = monte_carlo_nelbo(lm.model_fn, dataset, lm.spec, num_t=job.num_t, seed=job.seed, batch_size=job.batch_size,
                            conditional=lm.num_classes > 0, max_examples=job.max_examples, device=lm.device,
                            progress=job.progress)
    stderr = None if math.isnan(est.stderr_bits) else est.stderr_bits  # JSON has no NaN
    metrics = {"bits_per_token": est.bits_per_token, "stderr_bits_per_token": stderr,
               "nats_per_token": est.nats_per_token}
    if lm.is_text:
        metrics["perplexity"] = est.perplexity_bound  # exp(NELBO): an upper bound on the perplexity
    card = {
        "dataset": dataset_name, "num_examples": est.num_examples, "tokens_per_replicate": est.num_tokens,
        "num_t": est.num_t, "replicates_bits_per_token": est.replicates,
        "estimator": "mean over num_t independent replicates (antithetic t per batch, z_t ~ q(z_t|x)); "
                     "stderr = std(replicates, ddof=1) / sqrt(num_t)",
        "k": {"evaluated": lm.spec.k, "trained": lm.trained_k}, "schedule": lm.schedule,
        "ema": lm.ema, "seed": job.seed, "batch_size": job.batch_size,
        "checkpoint": {"path": str(lm.path), "step": lm.step},
        "toolkit": toolkit_versions(), "git": git_commit(),
    }
    if job.out:
        write_json_atomic(Path(job.out) / "metrics.json", {"metrics": metrics, "protocol": card})
    se = "n/a (--num-t 1)" if math.isnan(est.stderr_bits) else f"{est.stderr_bits:.4f}"
    extra = f", perplexity <= {est.perplexity_bound:.2f}" if lm.is_text else ""
    print(f"{dataset_name}: {est.bits_per_token:.4f} bits/token (standard error {se}, {est.num_t} draws of t, "
          f"k={lm.spec.k:g}){extra}")
    return 0


def run_digits(job: SamplingJob) -> int:
    """Accuracy of the digits classifier and digits-FID on class-conditional samples."""
    import torch

    from xdlm_vision.evaluation.digits_metrics import digits_metrics
    from xdlm_vision.sampling import generate, load_for_sampling, parse_classes, sample_seeds

    opts = sampling_options(job)
    lm = load_for_sampling(job.checkpoint, ema=job.ema, device=job.device, k=job.k, load_tokenizer=False)
    if lm.num_tokens != 17 or tuple(lm.grid_shape) != (8, 8) or lm.num_classes != 10:
        raise UserError(f"--checkpoint {lm.path} is not a digits checkpoint (17 tokens, 8x8 grid, 10 classes)")
    labels = parse_classes(",".join(str(c) for c in range(10)), job.num, 10)
    t0 = time.time()
    tokens = generate(lm, labels, sample_seeds(job.seed, job.num), opts, batch_size=job.batch_size,
                      progress=job.progress)  # (num, 8, 8)
    m = digits_metrics(tokens, torch.tensor(labels))
    per_class = [None if math.isnan(a) else a for a in m.per_class_accuracy]  # JSON has no NaN
    metrics = {"accuracy": m.accuracy, "digits_fid": m.digits_fid, "per_class_accuracy": per_class}
    card = {"num_samples": m.num_samples, "label_sampling": "per-class: image i has class i mod 10",
            "reference": f"digits validation split ({m.num_reference} images), classifier penultimate features",
            **sampling_card(job, lm), "toolkit": toolkit_versions(),
            "time_seconds": round(time.time() - t0, 1)}
    if job.out:
        write_json_atomic(Path(job.out) / "metrics.json", {"metrics": metrics, "protocol": card})
    print(f"digits: accuracy {m.accuracy:.3f}, digits-FID {m.digits_fid:.3f} ({m.num_samples} samples, "
          f"{job.steps} steps, cfg {job.cfg:g}, k={lm.spec.k:g})")
    return 0
