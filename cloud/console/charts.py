"""Charts for the console and the parents' app (D28-H): the geometry of a bar chart, drawn as
inline SVG by the macros of templates/_charts.html. No chart library and no script: the page
arrives drawn, htmx's refresh swaps it like any other markup, and the numbers are also in a
visually hidden table for screen readers.

Values and labels come in already formatted for the page's language (the caller knows the
locale); this module only measures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# the SVG's own coordinate system (it scales to the width of its box)
WIDTH = 400
HEIGHT = 180
LEFT = 40  # room for the value axis' labels
RIGHT = 8
TOP = 10
BOTTOM = 24  # room for the category labels
MAX_LABELS = 12  # at most this many category labels under the bars (they would overlap)


@dataclass(frozen=True)
class Bar:
    label: str  # the category: "08", "7", "Mon"
    value: float
    text: str  # the value as the page shows it
    x: float
    y: float
    width: float
    height: float
    show_label: bool
    compare_text: str = ""  # the other series' value at this bar, as shown ("" for none)


@dataclass(frozen=True)
class Tick:
    y: float
    text: str


@dataclass(frozen=True)
class Chart:
    title: str
    label_header: str  # the table's first column: "Hour", "Day"
    value_header: str  # its second: "Pupils came in"
    bars: list[Bar]
    ticks: list[Tick]
    # another series drawn as a line over the bars (last month), aligned with the bars
    compare_header: str | None
    compare: list[tuple[float, float, float, str]]  # x, y, value, text
    joined: bool = True  # False: the other series as dots only (categories, not a sequence)
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def baseline(self) -> float:
        return float(self.height - BOTTOM)

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _v, _t in self.compare)

    @property
    def empty(self) -> bool:
        return not any(b.value for b in self.bars) and not any(v for *_, v, _t in self.compare)


def nice_top(value: float, whole: bool = True) -> tuple[float, float]:
    """(axis top, step): the smallest 1-2-5 step whose 4 steps reach ``value``; ``whole``:
    steps of at least 1 (counts have no half pupils)."""
    if value <= 0:
        return 1.0, 1.0
    raw = max(value / 4, 1.0) if whole else value / 4
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        step = m * power
        if step * 4 >= value:
            break
    if step >= 1:
        step = float(math.ceil(step))
    return step * math.ceil(value / step), step


def bar_chart(
    title: str,
    label_header: str,
    value_header: str,
    points: Sequence[tuple[str, float, str]],
    *,
    compare_header: str | None = None,
    compare: Sequence[tuple[float, str] | None] | None = None,
    tick_text: Callable[[float], str] = lambda v: f"{v:g}",
    floor: float = 0.0,
    joined: bool = True,
    whole: bool = True,
) -> Chart:
    """Bars for ``points`` (label, value, value as shown), left to right; ``compare``: the
    other series' (value, text) per bar (None: no value there); ``floor``: the value at the
    axis' bottom (0 for counts; e.g. 7.0 for arrival times in hours)."""
    values = [v for _l, v, _t in points] + [c[0] for c in compare or [] if c is not None]
    top, step = nice_top(max([floor, *values]) - floor, whole)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    base = HEIGHT - BOTTOM
    n = max(1, len(points))
    slot = plot_w / n
    gap = min(4.0, slot * 0.2)
    every = max(1, math.ceil(n / MAX_LABELS))

    def y_of(value: float) -> float:
        return base - plot_h * max(0.0, value - floor) / top

    others = list(compare or [])
    bars = []
    for i, (label, value, text) in enumerate(points):
        y = y_of(value)
        other = others[i] if i < len(others) else None
        bars.append(Bar(label, value, text, LEFT + i * slot + gap / 2, y, slot - gap, base - y,
                        i % every == 0, other[1] if other is not None else ""))  # fmt: skip
    ticks = [Tick(y_of(floor + k * step), tick_text(floor + k * step))
             for k in range(int(round(top / step)) + 1)]  # fmt: skip
    line = []
    for i, c in enumerate(others):
        if c is not None and i < n:
            line.append((LEFT + (i + 0.5) * slot, y_of(c[0]), c[0], c[1]))
    return Chart(title, label_header, value_header, bars, ticks, compare_header, line, joined)
