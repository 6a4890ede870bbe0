"""Compare view layout: one column per model, identical runs give identical columns."""

import numpy as np
import pytest
import torch
from PIL import Image

from xdlm_vision.core import TokenSpace, ancestral_sampler, seeded_generators
from xdlm_vision.tokenizers import PixelTokenizer
from xdlm_vision.viz import TrajectoryRecorder
from xdlm_vision.viz.compare import GAP, CompareColumn, compare_frame, compare_summary, save_compare

N, H, W, B, STEPS = 5, 4, 4, 4, 3


def _column(seed_offset=0, k=0.1, title="run", steps=STEPS):
    g = torch.Generator().manual_seed(7)
    table = torch.randn(N + 1, N, generator=g)

    def model(z, labels):
        return table[z]  # (B, L, N)

    rec = TrajectoryRecorder((H, W), N, max_samples=B)
    for _ in rec.watch(ancestral_sampler(model, num_samples=B, seq_len=H * W, space=TokenSpace(N, k),
                                         num_steps=steps, generator=seeded_generators(range(seed_offset, seed_offset + B)))):
        pass
    tok = PixelTokenizer(levels=N, channels=1)
    return CompareColumn(title, f"k {k}", rec.trajectory, tok.decode)


def _columns_of(image: Image.Image) -> list[tuple[int, int]]:
    """x-ranges of non-background content separated by background-only gaps of >= GAP pixels."""
    arr = np.asarray(image.convert("L"))
    busy = (arr < 255).any(0)
    ranges, start, blank = [], None, 0
    for x, b in enumerate(busy):
        if b:
            if start is None:
                start = x
            blank = 0
        elif start is not None:
            blank += 1
            if blank >= GAP:
                ranges.append((start, x - blank + 1))
                start, blank = None, 0
    if start is not None:
        ranges.append((start, len(busy) - blank))
    return ranges


@pytest.mark.parametrize("n_models", [2, 3])
def test_one_column_per_model_and_identical_runs_match(n_models):
    cols = [_column(title="same run") for _ in range(n_models)]
    img = compare_summary(cols)
    ranges = _columns_of(img)
    assert len(ranges) == n_models
    arr = np.asarray(img)
    widths = {b - a for a, b in ranges}
    assert len(widths) == 1  # same checkpoint and seeds: same column width ...
    a0, b0 = ranges[0]
    for a, b in ranges[1:]:  # ... and, below the title band, the same pixels
        assert np.array_equal(arr[40:, a0:b0], arr[40:, a:b])


def test_different_seeds_give_different_columns():
    img = np.asarray(compare_summary([_column(0), _column(100)]))
    (a0, b0), (a1, b1) = _columns_of(Image.fromarray(img))
    assert not np.array_equal(img[40:, a0:b0], img[40:, a1:b1])


def test_frames_and_files(tmp_path):
    cols = [_column(), _column(k=0.0)]
    frame = compare_frame(cols, 0)
    assert len(_columns_of(frame)) == 2
    png, gif = save_compare(cols, tmp_path / "c.png", tmp_path / "c.gif")
    assert Image.open(png).size == compare_summary(cols).size
    with Image.open(gif) as im:
        assert im.n_frames == STEPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.gif", "c.png"]  # no temp files left


def test_mismatched_step_counts_are_refused():
    with pytest.raises(ValueError, match="same"):
        compare_summary([_column(steps=2), _column(steps=3)])
