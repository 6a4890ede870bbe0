"""A small line plot of the per-step transition counts, drawn with Pillow (no matplotlib needed).

x: step 1..T; y: number of tokens; one line each for created (green), refined (blue) and
remasked (red), in the overlay's colours. Points are marked with small squares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

from xdlm_vision.viz.export import TEXT_RGB, font
from xdlm_vision.viz.render import CREATED_RGB, REFINED_RGB, REMASKED_RGB
from xdlm_vision.viz.trajectory import StepCounts

LEGEND_Y = 30  # top of the legend row (leaves room for a UI label above the plot)
SERIES = (("created", CREATED_RGB), ("refined", REFINED_RGB), ("remasked", REMASKED_RGB))


@dataclass(frozen=True)
class PlotArea:
    """Pixel box of the data region: x0 <= x <= x1, y0 (top) <= y <= y1 (bottom)."""

    x0: int
    y0: int
    x1: int
    y1: int

    def point(self, step: int, value: float, num_steps: int, y_max: float) -> tuple[float, float]:
        """Pixel position of (step index, count)."""
        fx = 0.5 if num_steps == 1 else step / (num_steps - 1)
        return self.x0 + fx * (self.x1 - self.x0), self.y1 - (value / y_max) * (self.y1 - self.y0)


def plot_area(width: int, height: int) -> PlotArea:
    return PlotArea(x0=44, y0=LEGEND_Y + 26, x1=width - 12, y1=height - 24)


def nice_max(value: float) -> int:
    """Smallest of 1, 2, 5 x 10^n that is >= value (axis top)."""
    value = max(1.0, float(value))
    base = 1
    while True:
        for m in (1, 2, 5):
            if m * base >= value:
                return m * base
        base *= 10


def counts_plot(counts: Sequence[StepCounts], size: tuple[int, int] = (480, 260), title: str | None = None) -> Image.Image:
    """Plot created / refined / remasked against the step; returns an RGB Pillow image."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw, fnt = ImageDraw.Draw(image), font(11)
    area = plot_area(width, height)
    n = len(counts)
    y_max = nice_max(max([max(c.created, c.refined, c.remasked) for c in counts] + [1]))

    # axes, y ticks (0, half, top) and x ticks (first, last step)
    draw.line([(area.x0, area.y0), (area.x0, area.y1), (area.x1, area.y1)], fill=TEXT_RGB)
    for v in (0, y_max / 2, y_max):
        _, y = area.point(0, v, max(n, 1), y_max)
        draw.line([(area.x0 - 3, y), (area.x0, y)], fill=TEXT_RGB)
        label = f"{v:g}"
        draw.text((area.x0 - 6 - draw.textlength(label, font=fnt), y - 6), label, fill=TEXT_RGB, font=fnt)
    for i in sorted({0, max(n - 1, 0)}):
        x, _ = area.point(i, 0, max(n, 1), y_max)
        draw.line([(x, area.y1), (x, area.y1 + 3)], fill=TEXT_RGB)
        draw.text((x - 3, area.y1 + 5), str(i + 1), fill=TEXT_RGB, font=fnt)
    draw.text(((area.x0 + area.x1) / 2 - 12, area.y1 + 5), "step", fill=TEXT_RGB, font=fnt)

    # series
    for name, colour in SERIES:
        pts = [area.point(i, getattr(c, name), n, y_max) for i, c in enumerate(counts)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.rectangle([x - 2, y - 2, x + 2, y + 2], fill=colour)

    # legend and title
    x = area.x0 + 4
    for name, colour in SERIES:
        draw.rectangle([x, LEGEND_Y + 2, x + 10, LEGEND_Y + 12], fill=colour)
        draw.text((x + 14, LEGEND_Y), name, fill=TEXT_RGB, font=fnt)
        x += 20 + int(draw.textlength(name, font=fnt)) + 10
    if title:
        draw.text((x + 10, LEGEND_Y), title, fill=TEXT_RGB, font=fnt)
    return image
