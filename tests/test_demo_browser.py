"""The demo in a real browser: headless Chromium runs one generation and takes a screenshot.

Chromium is driven over the DevTools protocol through ``--remote-debugging-pipe`` (JSON messages
separated by NUL bytes on file descriptors 3 and 4), so nothing beyond the standard library and
the Debian ``chromium`` package is needed, and nothing leaves the machine. Set
``XDLM_SCREENSHOT=path.png`` (sampling tab), ``XDLM_COMPARE_SCREENSHOT=path.png`` (compare tab, the
digits pair), ``XDLM_COMPARE_FASHION_SCREENSHOT=path.png`` (compare tab, the fashion pair) and
``XDLM_EDIT_SCREENSHOT=path.png`` (edit tab) to keep the screenshots.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BASH = shutil.which("bash") or "/bin/bash"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="the chromium binary is not installed (apt-get install chromium)"),
]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions",
    "--mute-audio", "--window-size=1400,1100", "--remote-debugging-pipe",
]


class DevToolsPipe:
    """Minimal DevTools client over Chromium's debugging pipe."""

    def __init__(self, user_data_dir: str) -> None:
        to_child_r, self._w = os.pipe()  # we write commands, Chromium reads fd 3
        self._r, from_child_w = os.pipe()  # Chromium writes fd 4, we read

        # bash moves our pipe ends to fds 3 and 4 and execs Chromium (no preexec_fn: the gradio
        # server's threads are running in this process). Duplicate them above 3/4 first so the
        # two redirections cannot clobber each other.
        child_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 20)
        child_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 20)
        os.close(to_child_r)
        os.close(from_child_w)
        wire = f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        self.proc = subprocess.Popen(
            [BASH, "-c", wire, "bash", CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            pass_fds=(child_r, child_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(child_r)
        os.close(child_w)
        self._buf = b""
        self._next_id = 0

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            if time.time() > deadline:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the debugging pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, session: str, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
        return res.get("result", {}).get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError) as exc:  # already gone
            print(f"Browser.close: {exc}")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._w)
        os.close(self._r)


def wait_for(pred, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def served_page(demo, tmp_path):
    """Serve ``demo`` on a free localhost port and open it in headless Chromium: (browser, session)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    browser = DevToolsPipe(str(tmp_path / "profile"))
    try:
        target = browser.send("Target.createTarget", {"url": f"http://127.0.0.1:{port}/"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.send("Runtime.enable", session=session)
        yield browser, session
    finally:
        browser.close()
        demo.close()


def screenshot(browser, session, path, keep_env: str):
    """Save a screenshot to ``path`` (and to $keep_env if set); check it is a rendered page."""
    from PIL import Image

    time.sleep(1.0)  # let the last images paint
    shot = browser.send("Page.captureScreenshot", {"format": "png"}, session)["data"]
    path.write_bytes(base64.b64decode(shot))
    keep = os.environ.get(keep_env)
    if keep:
        shutil.copy(path, keep)
    with Image.open(path) as im:
        assert im.size[0] >= 1000 and im.size[1] >= 800
        colours = im.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 50  # a rendered page, not a blank screen


def open_tab(browser, session, title: str, ready: str) -> None:
    """Click the tab button titled ``title`` and wait until the element ``ready`` (a CSS selector) exists."""
    tab_js = f"[...document.querySelectorAll('button[role=tab]')].find(b => b.textContent.trim() === '{title}')"
    wait_for(lambda: browser.evaluate(session, f"!!({tab_js})"), 90, f"the {title.lower()} tab button")
    browser.evaluate(session, f"({tab_js}).click()")
    wait_for(lambda: browser.evaluate(session, f"!!document.querySelector('{ready}')"), 30, f"the {title.lower()} tab")


def test_one_generation_in_headless_chromium(tmp_path):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from xdlm_vision.demo import DemoSampler, build_demo

    with served_page(build_demo(DemoSampler.from_checkpoint(None, device="cpu")), tmp_path) as (browser, session):
        wait_for(lambda: browser.evaluate(session, "!!document.querySelector('#generate')"), 90, "the page")
        browser.evaluate(session, "document.querySelector('#generate').click()")
        caption_js = "(document.querySelector('#caption textarea') || {}).value || ''"
        wait_for(lambda: "step 8/8" in browser.evaluate(session, caption_js), 180, "the last step")
        wait_for(lambda: browser.evaluate(session, "!!document.querySelector('#final img')"), 60, "the final grid")
        time.sleep(1.0)
        assert "masked 0" in browser.evaluate(session, caption_js)
        screenshot(browser, session, tmp_path / "demo.png", "XDLM_SCREENSHOT")


@pytest.mark.parametrize("given,keep_env", [
    ([], "XDLM_COMPARE_SCREENSHOT"),  # the first two packaged models: digits vs digits-mdlm
    (["packaged:fashion-mdlm", "packaged:fashion"], "XDLM_COMPARE_FASHION_SCREENSHOT"),  # real garments, VQ decoded
])
def test_compare_tab_in_headless_chromium(tmp_path, given, keep_env):
    """Open the compare tab, compare the first two models offered, scrub back to step 3."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from xdlm_vision.demo import DemoModels, build_site

    models = DemoModels.build(given, device="cpu")
    with served_page(build_site(models), tmp_path) as (browser, session):
        open_tab(browser, session, "Compare", "#compare-run")
        browser.evaluate(session, "document.querySelector('#compare-run').click()")
        caption_js = "(document.querySelector('#compare-caption textarea') || {}).value || ''"
        wait_for(lambda: "step 8/8" in browser.evaluate(session, caption_js), 240, "the last step")
        wait_for(lambda: browser.evaluate(session, "!!document.querySelector('#compare-summary img')"), 60,
                 "the summary")
        caption = browser.evaluate(session, caption_js)
        for name in models.names[:2]:
            assert f"{name}: created" in caption
        # the scrubber: move its range input to 3 and let go -> the caption goes back to step 3
        scrub_js = """(() => { const range = document.querySelector('#compare-scrubber input[type=range]');
            range.value = 3; range.dispatchEvent(new Event('input', {bubbles: true}));
            range.dispatchEvent(new Event('change', {bubbles: true}));
            range.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
            return true; })()"""
        browser.evaluate(session, scrub_js)
        wait_for(lambda: browser.evaluate(session, caption_js).startswith("step 3/8"), 60, "the scrubbed step")
        screenshot(browser, session, tmp_path / "compare.png", keep_env)


def test_edit_tab_in_headless_chromium(tmp_path):
    """Open the Edit tab and generate an example image into the editor (painting needs a pointer)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from xdlm_vision.demo import DemoModels, build_site

    models = DemoModels.build([], device="cpu")
    with served_page(build_site(models), tmp_path) as (browser, session):
        open_tab(browser, session, "Edit", "#edit-example")
        browser.evaluate(session, "document.querySelector('#edit-example').click()")
        # the example lands in the editor's canvas
        wait_for(lambda: browser.evaluate(session, "!!document.querySelector('#edit-editor canvas')"), 120,
                 "the editor canvas")
        time.sleep(3.0)
        screenshot(browser, session, tmp_path / "edit.png", "XDLM_EDIT_SCREENSHOT")
