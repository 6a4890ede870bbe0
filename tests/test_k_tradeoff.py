"""benchmarks/k_tradeoff.py on a tiny budget: resumable per model and per cell, budget and report modes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from fashion_fixture import TINY_VQ, write_tiny_fashion

from xdlm_vision.cli import main as cli_main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "k_tradeoff.py"
spec = importlib.util.spec_from_file_location("k_tradeoff", SCRIPT)
kt = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = kt  # dataclasses look their module up there
spec.loader.exec_module(kt)

# two tiny models (k 0 and 1, one seed, 2 training steps), one sampler, 2 step counts, 2 CFGs
TINY = ["digits", "--ks", "0,1", "--seeds", "1", "--train-steps", "2", "--set", "model.size=DiT-tiny",
        "--set", "training.batch_size=16", "--num", "20", "--sample-steps", "1,2", "--samplers", "ancestral",
        "--num-t", "1", "--bootstrap", "5", "--threads", "1"]


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*.json")
            if p.name not in ("summary.json",)}


def test_study_resumes_per_model_and_per_cell(tmp_path, capsys):
    out = ["--out", str(tmp_path)]
    root = tmp_path / "digits"

    # no budget: nothing is started, the report lists everything as missing
    assert kt.main([*TINY, *out, "--budget-minutes", "0"]) == 0
    assert "0 new cell(s); 0 of 8 cells on disk; 3 item(s) missing" in capsys.readouterr().out
    report = (root / "report.md").read_text()
    assert "model k0_seed0 (+4 cells)" in report and "the real-vs-real floor" in report
    assert not (root / "k0_seed0").exists()

    assert kt.main([*TINY, *out]) == 0
    assert "8 new cell(s); 8 of 8 cells on disk; 0 item(s) missing" in capsys.readouterr().out
    cells = sorted(p.relative_to(root).as_posix() for p in root.rglob("cells/*.json"))
    assert len(cells) == 8 and "k1_seed0/cells/ancestral_cfg2_steps1.json" in cells
    cell = json.loads((root / "k0_seed0/cells/ancestral_cfg0_steps2.json").read_text())
    assert cell["num"] == 20 and cell["fid_lo"] <= cell["fid_hi"] and 0 <= cell["agreement"] <= 1
    model = json.loads((root / "k1_seed0/model.json").read_text())
    assert model["nelbo_bits"] > 0 and model["train_steps"] == 2
    floor = json.loads((root / "floor.json").read_text())["real train split"]
    assert floor["fid_lo"] <= floor["fid"] <= floor["fid_hi"] and floor["num"] > 1000
    report = (root / "report.md").read_text()
    assert "## Paired differences" in report and "| 1 | FID | ancestral | 2 | 1 | 1 |" in report
    assert "| sampler | CFG | steps | k = 0 | k = 1 |" in report and "| ancestral | 2 | 2 | " in report

    # everything done: a rerun recomputes nothing
    before = mtimes(root)
    assert kt.main([*TINY, *out]) == 0
    assert "0 new cell(s); 8 of 8 cells on disk; 0 item(s) missing" in capsys.readouterr().out
    assert mtimes(root) == before

    # one cell lost: exactly that cell is recomputed, the models are not retrained
    lost = root / "k1_seed0/cells/ancestral_cfg0_steps1.json"
    lost.unlink()
    assert kt.main([*TINY, *out]) == 0
    assert "1 new cell(s); 8 of 8 cells on disk" in capsys.readouterr().out
    after = mtimes(root)
    assert {k for k in after if after[k] != before.get(k)} == {"k1_seed0/cells/ancestral_cfg0_steps1.json"}

    # report-only after losing a model's results: nothing computed, the gaps are listed
    (root / "k1_seed0/model.json").unlink()
    assert kt.main([*TINY, *out, "--report-only"]) == 0
    assert "1 item(s) missing" in capsys.readouterr().out
    report = (root / "report.md").read_text()
    assert "**Missing (1):** model k1_seed0 (+4 cells)" in report
    assert "| 0 | ancestral | 2 | 1 | 1 |" in report and "## Paired differences" not in report  # k0 lost its pair
    assert "Real-vs-real floors (FID against the validation split): real train split (" in report
    assert not (root / "k1_seed0/model.json").exists()
    assert (root / "fid_vs_steps.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)


def test_unknown_preset_and_changed_settings_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        kt.main(["cifar10", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "preset 'cifar10' is not supported by the k study yet: unknown preset; supported: ['digits', 'fashion']" \
        in capsys.readouterr().err
    assert kt.main([*TINY, "--out", str(tmp_path), "--budget-minutes", "0"]) == 0
    with pytest.raises(SystemExit, match="other settings \\(--num"):
        kt.main([*TINY, "--out", str(tmp_path), "--num", "30", "--budget-minutes", "0"])


def test_a_budget_that_runs_out_keeps_the_fewest_step_cells(tmp_path, monkeypatch, capsys):
    """Work order: floor, every model (train, NELBO), then cells from the fewest steps up over all models."""
    calls = {"n": 0}

    def allows(self) -> bool:  # the floor + 2 x (train, NELBO) + the four 1-step cells
        calls["n"] += 1
        return calls["n"] <= 1 + 2 * 2 + 4

    monkeypatch.setattr(kt.Budget, "allows", allows)
    assert kt.main([*TINY, "--out", str(tmp_path)]) == 0
    assert "4 new cell(s); 4 of 8 cells on disk; 4 item(s) missing" in capsys.readouterr().out
    done = sorted(p.name for p in (tmp_path / "digits").rglob("cells/*.json"))
    assert done == ["ancestral_cfg0_steps1.json", "ancestral_cfg0_steps1.json",
                    "ancestral_cfg2_steps1.json", "ancestral_cfg2_steps1.json"]


def test_fashion_study_decodes_through_the_given_tokenizer(tmp_path, capsys):
    """fashion: models over one shared tokenizer, samples decoded and judged by the fashion CNN, two floors."""
    data_dir = write_tiny_fashion(tmp_path / "data")
    vq = tmp_path / "vq"
    assert cli_main(["train-tokenizer", "fashion", "codebook_size=16", *[f"{k}={v}" for k, v in TINY_VQ.items()],
                     "--out", str(vq), "--data-dir", str(data_dir), "--no-progress"]) == 0
    sets = [f"data.path={data_dir}", f"tokenizer.path={vq / 'tokenizer.safetensors'}", "tokenizer.codebook_size=16",
            "model.size=DiT-tiny", "model.overrides.depth=1", "training.batch_size=8", "data.max_val_samples=10"]
    args = ["fashion", "--ks", "0,0.1", "--seeds", "1", "--train-steps", "2", "--num", "20", "--sample-steps", "1",
            "--samplers", "ancestral", "--num-t", "1", "--bootstrap", "5", "--threads", "1", "--out", str(tmp_path / "s"),
            *[v for s in sets for v in ("--set", s)]]
    assert kt.main(args) == 0
    assert "4 new cell(s); 4 of 4 cells on disk; 0 item(s) missing" in capsys.readouterr().out
    root = tmp_path / "s" / "fashion"
    floor = json.loads((root / "floor.json").read_text())
    assert set(floor) == {"real train images", "their tokenizer reconstructions"}
    assert floor["real train images"]["num"] == 20  # class-balanced, two per class
    cell = json.loads((root / "k0.1_seed0" / "cells" / "ancestral_cfg1_steps1.json").read_text())
    assert cell["num"] == 20 and 0 <= cell["agreement"] <= 1 and cell["fid"] >= 0
    report = (root / "report.md").read_text()
    assert "their tokenizer reconstructions (20)" in report and "--set tokenizer.path=" in report
    with pytest.raises(SystemExit, match="--set tokenizer.path="):
        kt.main(["fashion", "--out", str(tmp_path / "t"), "--set", f"data.path={data_dir}", "--budget-minutes", "0"])


def test_paired_differences_match_a_seed_by_seed_reference():
    """k minus k = 0 per training seed, only over seeds both have; 'favour k' counts lower values."""
    import math
    from types import SimpleNamespace

    import numpy as np

    args = SimpleNamespace(ks=[0, 0.1], seeds=3)
    models = {(0, s): {"nelbo_bits": 6.0 + 0.1 * s} for s in range(3)}
    models |= {(0.1, 0): {"nelbo_bits": 6.5}, (0.1, 2): {"nelbo_bits": 6.1}}  # seed 1 of k = 0.1 missing
    key = kt.cell_key("ancestral", 1.0, 2)
    fid0, fid1 = [30.0, 28.0, 29.0], {0: 27.0, 2: 29.5}
    cells = {(0, s, key): {"fid": fid0[s], "agreement": 0.8} for s in range(3)}
    cells |= {(0.1, s, key): {"fid": f, "agreement": 0.85} for s, f in fid1.items()}
    rows = kt.paired_differences(args, models, cells, [("ancestral", 1.0, 2), ("confidence", 0.0, 2)])
    nelbo, cell = rows  # no row for the confidence cell nobody ran
    d = np.array([6.5 - 6.0, 6.1 - 6.2])
    assert nelbo["seeds"] == 2 and math.isclose(nelbo["delta"], d.mean())
    assert math.isclose(nelbo["delta_se"], d.std(ddof=1) / math.sqrt(2)) and nelbo["favour_k"] == 1
    d = np.array([27.0 - 30.0, 29.5 - 29.0])
    assert (cell["sampler"], cell["cfg"], cell["steps"], cell["seeds"]) == ("ancestral", 1.0, 2, 2)
    assert math.isclose(cell["delta"], d.mean()) and cell["favour_k"] == 1
    assert math.isclose(cell["delta_agreement"], 0.05) and math.isclose(cell["delta_agreement_se"], 0.0, abs_tol=1e-12)
    assert kt.paired_differences(SimpleNamespace(ks=[0.1, 1], seeds=3), models, cells, []) == []  # no k = 0
