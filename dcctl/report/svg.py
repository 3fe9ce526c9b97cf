"""Small pieces of inline SVG for the HTML reports (pure): scales, ticks, text.

Every chart is drawn server-side as SVG inside the page, so a report opens anywhere, offline,
with no script and no request."""
from __future__ import annotations

import html
import math
from typing import Any


def nice_step(span: float, count: int = 5) -> float:
    """A round step (1, 2 or 5 x 10^n) that cuts `span` into about `count` intervals.

    >>> nice_step(10), nice_step(0.37), nice_step(0)
    (2, 0.1, 1)
    """
    if span <= 0 or not math.isfinite(span):
        return 1
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if multiple * magnitude >= raw:
            step = multiple * magnitude
            return int(step) if step >= 1 else round(step, 12)
    return 10 * magnitude  # not reached


def ticks(top: float, count: int = 5) -> list[float]:
    """Round values from 0 to at least `top`.

    >>> ticks(9)
    [0, 2, 4, 6, 8, 10]
    """
    step = nice_step(top, count)
    values, value = [], 0
    while True:
        values.append(round(value, 12))
        if value >= top:
            return values
        value += step


def seconds_label(value: float) -> str:
    """
    >>> seconds_label(0.25), seconds_label(12), seconds_label(90), seconds_label(7200)
    ('0.25 s', '12 s', '1.5 min', '2 h')
    """
    if value >= 3600:
        return f"{value / 3600:g} h"
    if value >= 60:
        return f"{value / 60:g} min"
    return f"{value:g} s"


def text(x: float, y: float, content: Any, anchor: str = "start", css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{klass}>'
            f'{html.escape(str(content))}</text>')


def svg(width: int, height: int, title: str, body: list[str]) -> str:
    """An inline SVG element with an accessible title."""
    return (f'<svg role="img" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}"><title>{html.escape(title)}</title>{"".join(body)}</svg>')
