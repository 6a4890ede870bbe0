"""The Fashion-MNIST VQ tokenizer trainer, its report, and codes in the extract-codes format (tiny sizes)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fashion_fixture import write_tiny_fashion
from safetensors.torch import load_file

from xdlm_vision.data.codes import CodesDataset, read_manifest
from xdlm_vision.data.fashion import load_fashion_split, to_signed_padded
from xdlm_vision.data.fashion_codes import extract_fashion_codes
from xdlm_vision.errors import UserError
from xdlm_vision.evaluation.fashion_classifier import FashionCNN, classify_fashion
from xdlm_vision.evaluation.vq_report import codebook_usage, evaluate_tokenizer
from xdlm_vision.tokenizers.factory import load_tokenizer, tokenizer_spec
from xdlm_vision.tokenizers.llamagen import load_llamagen_tokenizer
from xdlm_vision.tokenizers.llamagen_vq import VQModel
from xdlm_vision.training.vq_recipe import (
    VQTrainSettings,
    batch_indices,
    lr_at_step,
    restart_dead_codes,
    vq_losses,
)
from xdlm_vision.training.vq_trainer import psnr_from_mse, train_vq_tokenizer

TINY = {"base_channels": 8, "ch_mult": (1, 1, 2), "norm_groups": 4, "z_channels": 8, "codebook_size": 16,
        "codebook_dim": 4, "encoder_res_blocks": 1, "decoder_res_blocks": 1, "batch_size": 8, "steps": 6,
        "warmup_steps": 2, "log_every": 2, "ckpt_every": 3, "restart_every": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_fashion(tmp_path_factory.mktemp("fashion"))


def test_losses_follow_the_vq_objective_and_gradients_reach_every_part():
    torch.manual_seed(0)
    s = VQTrainSettings(**TINY)
    model = VQModel(s.vq_config())
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = vq_losses(model, x, commitment=0.25, codebook_weight=1.0)
    assert out.indices.shape == (4, 8, 8) and out.recon_images.shape == (4, 1, 32, 32)
    # the chosen codes are the ones the tokenizer's own lookup picks
    assert torch.equal(out.indices, model.encode(x).indices)
    torch.testing.assert_close(out.total, out.recon + out.codebook + 0.25 * out.commitment)
    # codebook and commitment terms are the same number, with gradients to different places
    torch.testing.assert_close(out.codebook, out.commitment)
    out.total.backward()
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through reaches the encoder
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0
    used = out.indices.unique()
    g = model.quantize.embedding.weight.grad
    assert g[used].abs().sum() > 0  # codebook term moves the picked codes
    unused = torch.ones(16, dtype=torch.bool)
    unused[used] = False
    assert torch.all(g[unused] == 0)


def test_dead_codes_move_onto_latents():
    torch.manual_seed(0)
    model = VQModel(VQTrainSettings(**TINY).vq_config())
    usage = torch.zeros(16, dtype=torch.long)
    usage[:10] = 3
    latents = torch.nn.functional.normalize(torch.randn(50, 4), dim=-1)
    before = model.quantize.embedding.weight.detach().clone()
    n = restart_dead_codes(model, usage, latents, torch.Generator().manual_seed(0))
    after = model.quantize.embedding.weight.detach()
    assert n == 6
    assert torch.equal(after[:10], before[:10])
    dist = torch.cdist(after[10:], latents).min(dim=1).values
    assert torch.all(dist < 0.05)  # each restarted code sits next to some latent


def test_batch_order_is_a_permutation_per_epoch_and_a_function_of_the_step():
    n, b = 10, 4
    stream = torch.cat([batch_indices(s, b, n, seed=3) for s in range(5)])  # 20 = 2 epochs
    assert sorted(stream[:10].tolist()) == list(range(10)) and sorted(stream[10:].tolist()) == list(range(10))
    assert torch.equal(batch_indices(2, b, n, 3), batch_indices(2, b, n, 3))
    assert not torch.equal(batch_indices(0, b, n, 3), batch_indices(0, b, n, 4))


def test_lr_schedule_and_psnr():
    s = VQTrainSettings(**{**TINY, "steps": 100, "warmup_steps": 10, "lr": 1.0, "min_lr_ratio": 0.1})
    assert lr_at_step(0, s) == pytest.approx(0.1) and lr_at_step(9, s) == pytest.approx(1.0)
    assert lr_at_step(100, s) == pytest.approx(0.1)
    assert psnr_from_mse(4 * 0.01) == pytest.approx(20.0)  # MSE 0.01 in [0, 1] units


def test_training_resumes_exactly_and_the_result_loads_as_a_llamagen_tokenizer(tmp_path, data_dir):
    s = VQTrainSettings(**TINY)
    train_vq_tokenizer(s, tmp_path / "a", data_dir=data_dir, progress=False, evaluate=False)
    first = train_vq_tokenizer(s, tmp_path / "b", data_dir=data_dir, progress=False, evaluate=False, stop_after=3)
    assert first.step == 3 and not (tmp_path / "b" / "tokenizer.safetensors").exists()
    with pytest.raises(UserError, match="--resume"):
        train_vq_tokenizer(s, tmp_path / "b", data_dir=data_dir, progress=False, evaluate=False)
    train_vq_tokenizer(s, tmp_path / "b", data_dir=data_dir, progress=False, evaluate=False, resume=True)
    a, b = load_file(str(tmp_path / "a" / "tokenizer.safetensors")), load_file(str(tmp_path / "b" / "tokenizer.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # same module / state-dict layout as the VQ-16 path: loads strictly through the tokenizer loader
    tok = load_llamagen_tokenizer(tmp_path / "a" / "tokenizer.safetensors", str(tmp_path / "a" / "tokenizer.json"))
    x = to_signed_padded(load_fashion_split("test", data_dir).images[:3])
    ids = tok.encode(x)
    assert ids.shape == (3, 8, 8) and int(ids.max()) < 16
    assert tok.decode(ids).shape == (3, 1, 32, 32)
    spec = tokenizer_spec(tok)
    assert torch.equal(load_tokenizer(spec).encode(x), ids)
    lines = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6] and all(np.isfinite(r["psnr"]) for r in lines)


def test_resume_refuses_another_architecture(tmp_path, data_dir):
    s = VQTrainSettings(**TINY)
    train_vq_tokenizer(s, tmp_path, data_dir=data_dir, progress=False, evaluate=False, stop_after=3)
    other = VQTrainSettings(**{**TINY, "codebook_size": 32})
    with pytest.raises(UserError, match="different architecture"):
        train_vq_tokenizer(other, tmp_path, data_dir=data_dir, progress=False, evaluate=False, resume=True)


def test_settings_are_checked():
    with pytest.raises(UserError, match="steps"):
        VQTrainSettings(steps=0)
    with pytest.raises(UserError, match="norm_groups"):
        VQTrainSettings(base_channels=12, norm_groups=8).vq_config()


def test_usage_and_report_numbers(tmp_path, data_dir):
    usage = codebook_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert usage["codes_used"] == 2 and usage["usage"] == 0.5 and usage["perplexity"] == pytest.approx(2.0)
    torch.manual_seed(0)
    model = VQModel(VQTrainSettings(**TINY).vq_config())
    clf = FashionCNN()
    report = evaluate_tokenizer(model, tmp_path, data_dir=data_dir, classifier=clf)
    split = load_fashion_split("test", data_dir)
    assert report["num_images"] == 20
    with torch.no_grad():
        recon = model.decode_code(model.encode(to_signed_padded(split.images)).indices).clamp(-1, 1)
    real = to_signed_padded(split.images)
    mse = float(((recon - real)[..., 2:30, 2:30] / 2).pow(2).mean())
    assert report["mse"] == pytest.approx(mse, rel=1e-4)
    assert report["psnr_db"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-4)
    acc = float((classify_fashion(real, clf).labels == split.labels).double().mean())
    assert report["classifier_accuracy_real"] == pytest.approx(acc)
    assert (tmp_path / "reconstructions.png").is_file()


def test_codes_follow_the_extract_codes_format_and_are_reused(tmp_path, data_dir):
    s = VQTrainSettings(**TINY)
    train_vq_tokenizer(s, tmp_path / "vq", data_dir=data_dir, progress=False, evaluate=False)
    tok = load_llamagen_tokenizer(tmp_path / "vq" / "tokenizer.safetensors", str(tmp_path / "vq" / "tokenizer.json"))
    out = extract_fashion_codes(tok, tmp_path / "codes", "train", data_dir, batch_size=7, shard_size=16,
                                progress=False)
    info = read_manifest(out)
    assert info.codebook_size == 16 and info.grid_shape == (8, 8) and info.num_images == 40
    assert info.class_names[7] == "Sneaker" and info.tokenizer["sha256"] == tok.checkpoint_sha256
    ds = CodesDataset(out, views="original")
    split = load_fashion_split("train", data_dir)
    expected = tok.encode(to_signed_padded(split.images))
    got = torch.stack([ds[i].tokens for i in range(len(ds))])
    assert torch.equal(got, expected)
    assert [int(ds[i].label) for i in range(len(ds))] == split.labels.tolist()
    stamp = (out / "manifest.json").stat().st_mtime_ns
    extract_fashion_codes(tok, out, "train", data_dir, shard_size=16, progress=False)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rewritten
