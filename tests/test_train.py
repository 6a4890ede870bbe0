"""Trainer: loss goes down, resume equivalence, NaN guard, data order, LR, EMA, label dropout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from xdlm_vision.build import build_model, diffusion_spec
from xdlm_vision.cli import main
from xdlm_vision.config import load_config
from xdlm_vision.core import batch_nelbo
from xdlm_vision.data.registry import data_meta
from xdlm_vision.errors import UserError
from xdlm_vision.training import trainer
from xdlm_vision.training.ema import EMA, ema_decay_at
from xdlm_vision.training.lr import lr_at
from xdlm_vision.training.order import StepBatchSampler, StepOrder

TINY = [
    "model.size=DiT-tiny",
    "training.batch_size=16",
    "training.steps=6",
    "training.ckpt_every=3",
    "training.log_every=1",
    "training.val_every=0",
    "training.sample_every=0",
    "training.val_batch_size=64",
    "training.tensorboard=false",
    "data.max_val_samples=64",
    "sampling.per_class=1",
    "sampling.num_steps=2",
    "optim.warmup_steps=2",
    "optim.lr_schedule=cosine",
    "training.ema_decay=0.9",
]


def tiny_config(*extra: str):
    return load_config("digits", [*TINY, *extra])


@pytest.mark.parametrize("k", [0.0, 0.1, 1.0])
def test_one_optimizer_step_reduces_loss_on_a_fixed_batch(k):
    cfg = tiny_config(f"diffusion.k={k}")
    meta = data_meta(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    spec = diffusion_spec(cfg, meta.num_tokens)
    from xdlm_vision.data.digits import DigitsTokens

    ds = DigitsTokens("train")
    x0 = ds.tokens[:64].reshape(64, -1)  # (B, L)
    labels = ds.labels[:64]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def fixed_loss():  # same t and z_t every time
        return batch_nelbo(model, x0, labels, spec, trainer.cpu_generator(123)).mean()

    before = fixed_loss()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = fixed_loss()
    assert torch.isfinite(before) and after < before


def _weights(run, step, name):
    return load_file(str(run / "checkpoints" / f"step_{step:07d}" / name))


def test_resume_reaches_the_same_weights(tmp_path):
    cfg = tiny_config()
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    trainer.train(cfg, straight, progress=False)
    first = trainer.train(cfg, split, stop_after=3, progress=False)
    assert first.step == 3 and first.checkpoint.name == "step_0000003"
    trainer.train(cfg, split, resume=True, progress=False)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = _weights(straight, 6, name), _weights(split, 6, name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    # and the weights did move, so the comparison means something
    start = _weights(split, 3, "model.safetensors")
    assert any(not torch.equal(start[k], _weights(split, 6, "model.safetensors")[k]) for k in start)
    sa = torch.load(straight / "checkpoints/step_0000006/train_state.pt", weights_only=True)
    sb = torch.load(split / "checkpoints/step_0000006/train_state.pt", weights_only=True)
    assert sa["step"] == sb["step"] == 6 and sa["ema_num_updates"] == sb["ema_num_updates"] == 6
    for pid, state in sa["optimizer"]["state"].items():
        torch.testing.assert_close(state["exp_avg_sq"], sb["optimizer"]["state"][pid]["exp_avg_sq"], rtol=0, atol=1e-9)


def test_outputs_and_metrics(tmp_path, capsys):
    # what a run killed before its first checkpoint left behind: a fresh start must not keep it
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 99.0}\n{"step": 9, "loss": 98.0}\n')
    result = trainer.train(tiny_config(), tmp_path, progress=False)
    assert "step 6 loss" in capsys.readouterr().out  # progress=False prints the log lines instead of a bar
    assert result.val_bits_per_token is not None and 0 < result.val_bits_per_token < 6
    assert (tmp_path / "samples" / "step_0000006.png").is_file()
    records = trainer.read_metrics(tmp_path)
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6] and all(r["loss"] < 90 for r in records if "loss" in r)
    assert [r["val_bits_per_token"] for r in records if "val_bits_per_token" in r] == [
        pytest.approx(result.val_bits_per_token)]
    assert json.loads((tmp_path / "checkpoints" / "latest.json").read_text())["step"] == 6


def test_refuses_existing_run_without_resume_and_resume_without_run(tmp_path):
    with pytest.raises(UserError, match="--resume: no checkpoint"):
        trainer.train(tiny_config(), tmp_path, resume=True, progress=False)
    trainer.train(tiny_config("training.steps=1"), tmp_path, progress=False)
    with pytest.raises(UserError, match="pass --resume"):
        trainer.train(tiny_config("training.steps=1"), tmp_path, progress=False)
    with pytest.raises(UserError, match="different model"):
        trainer.train(tiny_config("training.steps=2", "diffusion.k=0.5"), tmp_path, resume=True, progress=False)


def poison_loss_after(monkeypatch, good_calls: int, value: float) -> None:
    """The trainer's per-batch loss turns into ``value`` after ``good_calls`` calls (one per step here)."""
    real = trainer.batch_nelbo
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * value if calls["n"] > good_calls else loss

    monkeypatch.setattr(trainer, "batch_nelbo", poisoned)


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path, monkeypatch):
    poison_loss_after(monkeypatch, 4, float("nan"))  # step 4 (0-based) goes bad
    cfg = tiny_config("training.ckpt_every=2")
    with pytest.raises(trainer.TrainingDiverged) as info:
        trainer.train(cfg, tmp_path, progress=False)
    msg = str(info.value)
    assert "step 4" in msg and "nan" in msg and "step_0000004" in msg
    done = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert done[-1] == "step_0000004"  # nothing written after the bad step


def test_divergence_has_its_own_exit_code_and_names_the_checkpoint(tmp_path, monkeypatch, capsys):
    """Through the CLI: exit status 3 (not the UserError status 2), one line naming the last good checkpoint."""
    from xdlm_vision.errors import EXIT_DIVERGED, TrainingDiverged

    assert EXIT_DIVERGED == 3 and not issubclass(TrainingDiverged, UserError)
    poison_loss_after(monkeypatch, 2, float("inf"))  # step 2 (0-based) goes bad
    rc = main(["train", "digits", *TINY, "training.ckpt_every=2", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3
    assert err[-1].startswith("error: training diverged") and "step_0000002" in err[-1] and "Traceback" not in err[-1]


def test_nan_guard_via_cli_exit_code(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(trainer, "batch_nelbo", lambda *a, **k: torch.full((2, 2), float("inf"),
                                                                                requires_grad=True))
    code = main(["train", "digits", *TINY, "--out", str(tmp_path), "--no-progress"])
    assert code == 3  # TrainingDiverged's own status; 2 is for UserError
    err = capsys.readouterr().err
    assert "loss became inf at step 0" in err and "no checkpoint was written yet" in err
    assert "--resume" not in err  # nothing to resume from (issue 14, item 6)


def test_step_order_is_a_function_of_seed_and_step():
    whole = StepOrder(100, 8, grad_accum=2, world_size=1, rank=0, seed=3)
    parts = [StepOrder(100, 8, grad_accum=2, world_size=2, rank=r, seed=3) for r in (0, 1)]
    for step in (0, 5, 12, 13, 40):  # 12 batches per epoch: crosses epochs
        full = whole.micro_batches(step)
        merged = [parts[0].micro_batches(step)[a] + parts[1].micro_batches(step)[a] for a in range(2)]
        assert merged == full  # same global batch whatever the number of processes
        assert len(set(full[0] + full[1])) == 8
    epoch0 = [i for s in range(12) for micro in whole.micro_batches(s) for i in micro]
    assert len(set(epoch0)) == 96  # no repeats within an epoch
    assert whole.micro_batches(12) != whole.micro_batches(0)  # a new permutation per epoch
    resumed = list(StepBatchSampler(whole, 5, 14))
    straight = list(StepBatchSampler(whole, 0, 14))[10:]
    assert resumed == straight


def test_step_order_rejects_bad_sizes():
    with pytest.raises(UserError, match="divisible"):
        StepOrder(100, 10, grad_accum=1, world_size=3)
    with pytest.raises(UserError, match="fewer than one global batch"):
        StepOrder(10, 16)


def test_lr_schedule():
    cfg = tiny_config("optim.lr=1.0", "optim.warmup_steps=4", "optim.min_lr_ratio=0.1").optim
    assert [lr_at(s, cfg, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(4, cfg, 14) == pytest.approx(1.0)
    assert lr_at(9, cfg, 14) == pytest.approx(0.55)
    assert lr_at(14, cfg, 14) == pytest.approx(0.1)
    const = tiny_config("optim.lr=2.0", "optim.lr_schedule=constant", "optim.warmup_steps=0").optim
    assert lr_at(0, const, 10) == lr_at(9, const, 10) == 2.0


def test_ema_matches_a_hand_computed_average():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5, warmup=True)
    history = [model.weight.detach().clone()]
    expected = history[0].clone()
    for n in range(4):
        with torch.no_grad():
            model.weight.add_(1.0)
        d = ema.update(model)
        assert d == ema_decay_at(n, 0.5) == min(0.5, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach()
    torch.testing.assert_close(ema.shadow.weight, expected)


def test_label_dropout_rate():
    labels = torch.zeros(20000, dtype=torch.long)
    out = trainer.drop_labels(labels, 0.1, 10, trainer.cpu_generator(0))
    assert set(out.unique().tolist()) == {0, 10}
    assert abs((out == 10).float().mean().item() - 0.1) < 0.01
    assert torch.equal(trainer.drop_labels(labels, 0.0, 10, trainer.cpu_generator(0)), labels)


def test_cifar10_preset_trains_through_the_data_package(tmp_path, monkeypatch):
    import pickle

    import numpy as np
    import torchvision.datasets.cifar as tv_cifar

    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         "labels": rng.integers(0, 10, 4).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # fake files, other MD5s

    common = ["model.size=unet-tiny", "training.batch_size=8", "training.steps=1", "training.val_every=0",
              "training.sample_every=0", "training.mixed_precision=no", "training.tensorboard=false",
              "data.num_workers=0", "sampling.per_class=1", "sampling.num_steps=1", "sampling.classes=[3]"]
    with pytest.raises(UserError, match="data.path"):
        trainer.train(load_config("cifar10", common), tmp_path / "nopath", progress=False)
    cfg = load_config("cifar10", [*common, f"data.path={folder.parent}"])
    result = trainer.train(cfg, tmp_path / "run", progress=False)
    assert result.step == 1 and result.val_bits_per_token > 0
    assert (tmp_path / "run" / "samples" / "step_0000001.png").is_file()
    config = json.loads((result.checkpoint / "config.json").read_text())
    assert config["grid_shape"] == [32, 96] and config["num_tokens"] == 256
