"""Backbones: shapes, conditioning conventions, the discretised logistic head, trainability, errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from xdlm_vision.backbones import backbone_names, build_backbone, count_parameters, resolve_config
from xdlm_vision.backbones.discretized_logistic import discretized_logistic_logits
from xdlm_vision.errors import UserError

N = 17  # data tokens; id N is [MASK]
C = 10  # classes; id C is the null class

# (kind, size, grid_shape, overrides)
TINY = [
    ("dit", "DiT-tiny", (4, 4), {}),
    ("dit", "DiT-tiny", (12,), {}),
    ("unet", "unet-tiny", (4, 4), {}),
    ("unet", "unet-tiny", (4, 12), {"channels": 3}),
    ("unet", "unet-tiny", (4, 4), {"output": "logits"}),
]
IDS = ["dit-2d", "dit-1d", "unet-1ch", "unet-3ch", "unet-logits"]


def make(kind, size, grid, overrides, **kw):
    torch.manual_seed(0)
    return build_backbone(kind, num_tokens=N, grid_shape=grid, num_classes=C, size=size, **overrides, **kw)


def perturb(model: torch.nn.Module, scale: float = 0.05) -> None:
    """Zero-initialised heads/gates would hide conditioning bugs: give every parameter noise."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def batch(model, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, N + 1, (b, model.seq_len), generator=g)  # mask id N included
    z[:, 0] = N
    y = torch.randint(0, C, (b,), generator=g)
    return z, y


@pytest.mark.parametrize("kind,size,grid,overrides", TINY, ids=IDS)
def test_forward_shape_attributes_and_finite(kind, size, grid, overrides):
    model = make(kind, size, grid, overrides)
    perturb(model)
    z, y = batch(model)
    logits = model(z, y)
    seq_len = 1
    for s in grid:
        seq_len *= s
    assert model.seq_len == seq_len
    assert logits.shape == (4, seq_len, N)
    assert torch.isfinite(logits).all()
    assert (model.num_tokens, model.num_classes, tuple(model.grid_shape)) == (N, C, grid)
    json.dumps(dataclasses.asdict(model.config))  # the config is JSON-serialisable


@pytest.mark.parametrize("kind,size,grid,overrides", TINY, ids=IDS)
def test_none_labels_mean_null_class(kind, size, grid, overrides):
    model = make(kind, size, grid, overrides).eval()
    perturb(model)
    z, y = batch(model)
    null = torch.full_like(y, C)
    assert torch.equal(model(z, None), model(z, null))
    assert not torch.allclose(model(z, y), model(z, null))


def test_unconditional_ignores_labels():
    model = build_backbone("dit", num_tokens=N, grid_shape=(4, 4), num_classes=0, size="DiT-tiny").eval()
    perturb(model)
    z = torch.randint(0, N + 1, (3, 16))
    assert torch.equal(model(z, torch.tensor([0, 5, 7])), model(z))


@pytest.mark.parametrize("kind,size,grid,overrides", TINY, ids=IDS)
def test_batch_independence(kind, size, grid, overrides):
    model = make(kind, size, grid, overrides).eval()
    perturb(model)
    z, y = batch(model, b=5)
    full = model(z, y)
    for i in (0, 3):
        single = model(z[i : i + 1], y[i : i + 1])
        torch.testing.assert_close(single, full[i : i + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind,size,grid,overrides", TINY, ids=IDS)
def test_time_conditioning_only_when_enabled(kind, size, grid, overrides):
    off = make(kind, size, grid, overrides).eval()
    perturb(off)
    z, y = batch(off)
    t0, t1 = torch.zeros(4), torch.full((4,), 0.7)
    assert torch.equal(off(z, y, t0), off(z, y, t1))
    assert torch.equal(off(z, y, None), off(z, y, t1))

    on = make(kind, size, grid, overrides, time_conditioning=True).eval()
    perturb(on)
    assert not torch.allclose(on(z, y, t0), on(z, y, t1))
    assert torch.equal(on(z, y, None), on(z, y, t0))  # None = the paper's zero timestep


@pytest.mark.parametrize("kind,size,grid,overrides", TINY, ids=IDS)
def test_one_adamw_step_reduces_cross_entropy(kind, size, grid, overrides):
    model = make(kind, size, grid, overrides)
    model.train()
    for m in model.modules():  # deterministic comparison: no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, N, (8, model.seq_len), generator=g)  # clean tokens
    z = torch.where(torch.rand(x.shape, generator=g) < 0.5, torch.full_like(x, N), x)  # half masked
    y = torch.randint(0, C, (8,), generator=g)

    def loss_fn():
        return F.cross_entropy(model(z, y).reshape(-1, N), x.reshape(-1))

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    before = loss_fn()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn()
    assert after.item() < before.item() - 1e-3


def brute_force_logistic_probs(mean: float, log_scale: float, levels: int) -> torch.Tensor:
    """Bin masses by plain float64 CDF differences; edge bins take the tails."""
    s = torch.tensor(log_scale, dtype=torch.float64).clamp(min=-7.0).exp()
    centres = torch.linspace(-1, 1, levels, dtype=torch.float64)
    h = 1.0 / (levels - 1)
    upper = torch.sigmoid((centres + h - mean) / s)
    lower = torch.sigmoid((centres - h - mean) / s)
    upper[-1] = 1.0
    lower[0] = 0.0
    return upper - lower


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_matches_cdf_differences(levels):
    g = torch.Generator().manual_seed(levels)
    means = torch.cat([torch.rand(20, generator=g) * 3 - 1.5, torch.tensor([-1.0, 1.0, 0.0])])
    log_scales = torch.cat([torch.rand(20, generator=g) * 6 - 5, torch.tensor([-6.0, -6.0, 2.0])])
    logits = discretized_logistic_logits(means.double(), log_scales.double(), levels)  # (23, levels)
    assert logits.shape == (23, levels)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(23, dtype=torch.float64))
    for i in range(23):
        ref = brute_force_logistic_probs(means[i].item(), log_scales[i].item(), levels)
        torch.testing.assert_close(logits[i].exp(), ref, atol=1e-12, rtol=1e-9)
    # float32 stays finite and normalised even for very sharp and far-off logistics
    sharp = discretized_logistic_logits(torch.tensor([5.0, -5.0, 0.3]), torch.tensor([-20.0, -7.0, -7.0]), levels)
    assert torch.isfinite(sharp).all()
    torch.testing.assert_close(sharp.logsumexp(-1), torch.zeros(3), atol=1e-5, rtol=0)


def test_unet_logistic_head_is_normalised():
    model = make("unet", "unet-tiny", (4, 12), {"channels": 3})
    perturb(model, 0.2)
    z, y = batch(model)
    logits = model(z, y)
    torch.testing.assert_close(logits.logsumexp(-1), torch.zeros(4, 48), atol=1e-5, rtol=0)


def test_unet_pixel_order_is_h_w_c():
    """Changing the token of pixel (h, w) channel c changes the prediction there most directly:
    the embedding of position (h, w, c) must land in channel c of pixel (h, w)."""
    model = make("unet", "unet-tiny", (4, 12), {"channels": 3}).eval()
    z = torch.randint(0, N, (1, 48))
    emb = model.embed_tokens(z)  # (1, 3*E, 4, 4)
    e = model.config.token_embed_dim
    h, w, c = 2, 1, 2
    flat = (h * 4 + w) * 3 + c
    expected = model.token_embed.weight[z[0, flat] + c * (N + 1)]
    torch.testing.assert_close(emb[0, c * e : (c + 1) * e, h, w], expected)


def test_registry_and_sizes():
    names = backbone_names()
    assert set(names) == {"dit", "unet", "official_dit", "official_unet"}
    for size in ("DiT-tiny", "DiT-digits", "DiT-S", "DiT-B", "DiT-L", "DiT-XL", "small"):
        assert size in names["dit"]
    for size in ("unet-tiny", "unet-digits", "unet-cifar"):
        assert size in names["unet"]
    small = resolve_config("dit", num_tokens=16384, grid_shape=(16, 16), num_classes=1000, size="small")
    assert (small.depth, small.width, small.heads) == (12, 768, 12)
    cifar = resolve_config("unet", num_tokens=256, grid_shape=(32, 96), num_classes=10, size="unet-cifar")
    assert (cifar.ch, cifar.ch_mult, cifar.num_res_blocks, cifar.attn_resolutions) == (128, (1, 2, 2, 2), 2, (16,))


def test_parameter_count_of_dit_s_matches_formula():
    """DiT-S on 16x16 VQ tokens: count the parameters from the architecture by hand."""
    n, c, d, depth = 1024, 10, 384, 12
    model = build_backbone("dit", num_tokens=n, grid_shape=(16, 16), num_classes=c, size="DiT-S")
    block = (3 * d * d + 3 * d) + (d * d + d) + 2 * (4 * d * d) + 4 * d + d + (6 * d * d + 6 * d)
    expected = (n + 1) * d + (c + 1) * d + depth * block + (2 * d * d + 2 * d) + (d * n + n)
    assert count_parameters(model) == expected


def test_overrides_applied_and_list_values_accepted():
    model = build_backbone("dit", num_tokens=N, grid_shape=[4, 4], num_classes=C, size="DiT-tiny", depth=3,
                           width=48, heads=3)
    assert (len(model.blocks), model.config.width) == (3, 48)
    unet = build_backbone("unet", num_tokens=N, grid_shape=(4, 4), num_classes=C, size="unet-tiny",
                          ch_mult=[1, 2], attn_resolutions=[4])
    assert unet.config.ch_mult == (1, 2) and unet.config.attn_resolutions == (4,)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"kind": "dit", "size": "DiT-huge"}, "DiT-S"),
        ({"kind": "unet", "size": "DiT-S"}, "unet-cifar"),
        ({"kind": "vit"}, "dit"),
        ({"kind": "dit", "size": "DiT-tiny", "depht": 3}, "depth"),
        ({"kind": "unet", "size": "unet-tiny", "widht": 3}, "ch_mult"),
        ({"kind": "dit", "size": "DiT-tiny", "num_tokens_": 3}, "mlp_ratio"),
        ({"kind": "dit", "size": "DiT-tiny", "width": 30, "heads": 4}, "heads"),
        ({"kind": "unet", "size": "unet-tiny", "output": "gaussian"}, "logistic"),
        ({"kind": "unet", "size": "unet-tiny", "channels": 3}, "channels"),
    ],
)
def test_bad_names_raise_user_error(kwargs, needle):
    kwargs = dict(kwargs)  # the parametrised dict is shared between runs
    kind = kwargs.pop("kind")
    with pytest.raises(UserError, match=needle):
        build_backbone(kind, num_tokens=N, grid_shape=(4, 4), num_classes=C, **kwargs)


def test_bad_input_shape_raises_user_error():
    model = make("dit", "DiT-tiny", (4, 4), {})
    with pytest.raises(UserError, match=r"\(B, 16\)"):
        model(torch.zeros(2, 15, dtype=torch.long))
    with pytest.raises(UserError, match="grid_shape"):
        build_backbone("dit", num_tokens=N, grid_shape=(2, 2, 2), num_classes=C, size="DiT-tiny")
    with pytest.raises(UserError, match="divisible"):
        build_backbone("unet", num_tokens=N, grid_shape=(5, 5), num_classes=C, size="unet-tiny")


@pytest.mark.parametrize("kind,size,grid,overrides", TINY[::2], ids=IDS[::2])
def test_bf16_autocast_forward_is_finite(kind, size, grid, overrides):
    model = make(kind, size, grid, overrides).eval()
    perturb(model)
    z, y = batch(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(z, y)
    assert logits.shape == (4, model.seq_len, N) and torch.isfinite(logits.float()).all()


def test_meta_device_build_counts_parameters_without_memory():
    with torch.device("meta"):
        model = build_backbone("dit", num_tokens=16384, grid_shape=(16, 16), num_classes=1000, size="DiT-XL")
    assert count_parameters(model) == 710_920_192
