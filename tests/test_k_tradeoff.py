"""benchmarks/k_tradeoff.py on a tiny budget: resumable per model and per cell, budget and report modes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

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
    floor = json.loads((root / "floor.json").read_text())
    assert floor["fid_lo"] <= floor["fid_hi"] and floor["num"] > 1000

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
    assert "| 0 | ancestral | 2 | 1 | 1 |" in report and "Real-vs-real floor" in report
    assert not (root / "k1_seed0/model.json").exists()
    assert (root / "fid_vs_steps.png").is_file() == (importlib.util.find_spec("matplotlib") is not None)


def test_unsupported_preset_and_changed_settings_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        kt.main(["fashion", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "preset 'fashion' is not supported by the k study yet: the fashion preset" in capsys.readouterr().err
    assert kt.main([*TINY, "--out", str(tmp_path), "--budget-minutes", "0"]) == 0
    with pytest.raises(SystemExit, match="other settings \\(--num"):
        kt.main([*TINY, "--out", str(tmp_path), "--num", "30", "--budget-minutes", "0"])
