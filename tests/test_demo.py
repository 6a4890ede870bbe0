"""The Gradio demo: bounded inputs, and a real server on localhost driven through gradio_client."""

from __future__ import annotations

import os
import re
import socket

import numpy as np
import pytest
from PIL import Image

from xdlm_vision import sampling
from xdlm_vision.demo import DemoLimits, DemoSampler, build_demo, shown_steps, validate_request
from xdlm_vision.errors import UserError
from xdlm_vision.viz import CREATED_RGB, REFINED_RGB, REMASKED_RGB, image_grid

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def demo_sampler() -> DemoSampler:
    return DemoSampler.from_checkpoint(None, device="cpu")  # the packaged digits checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


GOOD = {"label": 3, "cfg": 1.0, "steps": 8, "sampler": "ancestral", "seed": 0, "num_images": 4}


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"steps": 0}, "steps must be within 1..1000"),
        ({"steps": 1001}, "steps must be within 1..1000"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"num_images": 65}, "number of images must be within 1..64"),
        ({"num_images": 0}, "number of images must be within 1..64"),
        ({"cfg": 20.5}, "CFG must be within [0, 20.0]"),
        ({"cfg": -0.1}, "CFG must be within"),
        ({"cfg": float("nan")}, "CFG must be within"),
        ({"label": 10}, "class must be within 0..9"),
        ({"label": "../../etc/passwd"}, "class must be a number"),
        ({"sampler": "euler"}, "sampler must be one of"),
        ({"seed": -1}, "seed must be within"),
    ],
)
def test_inputs_are_bounded(change, needle):
    with pytest.raises(UserError) as info:
        validate_request(DemoLimits(), 10, **{**GOOD, **change})
    assert needle in str(info.value)


def test_limits_and_long_runs_are_thinned():
    lim = DemoLimits()
    assert (lim.max_steps, lim.max_images, lim.max_cfg) == (1000, 64, 20.0)
    shown = shown_steps(1000, 100)
    assert len(shown) == 100 and 999 in shown
    assert shown_steps(8, 100) == set(range(8))
    req = validate_request(lim, 10, **{**GOOD, "steps": 64.0, "num_images": 64, "cfg": 20})
    assert (req.steps, req.num_images, req.cfg) == (64, 64, 20.0)
    req = validate_request(lim, 10, **{**GOOD, "steps": 1000, "num_images": 4})
    assert (req.steps, req.num_images) == (1000, 4)
    # both limits at once would hold the single worker for minutes: steps x images is bounded too
    with pytest.raises(UserError, match="steps x images must be at most 4096"):
        validate_request(lim, 10, **{**GOOD, "steps": 1000, "num_images": 64})


def test_one_client_cannot_monopolise_the_worker():
    from xdlm_vision.demo.app import ClientBudget

    budget = ClientBudget(DemoLimits(max_requests_per_client=2, client_window_s=60))
    budget.admit("1.2.3.4", now=0.0)
    budget.admit("1.2.3.4", now=1.0)
    with pytest.raises(UserError, match="too many requests"):
        budget.admit("1.2.3.4", now=2.0)
    budget.admit("5.6.7.8", now=2.0)  # other clients are not affected
    budget.admit("1.2.3.4", now=61.5)  # the window moved on


def test_class_dropdown_uses_names(demo_sampler):
    choices = demo_sampler.class_choices
    assert [v for _, v in choices] == list(range(10))
    assert all(label.startswith(str(v)) for label, v in choices)


def colour_count(arr: np.ndarray, rgb) -> int:
    return int((arr[..., :3] == np.array(rgb, dtype=np.uint8)).all(-1).sum())


def parse_caption(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(created|refined|remasked|masked) (\d+)", text)}


def test_server_streams_every_step(demo_sampler):
    from gradio_client import Client

    demo = build_demo(demo_sampler)
    assert demo._queue.default_concurrency_limit == 1  # one sampling job at a time, others queue
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        args = {"label": 7, "cfg": 1.0, "steps": 5, "sampler_name": "ancestral", "seed": 11, "num_images": 4}
        job = client.submit(*args.values(), api_name="/generate")
        job.result(timeout=240)
        frames = job.outputs()

        # the same request sampled directly, for reference
        sm = demo_sampler.sm
        ref_steps = list(sampling.sampler_steps(sm, [7] * 4, sampling.sample_seeds(11, 4),
                                                sampling.SamplingOptions(steps=5, cfg=1.0)))
        assert len(frames) == 5
        for frame, ref in zip(frames, ref_steps):
            state_path, overlay_path, plot_path, caption, final_path = frame
            counts = parse_caption(caption)
            assert counts == {**ref.counts, "masked": int((ref.z_s == sm.mask_id).sum())}
            overlay = np.asarray(Image.open(overlay_path).convert("RGB"))
            scale = 8  # 8x8 digits are shown x8
            assert colour_count(overlay, CREATED_RGB) == counts["created"] * scale**2
            assert colour_count(overlay, REFINED_RGB) == counts["refined"] * scale**2
            assert colour_count(overlay, REMASKED_RGB) == counts["remasked"] * scale**2
            with Image.open(state_path) as st, Image.open(plot_path) as pl:
                assert st.size == (2 + 2 * 66, 2 + 2 * 66) and pl.size == (480, 260)
            assert (final_path is None) == (ref.step < 4)
        final = np.asarray(Image.open(frames[-1][4]).convert("RGB"))
        ref_images = sampling.decode_tokens(sm, ref_steps[-1].z_s.reshape(4, 8, 8).cpu())
        assert np.array_equal(final, np.asarray(image_grid(ref_images)))

        with pytest.raises(Exception, match="greater than maximum"):
            client.predict(7, 25.0, 5, "ancestral", 0, 4, api_name="/generate")
        with pytest.raises(Exception, match="less than minimum|must be within"):
            client.predict(7, 1.0, 0, "ancestral", 0, 4, api_name="/generate")
    finally:
        demo.close()


def test_stream_matches_library_sampling(demo_sampler):
    """The demo's frames come from the same per-sample-seeded sampler as `xdlm-vision sample`."""
    frames = list(demo_sampler.stream(2, 0.5, 4, "confidence", 3, 2))
    assert len(frames) == 4 and frames[-1].final is not None and all(f.final is None for f in frames[:-1])
    sm = demo_sampler.sm
    tokens = sampling.generate(sm, [2, 2], [3, 4], sampling.SamplingOptions(steps=4, cfg=0.5, sampler="confidence"))
    assert np.array_equal(np.asarray(frames[-1].final), np.asarray(image_grid(sampling.decode_tokens(sm, tokens))))
