"""The XDLM authors' checkpoint files: safe reading, EMA/raw weights, the official process against the
official code's outputs, ``import-official``, sampling end to end, and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from xdlm_vision.checkpoints import import_official, load_checkpoint
from xdlm_vision.cli import main
from xdlm_vision.core import get_schedule, guided_logits, nelbo, posterior_probs
from xdlm_vision.errors import UserError
from xdlm_vision.official import OfficialProcess, read_official
from xdlm_vision.official.reader import safe_torch_load

DATA = Path(__file__).parent / "data" / "xdlm_official_tiny"
CKPT = DATA / "checkpoint.ckpt"
ATOL = 1e-5


@pytest.fixture(scope="module")
def inputs() -> dict:
    return load_file(DATA / "inputs.safetensors")


@pytest.fixture(scope="module")
def expected() -> dict:
    return load_file(DATA / "expected.safetensors")


@pytest.fixture(scope="module")
def ema_model():
    return load_checkpoint(CKPT)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imp") / "xdlm_tiny"
    assert main(["import-official", str(CKPT), "--out", str(out)]) == 0
    return out


# ---------------------------------------------------------------------------------------------
# reading the Lightning file


def test_lightning_file_is_read_without_its_classes():
    f = read_official(CKPT)
    assert f.layout == "lightning" and f.vocab_size == 67
    assert len(f.raw) == 32 and "rotary_emb.inv_freq" in f.raw  # 31 parameters + the rotary buffer
    assert len(f.shadow) == 31 and f.ema_info == {"decay": 0.9999, "num_updates": 100000}
    assert len(f.vq_state) == 87  # the tiny VQ under image_tokenizer.vae.*
    assert f.hparams["algo"]["name"] == "xdlm" and f.hparams["algo"]["k1"] == 0.1
    assert f.tokenizer_info["mask_token_id"] == 64 and f.tokenizer_info["eos_token_id"] == 65
    # an interpolation the official code would evaluate (it imports os) stays an inert string
    assert "__import__('os')" in f.hparams["loader"]["num_workers"]
    # plain torch.load(weights_only=True) cannot open it: that is why the stand-ins exist
    with pytest.raises(Exception, match="omegaconf"):
        torch.load(CKPT, map_location="cpu", weights_only=True)


def test_ema_weights_by_default_and_raw_with_no_ema(ema_model, inputs, expected):
    raw_model = load_checkpoint(CKPT, ema=False)
    args = (inputs["tokens"], inputs["sigma"], inputs["class_labels"])
    with torch.no_grad():
        ema_out = ema_model.model.official_forward(*args)
        raw_out = raw_model.model.official_forward(*args)
        null_out = ema_model.model.official_forward(inputs["tokens"], inputs["sigma"], torch.full((6,), 10))
        special = ema_model.model.official_forward(inputs["tokens_special"], inputs["sigma_special"],
                                                   inputs["class_labels_special"])
        sigma = ema_model.model.official_forward(inputs["tokens"], inputs["sigma_nonzero"], inputs["class_labels"])
    assert (ema_out - expected["logits"]).abs().max().item() <= ATOL
    assert (null_out - expected["logits_null"]).abs().max().item() <= ATOL
    assert (special - expected["logits_special"]).abs().max().item() <= ATOL
    assert (sigma - expected["logits_sigma_nonzero"]).abs().max().item() <= ATOL
    assert (raw_out - expected["logits_state_dict_weights"]).abs().max().item() <= ATOL
    assert (ema_out - raw_out).abs().max().item() > 1.0  # the default really is the EMA
    assert ema_model.ema and not raw_model.ema
    assert ema_model.record["official"]["weights"] == "ema" and raw_model.record["official"]["weights"] == "raw"


def test_loaded_model_carries_the_official_process(ema_model):
    proc = OfficialProcess(64, 0.1)
    assert ema_model.num_tokens == 66 and ema_model.grid_shape == (4, 4) and ema_model.num_classes == 10
    assert ema_model.config.diffusion.schedule == "loglinear"
    assert ema_model.config.diffusion.k == pytest.approx(0.1 * 66 / 67)
    # the diffusion spec every consumer (sampling, NELBO, FID) works from carries the official process
    spec = ema_model.spec
    assert spec.schedule_name == "loglinear" and spec.num_tokens == 66 and spec.k == pytest.approx(proc.k_prime)
    assert ema_model.trained_k == pytest.approx(proc.k_prime) and ema_model.mask_id == 66
    assert proc.space.data_prior == pytest.approx(0.1 / 67)  # k1 / V per state, as the official prior
    assert proc.space.mask_prior == pytest.approx(1 - 0.1 + 0.1 / 67)
    off = ema_model.record["official"]
    assert off["algo"] == "xdlm" and off["k1"] == 0.1 and off["assumed"] == []
    assert off["process"]["mask_id_ours"] == 66 and off["process"]["mask_id_official"] == 64


# ---------------------------------------------------------------------------------------------
# the official process in our core vs the official outputs


def test_cfg_matches_the_official_guidance(ema_model, expected, inputs):
    ref = expected["cfg_logprobs_gamma2"]
    assert (guided_logits(expected["logits"], expected["logits_null"], 2.0) - ref).abs().max().item() <= ATOL
    # through our adapter (mask column dropped): the same distribution over the data states
    proc = OfficialProcess(64, 0.1)
    z = proc.to_ours(inputs["tokens"])
    with torch.no_grad():
        both = ema_model.model(torch.cat([z, z]), torch.cat([inputs["class_labels"], torch.full((6,), 10)]))
    ours = guided_logits(both[:6], both[6:], 2.0)
    official = torch.log_softmax(proc.our_logits(ref).double(), -1)  # renormalised without the mask
    # guidance weighs the two logit tensors by 1 + gamma and gamma: their 1e-5 bound scales by 1 + 2 gamma
    assert (torch.log_softmax(ours.double(), -1) - official).abs().max().item() <= (1 + 2 * 2.0) * ATOL


def test_model_distribution_matches_the_official_probabilities(ema_model, expected, inputs):
    proc = OfficialProcess(64, 0.1)
    with torch.no_grad():
        logits = ema_model.model(proc.to_ours(inputs["tokens"]), inputs["class_labels"])  # (6, 16, 66)
    probs = proc.to_official_columns(torch.softmax(logits, -1))  # mask column 0
    assert (probs - expected["probs_mask_excluded"]).abs().max().item() <= ATOL


def test_posterior_and_nelbo_match_the_official_ones(ema_model, expected, inputs):
    proc = OfficialProcess(64, 0.1)
    sched = get_schedule("loglinear")
    logits = proc.our_logits(expected["logits"]).double()  # (6, 16, 66)
    z_t = proc.to_ours(inputs["tokens"])
    a_t = float(sched.alpha(torch.tensor(0.75, dtype=torch.float64)))
    a_s = float(sched.alpha(torch.tensor(0.5, dtype=torch.float64)))
    post = proc.to_official_columns(posterior_probs(logits, z_t, a_t, a_s, proc.space))  # (6, 16, 67)
    assert (post - expected["posterior_t0.75_s0.5"].double()).abs().max().item() <= 1e-6
    assert torch.allclose(sched.alpha(inputs["t"].double()).float(), inputs["alpha_t"], atol=1e-7)
    loss = nelbo(logits, proc.to_ours(inputs["x0"]), z_t, inputs["t"].double(), proc.space, sched)
    ref = expected["kl_nelbo"].double()
    assert ((loss - ref).abs() / ref.abs()).max().item() <= 1e-4
    # the loaded model's DiffusionSpec (what eval nelbo and FID use) gives the same numbers
    spec = ema_model.spec
    via_spec = nelbo(logits, proc.to_ours(inputs["x0"]), z_t, inputs["t"].double(), spec.space, spec.schedule)
    assert ((via_spec - ref).abs() / ref.abs()).max().item() <= 1e-4
    # the official k1 with our clean process (mask excluded from the noise) would not match
    from xdlm_vision.core import TokenSpace

    wrong = nelbo(logits, proc.to_ours(inputs["x0"]), z_t, inputs["t"].double(), TokenSpace(66, 0.1), sched)
    assert ((wrong - ref).abs() / ref.abs()).max().item() > 1e-3


def test_loglinear_schedule():
    sched = get_schedule("loglinear")
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(sched.alpha(t), torch.tensor([1.0, 1 - 0.999 / 2, 1e-3], dtype=torch.float64))
    assert torch.allclose(sched.alpha_prime(t), torch.full((3,), -0.999, dtype=torch.float64))


def test_decode_clamps_special_ids_and_counts_them():
    from xdlm_vision.tokenizers.official_clamp import ClampingTokenizer
    from xdlm_vision.tokenizers.pixel import PixelTokenizer

    tok = ClampingTokenizer(PixelTokenizer(levels=4, channels=1), 4)
    assert tok.codebook_size == 6
    images = tok.decode(torch.tensor([[[0, 3, 4, 5]]]))  # ids 4, 5 are the official special ids
    assert torch.equal(images, PixelTokenizer(levels=4, channels=1).decode(torch.tensor([[[0, 3, 3, 3]]])))
    assert tok.clamped == 2 and tok.decoded == 4 and "2 of 4" in tok.report()


# ---------------------------------------------------------------------------------------------
# other file layouts


def test_state_dict_safetensors_export_and_ema_only_dict(tmp_path, expected, inputs):
    args = (inputs["tokens"], inputs["sigma"], inputs["class_labels"])
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(DATA / "state_dict.safetensors", export / "model.safetensors")
    (export / "config.json").write_text(json.dumps({"vocab_size": 67, "model": {"length": 16, "n_heads": 4},
                                                    "algo": {"name": "xdlm", "k1": 0.1}}))
    lm = load_checkpoint(export / "model.safetensors")
    with torch.no_grad():
        assert (lm.model.official_forward(*args) - expected["logits"]).abs().max().item() <= ATOL
    assert lm.grid_shape == (4, 4) and lm.record["official"]["layout"] == "safetensors"
    assert load_checkpoint(export).record["official"]["layout"] == "safetensors"  # the export's directory too
    # the directory form is accepted by import-official
    out = import_official(export, tmp_path / "from_dir")
    assert (out / "ema.safetensors").is_file()

    # an EMA-only dict: no names, no config: architecture read off the list's shapes
    f = read_official(CKPT)
    ema_only = tmp_path / "ema.pt"
    torch.save({"decay": 0.9999, "num_updates": 5, "shadow_params": f.shadow}, ema_only)
    lm = load_checkpoint(ema_only)
    with torch.no_grad():
        assert (lm.model.official_forward(*args) - expected["logits"]).abs().max().item() <= ATOL
    assert any("algo xdlm" in a for a in lm.record["official"]["assumed"])
    with pytest.raises(UserError, match="only EMA weights"):
        load_checkpoint(ema_only, ema=False)


# ---------------------------------------------------------------------------------------------
# import-official, sample and the demo


def test_import_official_writes_a_normal_checkpoint(imported, expected, inputs):
    meta = json.loads((imported / "config.json").read_text())
    assert meta["format"] == "xdlm-vision-checkpoint"
    off = meta["official"]
    from xdlm_vision.tokenizers.checkpoints import sha256_file

    assert off["sha256"] == sha256_file(CKPT) and off["source_file"] == str(CKPT.resolve())
    assert off["algo"] == "xdlm" and off["k1"] == 0.1 and off["weights"] == "ema"
    assert sorted(p.name for p in imported.iterdir()) == ["config.json", "ema.safetensors", "vq.safetensors"]
    lm = load_checkpoint(imported)
    with torch.no_grad():
        out = lm.model.official_forward(inputs["tokens"], inputs["sigma"], inputs["class_labels"])
    assert (out - expected["logits"]).abs().max().item() <= ATOL


def test_import_no_ema_records_raw(tmp_path, expected, inputs):
    out = tmp_path / "raw"
    assert main(["import-official", str(CKPT), "--out", str(out), "--no-ema"]) == 0
    assert json.loads((out / "config.json").read_text())["official"]["weights"] == "raw"
    lm = load_checkpoint(out, ema=False)
    with torch.no_grad():
        got = lm.model.official_forward(inputs["tokens"], inputs["sigma"], inputs["class_labels"])
    assert (got - expected["logits_state_dict_weights"]).abs().max().item() <= ATOL


def test_sample_command_from_import_and_from_the_ckpt(imported, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    common = ["--class", "3", "--cfg", "2.0", "--steps", "8", "--num", "4", "--device", "cpu"]
    assert main(["sample", "--checkpoint", str(imported), "--out", str(a), *common]) == 0
    text = capsys.readouterr().out
    assert "decoded token ids were special ids" in text and "of 64 decoded" in text
    assert main(["sample", "--checkpoint", str(CKPT), "--tokenizer-checkpoint", str(imported / "vq.safetensors"),
                 "--out", str(b), *common]) == 0
    assert a.read_bytes() == b.read_bytes()  # same weights, process and seeds either way


def test_sampling_function_and_demo_stream(imported):
    from xdlm_vision import sampling
    from xdlm_vision.demo.app import DemoSampler

    sm = sampling.load_for_sampling(imported, device="cpu")
    assert sm.space.num_tokens == 66 and sm.mask_id == 66 and sm.schedule == "loglinear"
    tokens = sampling.generate(sm, [1, 2], [0, 1], sampling.SamplingOptions(steps=4, cfg=2.0))
    assert tokens.shape == (2, 4, 4) and int(tokens.max()) < 66  # no mask survives
    demo = DemoSampler(sm)
    frames = list(demo.stream(1, 2.0, 4, "ancestral", 0, 2))
    assert frames and frames[-1].final is not None


# ---------------------------------------------------------------------------------------------
# bad inputs


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_truncated_ckpt(tmp_path, capsys):
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(CKPT.read_bytes()[: CKPT.stat().st_size // 2])
    out = tmp_path / "out"
    assert "truncated" in _cli_error(capsys, ["import-official", str(bad), "--out", str(out)])
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    assert "truncated" in _cli_error(capsys, ["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "x.png")])


class _Planted:
    """Pickles as a call of os.system: loading it the unsafe way would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unexpected_callable_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "EXECUTED"
    evil = tmp_path / "evil.ckpt"
    state = read_official(CKPT)
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.raw.items()},
                "hyper_parameters": {"config": _Planted(marker)}}, evil)
    err = _cli_error(capsys, ["import-official", str(evil), "--out", str(tmp_path / "out")])
    assert "system" in err and "nothing was executed" in err
    with pytest.raises(UserError, match="refusing"):
        safe_torch_load(evil)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_shadow_list_of_wrong_length_or_shape(tmp_path):
    f = read_official(CKPT)
    raw = {f"backbone.{k}": v for k, v in f.raw.items()}
    short = tmp_path / "short.ckpt"
    torch.save({"state_dict": raw, "ema": {"decay": 0.9999, "num_updates": 1, "shadow_params": f.shadow[:-1]}}, short)
    with pytest.raises(UserError, match="30 tensors but the official model has 31"):
        load_checkpoint(short)
    swapped = list(f.shadow)
    swapped[7], swapped[8] = swapped[8], swapped[7]  # attn_qkv (96, 32) <-> attn_out (32, 32)
    bad = tmp_path / "swapped.ckpt"
    torch.save({"state_dict": raw, "ema": {"decay": 0.9999, "num_updates": 1, "shadow_params": swapped}}, bad)
    with pytest.raises(UserError, match=r"shadow_params\[7\] has shape \(32, 32\) but blocks.0.attn_qkv.weight"):
        load_checkpoint(bad)
    assert load_checkpoint(bad, ema=False).ema is False  # the raw weights are still fine


def test_llamagen_vq_file_is_not_a_model(tmp_path, capsys):
    vq = tmp_path / "vq_ds16_c2i.pt"
    torch.save({"model": read_official(CKPT).vq_state}, vq)
    err = _cli_error(capsys, ["import-official", str(vq), "--out", str(tmp_path / "o")])
    assert "LlamaGen VQ tokenizer" in err and "--tokenizer-checkpoint" in err
    err = _cli_error(capsys, ["sample", "--checkpoint", str(vq), "--out", str(tmp_path / "x.png")])
    assert "LlamaGen VQ tokenizer" in err
    save_file({k: v.contiguous() for k, v in read_official(CKPT).vq_state.items()}, str(tmp_path / "vq.safetensors"))
    assert "LlamaGen VQ" in _cli_error(capsys, ["import-official", str(tmp_path / "vq.safetensors"),
                                               "--out", str(tmp_path / "o")])


def test_our_own_checkpoint_is_refused(imported, tmp_path, capsys):
    from xdlm_vision.sampling import packaged_checkpoint

    for ours in (packaged_checkpoint(), imported, imported / "ema.safetensors"):
        err = _cli_error(capsys, ["import-official", str(ours), "--out", str(tmp_path / "o")])
        assert "already an xdlm-vision checkpoint" in err


def test_out_dir_must_be_new_and_algo_conflicts(imported, tmp_path, capsys):
    assert "not empty" in _cli_error(capsys, ["import-official", str(CKPT), "--out", str(imported)])
    assert "contradicts" in _cli_error(capsys, ["import-official", str(CKPT), "--out", str(tmp_path / "o"),
                                                "--algo", "mdlm"])
    assert "GIDD" in _cli_error(capsys, ["import-official", str(DATA / "state_dict.safetensors"),
                                         "--out", str(tmp_path / "o"), "--algo", "gidd"])


@pytest.mark.slow  # ~30 s: Inception at 299x299 on the CPU
def test_eval_fid_records_the_official_process_on_the_card(imported, tmp_path):
    """`eval fid` on the imported model: the protocol card carries the official process and the
    number of special ids clamped before decoding (2 images with stand-in Inception weights)."""
    import numpy as np

    from xdlm_vision.evaluation.inception import random_inception_state_dict

    weights = tmp_path / "inception_standin.pth"
    torch.save(random_inception_state_dict(), weights)
    rng = np.random.default_rng(0)
    ref = tmp_path / "adm_ref.npz"
    np.savez(ref, mu=rng.normal(size=2048).astype(np.float32), sigma=np.eye(2048, dtype=np.float32) * 0.01)
    out = tmp_path / "fid"
    assert main(["eval", "fid", "--checkpoint", str(imported), "--inception-weights", str(weights),
                 "--reference", str(ref), "--num", "2", "--steps", "4", "--cfg", "2.0", "--shard-size", "2",
                 "--batch-size", "2", "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    card = json.loads((out / "metrics.json").read_text())["protocol"]
    assert card["schedule"] == "loglinear" and card["k"]["sampling"] == pytest.approx(0.1 * 66 / 67)
    official = card["official"]
    assert official["algo"] == "xdlm" and official["k1"] == 0.1 and official["weights"] == "ema"
    assert official["process"]["num_states"] == 66 and isinstance(official["clamped_ids_this_run"], int)


def test_vq_embedded_in_a_real_imagenet_ckpt_is_recognised_as_vq16():
    """The 344 image_tokenizer.vae.* keys of a released ImageNet .ckpt (the LlamaGen VQ-16 key
    list) give exactly our VQ-16 config, so decoding uses the right architecture."""
    from xdlm_vision.official.importer import vq_config
    from xdlm_vision.official.reader import OfficialFile
    from xdlm_vision.tokenizers.llamagen_config import VQ_SIZES

    rows = (Path(__file__).parent / "data" / "llamagen_vq16_state_dict.tsv").read_text().splitlines()[1:]
    state = {}
    for row in rows:
        name, shape, _ = row.split("\t")
        state[name] = torch.empty([int(s) for s in shape.split(",") if s], device="meta")
    assert len(state) == 344
    f = OfficialFile(Path("real.ckpt"), "", "lightning", None, None, vq_state=state)
    assert vq_config(f) == VQ_SIZES["VQ-16"]
