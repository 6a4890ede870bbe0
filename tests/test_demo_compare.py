"""The demo's model picker and compare tab: library side, then a real server through gradio_client."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_demo import free_port
from test_sample_cli import write_tiny_checkpoint
from test_viz_compare import _columns_of

from xdlm_vision import sampling
from xdlm_vision.checkpoints import packaged_names
from xdlm_vision.demo import DemoCompare, DemoLimits, DemoModels, build_site
from xdlm_vision.errors import UserError
from xdlm_vision.viz import image_grid

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> DemoModels:
    root = tmp_path_factory.mktemp("runs")
    write_tiny_checkpoint(root / "run_a")
    write_tiny_checkpoint(root / "run_b", ["diffusion.k=0"])
    return DemoModels.build([root / "run_a", root / "run_b"], DemoLimits(max_frames=100), device="cpu")


def test_picker_offers_given_then_packaged_checkpoints(models):
    assert models.names[:2] == ["run_a", "run_b"] and models.default == "run_a"
    assert models.names[2:] == packaged_names()  # every packaged checkpoint too, loaded only when picked
    assert models.get("run_a") is models.get("run_a")  # loaded once
    with pytest.raises(UserError, match="model must be one of"):
        models.get("../../etc/passwd")
    again = DemoModels.build(["packaged:digits"])
    assert again.names == packaged_names()  # a packaged checkpoint given is not offered twice
    with pytest.raises(UserError, match="no such packaged checkpoint"):
        DemoModels.build(["packaged:nope"])


def test_same_model_twice_streams_identical_columns(models):
    frames = list(DemoCompare(models).stream("run_a", "run_a", 3, 1.0, 4, "ancestral", 5, 4))
    assert [f.step for f in frames] == [0, 1, 2, 3]
    assert all(f.summary is None for f in frames[:-1]) and frames[-1].summary is not None
    assert frames[-1].caption.startswith("step 4/4") and len(re.findall(r"(?<!re)masked 0", frames[-1].caption)) == 2
    for img in (frames[1].image, frames[-1].summary):
        arr = np.asarray(img.convert("RGB"))
        (a0, b0), (a1, b1) = _columns_of(img)
        assert np.array_equal(arr[:, a0:b0], arr[:, a1:b1])


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"model_b": "nope"}, "model must be one of"),
        ({"num_images": 17}, "number of images must be within 1..16 when comparing"),
        ({"steps": 1001}, "steps must be within 1..1000"),
        ({"label": 10}, "class must be within 0..9"),
    ],
)
def test_compare_requests_are_bounded(models, change, needle):
    req = {"model_a": "run_a", "model_b": "run_b", "label": 1, "cfg": 0.0, "steps": 2, "sampler": "ancestral",
           "seed": 0, "num_images": 2, **change}
    with pytest.raises(UserError, match=re.escape(needle)):
        list(DemoCompare(models).stream(**req))


def test_server_compare_tab_streams_and_scrubs(models):
    from gradio_client import Client

    demo = build_site(models)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        job = client.submit("run_a", "run_b", 7, 0.5, 3, "confidence", 11, 4, api_name="/compare")
        job.result(timeout=240)
        frames = job.outputs()
        assert len(frames) == 3
        assert [f[1].split("  ")[0] for f in frames] == ["step 1/3", "step 2/3", "step 3/3"]
        assert [f[2] is None for f in frames] == [True, True, False]
        with Image.open(frames[-1][2]) as summary:
            assert len(_columns_of(summary)) == 2
        scrubber = frames[-1][3]  # now ranges over the 3 shown steps
        assert (scrubber["maximum"], scrubber["value"], scrubber["interactive"]) == (3, 3, True)

        image_path, caption = client.predict(2, api_name="/compare_scrub")  # back to step 2
        assert caption == frames[1][1]
        assert np.array_equal(np.asarray(Image.open(image_path)), np.asarray(Image.open(frames[1][0])))

        # the sampling tab's model picker: run_b's images, not run_a's
        out = client.predict(4, 0.0, 3, "ancestral", 2, 2, "run_b", api_name="/generate")
        sm = models.get("run_b").sm
        tokens = sampling.generate(sm, [4, 4], [2, 3], sampling.SamplingOptions(steps=3))
        assert np.array_equal(np.asarray(Image.open(out[4]).convert("RGB")),
                              np.asarray(image_grid(sampling.decode_tokens(sm, tokens))))
        with pytest.raises(Exception, match="model must be one of|not in the list of choices"):
            client.predict(4, 0.0, 3, "ancestral", 2, 2, "nope", api_name="/generate")
    finally:
        demo.close()


def test_demo_command_offers_several_checkpoints(models, monkeypatch):
    from xdlm_vision.cli import main

    seen = {}

    def fake_launch(checkpoints, **kwargs):
        seen["checkpoints"] = checkpoints

    monkeypatch.setattr("xdlm_vision.demo.launch", fake_launch)
    root = Path(models.sources["run_a"]).parent
    assert main(["demo", "--checkpoint", str(root / "run_a"), "--checkpoint", "packaged:digits"]) == 0
    assert seen["checkpoints"] == [str(root / "run_a"), "packaged:digits"]


def test_model_dropdowns_refill_their_class_lists_off_the_api(models):
    """Every model dropdown (sample tab, compare model A, edit tab) refills its own class dropdown,
    and those UI-only events are not API endpoints (gradio 6 read api_name=False as "/false")."""
    from xdlm_vision.demo.app import class_picker

    site = build_site(models)
    elem = {b._id: getattr(b, "elem_id", None) for b in site.blocks.values()}
    wiring = {elem[t[0]]: [elem[o._id] for o in fn.outputs] for fn in site.fns.values()
              for t in fn.targets if t[1] == "change"}
    assert wiring == {"model": ["class"], "compare-a": ["compare-class"], "edit-model": ["edit-class"]}
    names = [fn.api_name for fn in site.fns.values()]
    assert not any(str(n).startswith("false") for n in names), names
    assert {"generate", "compare", "compare_scrub", "edit"} <= set(names)
    if "fashion" in packaged_names():
        update = class_picker(models)("fashion")  # the fashion classes once a fashion model is picked
        assert update["choices"][0] == ("0: T-shirt/top", 0) and update["value"] == 0
