"""The sampling trajectory as coloured text (the XDLM paper's LM1B figure).

One row per sampler step shows the sequence after that step. Each position is coloured by what
the step did to it, read off the :class:`~xdlm_vision.core.SamplerStep` masks:

* ``created``  — [MASK] -> token: green
* ``refined``  — token -> a different token: blue
* ``remasked`` — token -> [MASK]: red (shown as the mask symbol)
* ``mask``     — still [MASK]: dim grey
* ``keep``     — an unchanged token: default colour

The first row is the start state z_1 (all masks for k = 0; a few uniform tokens for k > 0). Two
renderers share the same frames: ANSI escape codes for the terminal and a self-contained HTML
page (inline CSS, every token HTML-escaped).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from xdlm_vision.io import write_text_atomic

KINDS = ("keep", "mask", "created", "refined", "remasked")
ANSI = {
    "keep": "",
    "mask": "\x1b[2m",  # dim
    "created": "\x1b[1;32m",  # bold green
    "refined": "\x1b[1;34m",  # bold blue
    "remasked": "\x1b[1;31m",  # bold red
}
ANSI_RESET = "\x1b[0m"
HTML_COLOURS = {
    "keep": "#1f2328",
    "mask": "#9aa0a6",
    "created": "#1a7f37",
    "refined": "#0550ae",
    "remasked": "#cf222e",
}


@dataclass
class Cell:
    text: str  # the token as displayed (whitespace made visible), or the mask symbol
    kind: str  # one of KINDS


@dataclass
class Frame:
    step: int  # -1 for the start state z_1, else the 0-based sampler step that produced it
    t: float  # time of this state (1 at the start, 0 at the end)
    cells: list[Cell]  # one per position


def step_kinds(z_s: torch.Tensor, created: torch.Tensor, refined: torch.Tensor, remasked: torch.Tensor,
               mask_id: int) -> list[str]:
    """Kind of every position of one sequence after a step. All inputs (L,)."""
    kinds = []
    for pos in range(z_s.shape[0]):
        if bool(created[pos]):
            kinds.append("created")
        elif bool(refined[pos]):
            kinds.append("refined")
        elif bool(remasked[pos]):
            kinds.append("remasked")
        elif int(z_s[pos]) == mask_id:
            kinds.append("mask")
        else:
            kinds.append("keep")
    return kinds


def _cells(tokens: torch.Tensor, kinds: list[str], tokenizer, mask_id: int, mask_text: str) -> list[Cell]:
    return [
        Cell(mask_text if int(tok) == mask_id else tokenizer.token_text(int(tok)), kind)
        for tok, kind in zip(tokens.tolist(), kinds)
    ]


def trajectory_frames(steps: Iterable, tokenizer, mask_id: int, sample: int = 0, mask_text: str = "[MASK]") -> list[Frame]:
    """Frames of sample ``sample`` from a list of SamplerSteps (start state first, then one per step)."""
    frames: list[Frame] = []
    for st in steps:
        if not frames:
            z1 = st.z_t[sample].cpu()  # (L,)
            start = ["mask" if int(v) == mask_id else "keep" for v in z1.tolist()]
            frames.append(Frame(-1, float(st.t), _cells(z1, start, tokenizer, mask_id, mask_text)))
        z_s = st.z_s[sample].cpu()  # (L,)
        kinds = step_kinds(z_s, st.created[sample].cpu(), st.refined[sample].cpu(), st.remasked[sample].cpu(),
                           mask_id)
        frames.append(Frame(int(st.step), float(st.s), _cells(z_s, kinds, tokenizer, mask_id, mask_text)))
    return frames


def _label(frame: Frame, num_frames: int) -> str:
    name = "start" if frame.step < 0 else f"step {frame.step + 1:>{len(str(num_frames - 1))}}"
    return f"{name} t={frame.t:.3f}"


def render_ansi(frames: list[Frame], color: bool = True) -> str:
    """Rows ``step i t=...  <tokens>``; with ``color=False`` plain text (for logs and pipes)."""
    width = max(len(_label(f, len(frames))) for f in frames) if frames else 0
    lines = []
    for frame in frames:
        parts = []
        for cell in frame.cells:
            code = ANSI[cell.kind] if color else ""
            parts.append(f"{code}{cell.text}{ANSI_RESET}" if code else cell.text)
        lines.append(f"{_label(frame, len(frames)):<{width}}  {''.join(parts)}")
    return "\n".join(lines)


def ansi_legend() -> str:
    return (f"{ANSI['created']}mask->token{ANSI_RESET}  {ANSI['refined']}token->token{ANSI_RESET}  "
            f"{ANSI['remasked']}token->mask{ANSI_RESET}  {ANSI['mask']}mask{ANSI_RESET}")


def _html_frame(frame: Frame, num_frames: int) -> str:
    spans = "".join(f'<span class="tok {c.kind}">{html.escape(c.text, quote=True)}</span>' for c in frame.cells)
    label = html.escape(_label(frame, num_frames))
    return f'<div class="step" data-step="{frame.step}"><span class="label">{label}</span>{spans}</div>'


def render_html(trajectories: list[list[Frame]], title: str = "XDLM sampling trajectory",
                captions: list[str] | None = None) -> str:
    """A self-contained HTML page (inline CSS, no scripts) with one block per trajectory."""
    css = "\n".join(f".{kind} {{ color: {colour}; }}" for kind, colour in HTML_COLOURS.items())
    legend = " ".join(
        f'<span class="tok {k}">{html.escape(text)}</span>'
        for k, text in (("created", "[MASK] → token"), ("refined", "token → token"), ("remasked", "token → [MASK]"),
                        ("mask", "[MASK]"))
    )
    blocks = []
    for i, frames in enumerate(trajectories):
        caption = html.escape(captions[i]) if captions and i < len(captions) else f"sample {i}"
        rows = "\n".join(_html_frame(f, len(frames)) for f in frames)
        blocks.append(f'<section class="trajectory"><h2>{caption}</h2>\n{rows}\n</section>')
    body = "\n".join(blocks)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; margin: 1.5em; }}
.step {{ white-space: pre-wrap; word-break: break-all; padding: 2px 0; border-bottom: 1px solid #eee; }}
.label {{ display: inline-block; min-width: 11em; color: #57606a; user-select: none; }}
.created, .refined, .remasked {{ font-weight: bold; }}
.remasked {{ text-decoration: line-through; }}
{css}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="legend">{legend}</p>
{body}
</body>
</html>
"""


def write_html(path: str | Path, page: str) -> Path:
    """Write atomically (temp file + rename); creates the parent folder."""
    return write_text_atomic(path, page)
