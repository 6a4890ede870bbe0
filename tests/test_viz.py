"""Trajectory visualisation: frames agree with the sampler's states, exports have the right shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from xdlm_vision.core import SAMPLERS, TokenSpace, seeded_generators
from xdlm_vision.tokenizers import PixelTokenizer
from xdlm_vision.viz import (
    CREATED_RGB,
    REFINED_RGB,
    REMASKED_RGB,
    TrajectoryRecorder,
    counts_plot,
    decode_state,
    gif_frames,
    record_trajectory,
    render_frame,
    save_gif,
    save_strip,
    transition_overlay,
)
from xdlm_vision.viz.export import LABEL_HEIGHT
from xdlm_vision.viz.render import cells_to_pixels

N, H, W = 17, 8, 8


def toy_model_fn(num_tokens: int = N, seed: int = 0):
    """Logits that depend on position, class and the current tokens (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(H * W, num_tokens, generator=g) * 2.0  # (L, N)
    mix = torch.randn(num_tokens + 1, num_tokens, generator=g) * 0.5  # (N+1, N)

    def model_fn(z, labels, t=None):
        out = table[None] + mix[z]  # (B, L, N)
        if labels is not None:
            out = out + 0.3 * labels[:, None, None].float()
        return out

    return model_fn


def run_sampler(kind: str, k: float = 0.3, steps: int = 6, b: int = 3):
    space = TokenSpace(N, k)
    gen = seeded_generators(range(b))
    return SAMPLERS[kind](toy_model_fn(), num_samples=b, seq_len=H * W, space=space, num_steps=steps,
                          class_labels=torch.arange(b), null_class=10, cfg=1.0, generator=gen), space


def colour_count(arr: np.ndarray, rgb) -> int:
    return int((arr == np.array(rgb, dtype=np.uint8)).all(-1).sum())


@pytest.mark.parametrize("kind", ["ancestral", "confidence"])
def test_recorded_counts_match_sampler_states(kind):
    steps, space = run_sampler(kind)
    rec = TrajectoryRecorder((H, W), space.mask_id)
    seen = []
    for st in rec.watch(steps):
        seen.append((st.counts, int((st.z_s == space.mask_id).sum()), st.z_s.clone()))
    traj = rec.trajectory
    assert len(traj) == 6
    for frame, (counts, masked, z_s) in zip(traj.frames, seen):
        assert frame.counts.created == counts["created"]
        assert frame.counts.refined == counts["refined"]
        assert frame.counts.remasked == counts["remasked"]
        assert frame.counts.masked == masked
        assert torch.equal(frame.tokens.reshape(3, -1), z_s)
    # the step transitions chain: state after step i is the state before step i+1
    assert traj.frames[-1].counts.masked == 0
    totals = {name: sum(getattr(c, name) for c in traj.counts) for name in ("created", "refined", "remasked")}
    assert totals["created"] > 0 and totals["refined"] > 0  # the test exercises more than one colour
    if kind == "ancestral":
        assert totals["remasked"] > 0


@pytest.mark.parametrize("kind", ["ancestral", "confidence"])
def test_overlay_colours_count_the_transitions(kind):
    steps, space = run_sampler(kind)
    traj = record_trajectory(steps, (H, W), space.mask_id)
    decode = PixelTokenizer(levels=N, channels=1).decode
    scale = 3
    for frame in traj.frames:
        images = render_frame(frame, decode, ncol=3, scale=scale)
        ov = np.asarray(images.overlay)
        assert colour_count(ov, CREATED_RGB) == frame.counts.created * scale**2
        assert colour_count(ov, REFINED_RGB) == frame.counts.refined * scale**2
        assert colour_count(ov, REMASKED_RGB) == frame.counts.remasked * scale**2
        for i in range(frame.num_samples):  # per sample, straight from the array
            arr = transition_overlay(decode_state(frame.tokens[i : i + 1], decode, space.mask_id),
                                     frame.created[i : i + 1], frame.refined[i : i + 1], frame.remasked[i : i + 1])
            c = frame.sample_counts(i)
            assert (colour_count(arr, CREATED_RGB), colour_count(arr, REFINED_RGB), colour_count(arr, REMASKED_RGB)) \
                == (c.created, c.refined, c.remasked)


def test_decode_state_greys_masked_pixels():
    tok = PixelTokenizer(levels=N, channels=1)
    mask = N
    ids = torch.randint(0, N, (2, H, W), generator=torch.Generator().manual_seed(1))
    masked = torch.rand(2, H, W, generator=torch.Generator().manual_seed(2)) < 0.4
    state = torch.where(masked, torch.full_like(ids, mask), ids)
    img = decode_state(state, tok.decode, mask)  # (2, 1, 8, 8)
    ref = tok.decode(ids)
    assert torch.equal(img[:, 0][masked], torch.zeros(int(masked.sum())))
    assert torch.equal(img[:, 0][~masked], ref[:, 0][~masked])


def test_decode_state_rgb_pixel_tokens_grey_whole_pixel():
    tok = PixelTokenizer(levels=4, channels=3)
    ids = torch.full((1, 2, 2 * 3), 3)  # white 2x2 image
    ids[0, 0, 1] = 4  # mask the green channel of pixel (0, 0)
    img = decode_state(ids, tok.decode, 4)  # (1, 3, 2, 2)
    assert torch.equal(img[0, :, 0, 0], torch.zeros(3))
    assert torch.equal(img[0, :, 1, 1], torch.ones(3))


def test_decode_state_vq_cells_grey_at_downsample_scale():
    def fake_vq_decode(ids):  # (B, h, w) -> (B, 3, 4h, 4w): every code a flat 4x4 colour
        val = ids.float() / 10 - 0.9  # codes 0..9 -> [-0.9, 0]
        return val[:, None].repeat_interleave(4, 2).repeat_interleave(4, 3).expand(-1, 3, -1, -1)

    ids = torch.tensor([[[1, 2], [10, 3]]])  # mask id 10 at cell (1, 0)
    img = decode_state(ids, fake_vq_decode, 10)
    assert img.shape == (1, 3, 8, 8)
    assert torch.equal(img[0, :, 4:, :4], torch.zeros(3, 4, 4))
    assert torch.allclose(img[0, :, :4, 4:], torch.full((3, 4, 4), 0.2 - 0.9))
    assert torch.equal(cells_to_pixels(ids == 10, (8, 8)).sum(), torch.tensor(16))


def test_gif_has_one_frame_per_step(tmp_path):
    steps, space = run_sampler("ancestral", steps=5)
    traj = record_trajectory(steps, (H, W), space.mask_id)
    decode = PixelTokenizer(levels=N, channels=1).decode
    path = save_gif(traj, decode, tmp_path / "traj.gif", scale=4)
    with Image.open(path) as gif:
        assert gif.n_frames == 5
        assert gif.info.get("loop") == 0
    assert len(gif_frames(traj, decode)) == 5
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left nothing behind


@pytest.mark.parametrize("overlay", [True, False])
def test_strip_size(tmp_path, overlay):
    steps, space = run_sampler("confidence", steps=4, b=3)
    traj = record_trajectory(steps, (H, W), space.mask_id)
    decode = PixelTokenizer(levels=N, channels=1).decode
    path = save_strip(traj, decode, tmp_path / "strip.png", scale=5, overlay=overlay, pad=2)
    rows = 3 * (2 if overlay else 1)
    with Image.open(path) as im:
        assert im.size == (2 + 4 * (40 + 2), LABEL_HEIGHT + 2 + rows * (40 + 2))
        arr = np.asarray(im.convert("RGB"))
    # the last column's first sample is the decoded final state (no grey, no colours)
    x0, y0 = 2 + 3 * 42, LABEL_HEIGHT + 2
    final = decode(traj.frames[-1].tokens[:1])  # (1, 1, 8, 8)
    expect = ((final[0, 0] + 1) * 127.5).round().to(torch.uint8).numpy().repeat(5, 0).repeat(5, 1)
    assert np.array_equal(arr[y0 : y0 + 40, x0 : x0 + 40, 0], expect)


def test_strip_max_columns_keeps_last_step():
    steps, space = run_sampler("ancestral", steps=10, b=1)
    traj = record_trajectory(steps, (H, W), space.mask_id)
    from xdlm_vision.viz.export import strip_columns, trajectory_strip

    cols = strip_columns(10, 4)
    assert cols[0] == 0 and cols[-1] == 9 and len(cols) == 4
    im = trajectory_strip(traj, PixelTokenizer(levels=N, channels=1).decode, scale=2, max_columns=4)
    assert im.size[0] == 2 + 4 * (16 + 2)


def test_counts_plot_draws_each_series_where_expected():
    from xdlm_vision.viz import StepCounts
    from xdlm_vision.viz.plot import nice_max, plot_area

    counts = [StepCounts(10, 0, 0, 50), StepCounts(20, 3, 1, 31), StepCounts(31, 2, 0, 0)]
    im = counts_plot(counts, size=(300, 200))
    assert im.size == (300, 200)
    arr = np.asarray(im)
    for rgb in (CREATED_RGB, REFINED_RGB, REMASKED_RGB):
        assert colour_count(arr, rgb) > 0
    area = plot_area(300, 200)
    top = nice_max(31)
    assert top == 50
    x, y = area.point(2, 31, 3, top)  # the last green marker
    assert tuple(arr[round(y), round(x)]) == CREATED_RGB
