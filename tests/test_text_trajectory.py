"""Coloured text trajectories: HTML/ANSI colours match the SamplerStep masks; text is escaped."""

from __future__ import annotations

from html.parser import HTMLParser

import torch

from xdlm_vision.core import TokenSpace, ancestral_sampler, confidence_sampler
from xdlm_vision.viz.text_trajectory import (
    ANSI,
    ANSI_RESET,
    render_ansi,
    render_html,
    step_kinds,
    trajectory_frames,
    write_html,
)

N, L = 6, 48
SYMBOLS = ["<b>", "&amp;", '"q"', "'", "a\u21b5", "\u00e9"]  # token texts that need escaping


class FakeTokenizer:
    vocab_size, eot_id = N, N - 1

    def token_text(self, i: int) -> str:
        return SYMBOLS[i]

    def decode(self, ids):
        return "".join(SYMBOLS[i] for i in ids)


def _random_model(seed: int):
    gen = torch.Generator().manual_seed(seed)

    def model_fn(z, labels, t=None):
        return torch.randn(z.shape[0], z.shape[1], N, generator=gen)  # (B, L, N)

    return model_fn


def _steps(k=0.6, num_steps=6, sampler=ancestral_sampler):
    gen = torch.Generator().manual_seed(0)
    return list(sampler(_random_model(1), num_samples=2, seq_len=L, space=TokenSpace(N, k), num_steps=num_steps,
                        generator=gen))


class SpanCollector(HTMLParser):
    """Per ``div.step``: the list of (kind, text) of its ``span.tok`` children."""

    def __init__(self):
        super().__init__()
        self.steps, self._kind, self._in_step = [], None, False

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class", "")
        if tag == "div" and cls == "step":
            self.steps.append([])
            self._in_step = True
        elif tag == "span" and cls.startswith("tok ") and self._in_step:
            self._kind = cls.split()[1]
            self.steps[-1].append([self._kind, ""])

    def handle_endtag(self, tag):
        if tag == "span":
            self._kind = None
        elif tag == "div":
            self._in_step = False

    def handle_data(self, data):
        if self._kind is not None:
            self.steps[-1][-1][1] += data


def test_step_kinds_follow_masks():
    z_s = torch.tensor([0, N, 2, N, 4])
    kinds = step_kinds(z_s, torch.tensor([1, 0, 0, 0, 0]).bool(), torch.tensor([0, 0, 1, 0, 0]).bool(),
                       torch.tensor([0, 0, 0, 1, 0]).bool(), N)
    assert kinds == ["created", "mask", "refined", "remasked", "keep"]


def test_html_colours_match_sampler_masks(tmp_path):
    steps = _steps()
    totals = {"created": 0, "refined": 0, "remasked": 0}
    for st in steps:
        for key, value in st.counts.items():
            totals[key] += value
    assert all(v > 0 for v in totals.values()), totals  # k = 0.6 exercises all three transitions
    tok = FakeTokenizer()
    frames = [trajectory_frames(steps, tok, N, sample=b, mask_text="[M]") for b in range(2)]
    page = render_html(frames, title="t <&>", captions=["one", "two"])
    path = write_html(tmp_path / "sub" / "traj.html", page)
    assert path.read_text(encoding="utf-8") == page and not list(path.parent.glob(".*tmp"))
    assert "<b>" not in page and "&lt;b&gt;" in page and "&amp;amp;" in page and "t &lt;&amp;&gt;" in page
    assert "<script" not in page and "http" not in page  # self-contained

    parser = SpanCollector()
    parser.feed(page)
    assert len(parser.steps) == 2 * (len(steps) + 1)
    for b in range(2):
        rows = parser.steps[b * (len(steps) + 1):(b + 1) * (len(steps) + 1)]
        start = rows[0]
        assert [k for k, _ in start] == ["mask" if int(v) == N else "keep" for v in steps[0].z_t[b]]
        for st, row in zip(steps, rows[1:]):
            assert len(row) == L
            for pos, (kind, text) in enumerate(row):
                expect = ("created" if st.created[b, pos] else "refined" if st.refined[b, pos]
                          else "remasked" if st.remasked[b, pos] else "mask" if st.z_s[b, pos] == N else "keep")
                assert kind == expect
                assert text == ("[M]" if st.z_s[b, pos] == N else SYMBOLS[int(st.z_s[b, pos])])


def test_ansi_colours_match_counts():
    steps = _steps(k=0.3, sampler=confidence_sampler)
    frames = trajectory_frames(steps, FakeTokenizer(), N, sample=1, mask_text="_")
    text = render_ansi(frames)
    lines = text.split("\n")
    assert len(lines) == len(steps) + 1
    for st, line in zip(steps, lines[1:]):
        assert line.count(ANSI["created"]) == int(st.created[1].sum())
        assert line.count(ANSI["refined"]) == int(st.refined[1].sum())
        assert line.count(ANSI["remasked"]) == int(st.remasked[1].sum())
    assert "_" not in lines[-1] and ANSI_RESET in text  # no mask survives the last step
    plain = render_ansi(frames, color=False)
    assert "\x1b" not in plain
    assert plain.split("\n")[-1].endswith("".join(SYMBOLS[int(v)] for v in steps[-1].z_s[1]))
