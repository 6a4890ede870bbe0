"""Checkpoints: safetensors + JSON + weights-only train state, atomic layout, load_checkpoint errors."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from xdlm_vision import checkpoints as ck
from xdlm_vision.build import build_model
from xdlm_vision.checkpoints import checkpoint_record
from xdlm_vision.config import config_to_dict, load_config
from xdlm_vision.data.registry import data_meta
from xdlm_vision.errors import UserError
from xdlm_vision.training import rng_state
from xdlm_vision.training.ema import EMA


def _setup(seed=0):
    cfg = load_config("digits", ["model.size=DiT-tiny", "diffusion.k=0.25"])
    meta = data_meta(cfg)
    torch.manual_seed(seed)
    model = build_model(cfg, meta)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # EMA and model now differ
    ema.update(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    model(torch.zeros(2, 64, dtype=torch.long), torch.zeros(2, dtype=torch.long)).sum().backward()
    opt.step()
    return cfg, meta, model, ema, opt


def _save(out, step, cfg, meta, model, ema, opt, keep=0):
    state = {"step": step, "optimizer": opt.state_dict(), "ema_num_updates": ema.num_updates,
             "rng": rng_state.capture_rng_state(), "data": {"epoch": 0, "batch": step}}
    return ck.save_checkpoint(out, step, model, ema.shadow, checkpoint_record(cfg, meta, model), state, keep=keep)


def test_layout_and_round_trip(tmp_path):
    cfg, meta, model, ema, opt = _setup()
    path = _save(tmp_path, 12, cfg, meta, model, ema, opt)
    assert path == tmp_path / "checkpoints" / "step_0000012"
    assert sorted(p.name for p in path.iterdir()) == sorted(ck.FILES)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest.json", "step_0000012"]
    assert json.loads((tmp_path / "checkpoints/latest.json").read_text()) == {"step": 12, "dir": "step_0000012"}

    config = json.loads((path / "config.json").read_text())
    assert config["step"] == 12 and config["config"] == config_to_dict(cfg)
    assert config["num_classes"] == 10 and config["num_tokens"] == 17 and config["grid_shape"] == [8, 8]
    assert config["tokenizer"] == {"kind": "pixel", "levels": 17, "channels": 1}
    assert config["class_names"] == [str(i) for i in range(10)]
    assert config["backbone"]["config"]["depth"] == 2 and config["toolkit_version"]

    raw = load_file(str(path / "model.safetensors"))
    for name, tensor in model.state_dict().items():
        assert torch.equal(raw[name], tensor)

    state = torch.load(path / "train_state.pt", weights_only=True)  # nothing unpickled
    assert state["step"] == 12 and state["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)

    for use_ema, source in ((True, ema.shadow), (False, model)):
        loaded = ck.load_checkpoint(tmp_path, ema=use_ema)  # run dir -> latest
        assert loaded.step == 12 and loaded.ema is use_ema and loaded.path == path
        assert loaded.config == cfg and loaded.num_classes == 10 and loaded.null_class == 10
        assert loaded.grid_shape == (8, 8) and loaded.tokenizer_spec["levels"] == 17
        assert not loaded.model.training
        for (name, a), b in zip(loaded.model.state_dict().items(), source.state_dict().values()):
            assert torch.equal(a, b), name
    ema_differs = any(not torch.equal(a, b) for a, b in zip(ema.shadow.parameters(), model.parameters()))
    assert ema_differs


def test_resolve_accepts_run_checkpoints_and_step_dirs(tmp_path):
    cfg, meta, model, ema, opt = _setup()
    _save(tmp_path, 1, cfg, meta, model, ema, opt)
    last = _save(tmp_path, 2, cfg, meta, model, ema, opt)
    for p in (tmp_path, tmp_path / "checkpoints", last):
        assert ck.resolve_checkpoint_dir(p) == last
    assert ck.resolve_checkpoint_dir(tmp_path / "checkpoints/step_0000001").name == "step_0000001"


def test_latest_ignores_partial_writes_and_prune_keeps_newest(tmp_path):
    cfg, meta, model, ema, opt = _setup()
    for step in (1, 2, 3):
        _save(tmp_path, step, cfg, meta, model, ema, opt, keep=2)
    root = tmp_path / "checkpoints"
    assert [p.name for p in ck.list_checkpoints(tmp_path)] == ["step_0000002", "step_0000003"]
    # a crash mid-write leaves a hidden temp dir and maybe an incomplete step dir: neither is used
    (root / ".tmp_step_0000009_1").mkdir()
    (root / "step_0000010").mkdir()
    (root / "step_0000010" / "model.safetensors").write_bytes(b"partial")
    (root / "latest.json").write_text("{not json")
    assert ck.latest_checkpoint(tmp_path).name == "step_0000003"
    # re-saving an existing step swaps it in place
    again = _save(tmp_path, 3, cfg, meta, model, ema, opt)
    assert ck.is_complete(again) and not list(root.glob(".old_*"))


def test_missing_and_corrupt_checkpoints_name_the_flag(tmp_path):
    with pytest.raises(UserError, match="--checkpoint .*no such file"):
        ck.load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="--checkpoint .*not a complete checkpoint .*model.safetensors"):
        ck.load_checkpoint(tmp_path / "empty")

    cfg, meta, model, ema, opt = _setup()
    path = _save(tmp_path / "run", 5, cfg, meta, model, ema, opt)
    (path / "ema.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(UserError, match="--checkpoint: cannot load .*ema.safetensors"):
        ck.load_checkpoint(path)
    assert ck.load_checkpoint(path, ema=False).step == 5  # the raw weights are still fine

    (path / "config.json").write_text("garbage")
    with pytest.raises(UserError, match="--checkpoint .*config.json"):
        ck.load_checkpoint(path, ema=False)


def test_weights_of_another_model_are_rejected(tmp_path):
    cfg, meta, model, ema, opt = _setup()
    path = _save(tmp_path, 1, cfg, meta, model, ema, opt)
    other = build_model(load_config("digits", ["model.size=DiT-tiny", "model.overrides.depth=3"]), meta)
    with pytest.raises(UserError, match="does not match the model"):
        ck.load_weights(other, path / "model.safetensors")


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's state
    torch.save(rng_state.capture_rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    rng_state.restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.standard_normal())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2] and expected[3] == got[3]
