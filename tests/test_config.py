"""Config system: presets, dotted overrides, validation messages, --dry-run for every preset."""

from __future__ import annotations

import pytest
import yaml

from xdlm_vision.cli import main
from xdlm_vision.config import (
    Config,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_override,
    preset_names,
    valid_keys,
)
from xdlm_vision.errors import UserError

PRESETS = ["cifar10", "digits", "fashion", "imagenet", "text"]


def test_presets_are_shipped_and_load():
    assert set(PRESETS) <= set(preset_names())
    digits = load_config("digits")
    assert digits.data.name == "digits" and digits.tokenizer.levels == 17
    imagenet = load_config("imagenet")
    # the paper's recipe
    assert (imagenet.model.size, imagenet.training.batch_size, imagenet.optim.lr) == ("small", 512, 3e-4)
    assert (imagenet.optim.warmup_steps, imagenet.training.ema_decay, imagenet.diffusion.k) == (2500, 0.9999, 0.1)
    assert (imagenet.training.steps, imagenet.training.mixed_precision) == (500_000, "bf16")
    cifar = load_config("cifar10")
    assert (cifar.model.kind, cifar.optim.lr, cifar.optim.warmup_steps, cifar.training.steps) == (
        "unet", 2e-4, 5000, 300_000)


def test_repo_configs_dir_points_at_the_package_presets():
    from pathlib import Path

    repo_configs = Path(__file__).resolve().parent.parent / "configs"
    for name in PRESETS:
        assert load_config(str(repo_configs / f"{name}.yaml")) == load_config(name)


def test_overrides_apply_with_types():
    cfg = load_config("digits", ["optim.lr=1e-2", "diffusion.k=0", "training.steps=7", "optim.betas=[0.8, 0.9]",
                                 "model.overrides.depth=3", "data.path=/x/y", "training.tensorboard=false"])
    assert cfg.optim.lr == 0.01 and isinstance(cfg.optim.lr, float)
    assert cfg.diffusion.k == 0.0 and isinstance(cfg.diffusion.k, float)  # int accepted for float
    assert cfg.training.steps == 7
    assert cfg.optim.betas == [0.8, 0.9]
    assert cfg.model.overrides == {"depth": 3}
    assert cfg.data.path == "/x/y"
    assert cfg.training.tensorboard is False


def test_defaults_without_preset_and_partial_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  lr: 5.0e-4\n")
    cfg = load_config(str(path))
    assert cfg.optim.lr == 5e-4 and cfg.training == Config().training


@pytest.mark.parametrize(
    "override, needle",
    [
        ("optim.learning_rate=1", "unknown config key 'optim.learning_rate'"),
        ("nosuch=1", "unknown config key 'nosuch'"),
        ("optim.lr.x=1", "unknown config key"),
        ("training.steps=abc", "training.steps expects int"),
        ("training.steps=1.5", "training.steps expects int"),
        ("training.tensorboard=3", "training.tensorboard expects bool"),
        ("optim.lr=fast", "optim.lr expects float"),
        ("diffusion.k=1.5", "diffusion.k must be in [0, 1]"),
        ("diffusion.schedule=exp", "diffusion.schedule must be one of linear, cosine"),
        ("training.mixed_precision=fp8", "training.mixed_precision must be one of"),
        ("training.batch_size=100", "divisible by training.grad_accum"),
        ("noequals", "must look like key=value"),
    ],
)
def test_bad_overrides_are_rejected(override, needle):
    extra = ["training.grad_accum=3"] if "batch_size" in override else []
    with pytest.raises(UserError) as info:
        load_config("digits", [override, *extra])
    assert needle in str(info.value)


def test_unknown_key_message_lists_valid_keys():
    with pytest.raises(UserError) as info:
        load_config("digits", ["optim.learning_rate=1"])
    for key in ("optim.lr", "diffusion.k", "training.batch_size", "data.path"):
        assert key in str(info.value)
    assert set(valid_keys()) >= {"optim.lr", "model.overrides", "sampling.cfg"}


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim:\n  lrr: 1.0\n")
    with pytest.raises(UserError, match="unknown config key 'optim.lrr'"):
        load_config(str(path))


def test_missing_preset_names_the_choices():
    with pytest.raises(UserError, match="cifar10, digits, fashion, imagenet"):
        load_config("mnist")


def test_parse_override_yaml_scalars():
    assert parse_override("a.b=1e-3") == ("a.b", "1e-3")  # the float field coerces it
    assert parse_override("a=null") == ("a", None)
    assert parse_override("a=[1, 2]") == ("a", [1, 2])


def test_dict_round_trip():
    cfg = load_config("imagenet", ["data.path=/codes"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_dry_run_prints_resolved_config(preset, capsys):
    # imagenet/cifar10 need data.path only to train, not for --dry-run
    assert main(["train", preset, "training.steps=123", "--dry-run"]) == 0
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)  # the '# model:' lines are YAML comments
    expected = load_config(preset, ["training.steps=123"])
    assert config_from_dict(printed) == expected
    assert "parameters" in out and f"runs/{preset}" in out


def test_dry_run_parameter_count_matches_a_real_build(capsys):
    from xdlm_vision.backbones import count_parameters
    from xdlm_vision.build import build_model
    from xdlm_vision.data.registry import data_meta

    assert main(["train", "digits", "model.size=DiT-tiny", "--dry-run"]) == 0
    cfg = load_config("digits", ["model.size=DiT-tiny"])
    n = count_parameters(build_model(cfg, data_meta(cfg)))
    assert f"{n:,} parameters" in capsys.readouterr().out


def test_overrides_may_follow_the_flags(capsys):
    """argparse fills KEY=VALUE once; overrides after --flags join the list in order (they used to be refused)."""
    assert main(["train", "digits", "training.steps=5", "--dry-run", "training.steps=123", "optim.lr=0.002"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["steps"] == 123 and printed["optim"]["lr"] == 0.002  # the later one wins
    assert main(["train", "digits", "--dry-run", "--bogus", "training.steps=1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: xdlm-vision train: unrecognized arguments: --bogus "
                                               "(see xdlm-vision train --help)")
    assert main(["sample", "--num", "1", "training.steps=1"]) == 2  # sample takes no overrides
    assert "unrecognized arguments: training.steps=1" in capsys.readouterr().err


@pytest.mark.parametrize("override", ["optim.nope=1", "training.steps=many"])
def test_cli_rejects_bad_config_with_exit_2(override, capsys):
    assert main(["train", "digits", override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_yaml_1_1_words_stay_strings_for_string_fields():
    cfg = load_config("imagenet", ["training.mixed_precision=no", "data.path=2024", "tokenizer.path=null"])
    assert cfg.training.mixed_precision == "no" and cfg.data.path == "2024" and cfg.tokenizer.path is None
    with pytest.raises(UserError, match="training.ema_warmup expects bool"):
        load_config("digits", ["training.ema_warmup=maybe"])
