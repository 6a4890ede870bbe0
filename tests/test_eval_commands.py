"""`xdlm-vision eval nelbo` and `eval digits` on a tiny random digits checkpoint, and the NELBO estimator."""

import json
import math

import numpy as np
import pytest
import torch

from xdlm_vision.cli import main

TINY = ["model.size=DiT-tiny", "training.batch_size=16", "training.tensorboard=false"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A random tiny digits checkpoint written with the trainer's checkpoint writer (no training)."""
    from xdlm_vision.build import build_model
    from xdlm_vision.checkpoints import checkpoint_record, save_checkpoint
    from xdlm_vision.config import load_config
    from xdlm_vision.data.registry import data_meta

    cfg = load_config("digits", TINY)
    meta = data_meta(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, meta)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    root = tmp_path_factory.mktemp("eval") / "run"
    return save_checkpoint(root, 1, model, model, checkpoint_record(cfg, meta, model), {"step": torch.tensor(1)})


def nelbo_metrics(ckpt, out, *extra):
    args = ["eval", "nelbo", "--checkpoint", str(ckpt), "--max-examples", "48", "--batch-size", "16",
            "--no-progress", "--out", str(out), *extra]
    assert main(args) == 0
    return json.loads((out / "metrics.json").read_text())


def test_nelbo_is_deterministic_and_reports_its_standard_error(ckpt, tmp_path):
    a = nelbo_metrics(ckpt, tmp_path / "a", "--num-t", "4")
    b = nelbo_metrics(ckpt, tmp_path / "b", "--num-t", "4")
    c = nelbo_metrics(ckpt, tmp_path / "c", "--num-t", "4", "--seed", "1")
    assert a["metrics"] == b["metrics"]  # fixed seeds: bit-identical
    assert a["metrics"]["bits_per_token"] != c["metrics"]["bits_per_token"]
    reps = np.array(a["protocol"]["replicates_bits_per_token"])
    assert len(reps) == 4 and a["protocol"]["num_examples"] == 48
    assert a["metrics"]["bits_per_token"] == pytest.approx(reps.mean())
    assert a["metrics"]["stderr_bits_per_token"] == pytest.approx(reps.std(ddof=1) / 2)
    assert 0 < a["metrics"]["stderr_bits_per_token"] < 0.5
    assert a["metrics"]["nats_per_token"] == pytest.approx(a["metrics"]["bits_per_token"] * math.log(2))
    # the seed-1 estimate agrees with the seed-0 one within a few standard errors
    se = math.hypot(a["metrics"]["stderr_bits_per_token"], c["metrics"]["stderr_bits_per_token"])
    assert abs(a["metrics"]["bits_per_token"] - c["metrics"]["bits_per_token"]) < 6 * se


def test_nelbo_any_k_and_single_draw(ckpt, tmp_path):
    one = nelbo_metrics(ckpt, tmp_path / "one", "--num-t", "1", "--k", "0")
    assert one["metrics"]["stderr_bits_per_token"] is None  # no standard error from one draw
    assert one["protocol"]["k"] == {"evaluated": 0.0, "trained": 0.1}
    uni = nelbo_metrics(ckpt, tmp_path / "uni", "--num-t", "2", "--k", "1")
    assert math.isfinite(uni["metrics"]["bits_per_token"]) and uni["metrics"]["bits_per_token"] > 0


def test_monte_carlo_nelbo_matches_a_direct_loop():
    """The estimator is the core's NELBO averaged over tokens, replicate by replicate."""
    from xdlm_vision.core import DiffusionSpec, TokenSpace, corrupt, get_schedule, nelbo, sample_times
    from xdlm_vision.evaluation.nelbo import monte_carlo_nelbo, replicate_seed

    torch.manual_seed(0)
    space, sched = TokenSpace(5, 0.3), get_schedule("linear")
    table = torch.randn(6, 5)

    def model_fn(z, labels, t):
        assert labels is None and t is None  # unconditional, not time-conditioned
        return table[z]  # (B, L, 5): logits depend on the noisy token only

    data = [(torch.randint(0, 5, (3, 2)), 0) for _ in range(7)]
    spec = DiffusionSpec(space, sched, time_conditioning=False)
    est = monte_carlo_nelbo(model_fn, data, spec, num_t=3, seed=5, batch_size=4, conditional=False)
    for r in range(3):
        total, count = 0.0, 0
        for b, start in enumerate(range(0, 7, 4)):
            x0 = torch.stack([d[0] for d in data[start : start + 4]]).reshape(-1, 6)
            gen = torch.Generator().manual_seed(replicate_seed(5, r, b))
            t = sample_times(x0.shape[0], generator=gen)
            z = corrupt(x0, t, space, sched, generator=gen)
            total += float(nelbo(table[z], x0, z, t, space, sched).double().sum())
            count += x0.numel()
        assert est.replicates[r] == pytest.approx(total / count / math.log(2), rel=1e-12)


def test_digits_command_reports_accuracy_and_digits_fid(ckpt, tmp_path, capsys):
    out = tmp_path / "digits"
    args = ["eval", "digits", "--checkpoint", str(ckpt), "--num", "20", "--steps", "2", "--cfg", "1",
            "--no-progress", "--out", str(out)]
    assert main(args) == 0
    payload = json.loads((out / "metrics.json").read_text())
    m = payload["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and math.isfinite(m["digits_fid"]) and m["digits_fid"] > 0
    assert len(m["per_class_accuracy"]) == 10
    assert payload["protocol"]["num_samples"] == 20 and payload["protocol"]["cfg"]["gamma"] == 1.0
    assert "digits-FID" in capsys.readouterr().out


def test_digits_metrics_of_real_data_are_good():
    """Real validation digits: the classifier is accurate and the digits-FID is ~0 against itself."""
    from xdlm_vision.data.digits import load_digits_split
    from xdlm_vision.evaluation.digits_metrics import digits_fid_floor, digits_metrics

    val = load_digits_split("val")
    m = digits_metrics(val.tokens, val.labels)
    assert m.accuracy > 0.9 and abs(m.digits_fid) < 1e-6 and m.num_reference == 359
    assert 0 < digits_fid_floor() < 50


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["eval", "nelbo", "--num-t", "0"], "--num-t"),
        (["eval", "nelbo", "--k", "1.5"], "--k"),
        (["eval", "digits", "--steps", "0"], "--steps"),
        (["eval", "digits", "--cfg", "-1"], "--cfg"),
        (["eval", "nelbo", "--split", "val", "--batch-size", "0"], "--batch-size"),
    ],
)
def test_bad_inputs_give_one_error_line(ckpt, capsys, argv, flag):
    assert main([*argv, "--checkpoint", str(ckpt), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and flag in err[0]


def test_missing_checkpoint_is_a_clean_error(tmp_path, capsys):
    assert main(["eval", "nelbo", "--checkpoint", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--checkpoint" in err[0]
