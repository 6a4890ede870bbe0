"""The demo's Edit tab: editor value -> mask, bounded requests, frames equal the library's edit,
and a real server driven through gradio_client."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from PIL import Image

from xdlm_vision import sampling
from xdlm_vision.demo import DemoSampler, EditSession, add_edit_tab, build_demo
from xdlm_vision.demo.edit import EDITOR_SIDE, editor_inputs
from xdlm_vision.errors import UserError
from xdlm_vision.sampling.edit import EditOptions, prepare_edit, run_edit
from xdlm_vision.viz.outline import edit_sheet

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def session() -> EditSession:
    return EditSession(DemoSampler.from_checkpoint(None, device="cpu"))


def painted_bottom(image: Image.Image) -> Image.Image:
    layer = np.zeros((image.height, image.width, 4), np.uint8)
    layer[image.height // 2 + 3:, :, :] = (255, 0, 255, 255)  # a stroke over the bottom rows
    return Image.fromarray(layer, mode="RGBA")


def test_example_is_enlarged_for_painting(session):
    ex = session.example(3, 0)
    assert ex.size == (EDITOR_SIDE, EDITOR_SIDE)


def test_editor_value_to_mask(session):
    ex = session.example(3, 0)
    image, mask = editor_inputs({"background": ex, "layers": [painted_bottom(ex)], "composite": None})
    assert image.size == mask.size == ex.size
    m = np.asarray(mask) > 0
    assert m[-1].all() and not m[:EDITOR_SIDE // 2].any()
    with pytest.raises(UserError, match="paint the region"):
        editor_inputs({"background": ex, "layers": [], "composite": None})
    with pytest.raises(UserError, match="image first"):
        editor_inputs({"background": None, "layers": [], "composite": None})


def test_stream_equals_library_edit_and_is_bounded(session):
    ex = session.example(5, 1)
    value = {"background": ex, "layers": [painted_bottom(ex)], "composite": None}
    frames = list(session.stream(value, 5, 1.0, 4, 1.0, 7, 0, 3))
    assert len(frames) == 4 and frames[-1].final is not None and all(f.final is None for f in frames[:-1])
    image, mask = editor_inputs(value)
    lm = session.sm
    job = prepare_edit(lm, image, mask)
    res = run_edit(lm, job, [5] * 3, sampling.sample_seeds(7, 3), sampling.SamplingOptions(steps=4, cfg=1.0),
                   EditOptions())
    expected = edit_sheet(job.input_image, ~job.keep, sampling.decode_tokens(lm, res.tokens), job.region)
    assert np.array_equal(np.asarray(frames[-1].final), np.asarray(expected))
    assert res.held_unchanged == 1.0
    for bad, needle in [({"strength": 0.0}, "strength"), ({"steps": 0}, "steps"), ({"num_images": 100}, "number"),
                        ({"revise_border": -1}, "border"), ({"label": 99}, "class")]:
        args = {"editor_value": value, "label": 5, "strength": 1.0, "steps": 2, "cfg": 0.0, "seed": 0,
                "revise_border": 0, "num_images": 1, **bad}
        with pytest.raises(UserError, match=needle):
            list(session.stream(**args))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_edit_tab(session, tmp_path):
    from gradio_client import Client, handle_file

    demo = build_demo(session.sampler, tabs=(add_edit_tab,))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        example = client.predict(2, 0, api_name="/edit_example")
        background = example["background"] if isinstance(example, dict) else example
        bg_path = background["path"] if isinstance(background, dict) else background
        ex = Image.open(bg_path)
        layer_path = tmp_path / "layer.png"
        painted_bottom(ex).save(layer_path)
        value = {"background": handle_file(bg_path), "layers": [handle_file(str(layer_path))], "composite": None}
        job = client.submit(value, 2, 1.0, 3, 1.0, 0, 0, 2, api_name="/edit")
        job.result(timeout=240)
        frames = job.outputs()
        assert len(frames) == 3
        final = Image.open(frames[-1][4])
        assert final.width > 2 * final.height  # the input, then two results
    finally:
        demo.close()
