"""Small, deterministic SVG line charts for the leaderboard page: no plotting library, no script,
the same bytes for the same figures (the page is committed and checked for drift)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Matplotlib's "tab10" colours: distinguishable, and familiar from papers' plots.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
WIDTH, HEIGHT = 800, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 330, 16, 44  # margins; the legend sits in the right one
LEGEND_CHARACTERS = 48  # longer labels are cut; the full one shows on hover


@dataclass(frozen=True)
class Series:
    """One line: `points` are (x, y) with y in percent; dashed lines are papers' figures."""

    label: str
    points: tuple[tuple[float, float], ...]
    dashed: bool = False


def line_chart(series: Sequence[Series], x_label: str, y_label: str, title: str) -> str:
    """An inline <svg> of the series on a log2 x axis (K of Recall@K, or code bits)."""
    xs = sorted({x for s in series for x, _ in s.points})
    ys = [y for s in series for _, y in s.points]
    low, high = _y_range(ys)
    place_x = _x_scale(xs)

    def place_y(y: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (high - y) / (high - low)

    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>',
        *_axes(xs, low, high, place_x, place_y, x_label, y_label),
    ]
    for index, line in enumerate(series):
        parts += _line(line, PALETTE[index % len(PALETTE)], index, place_x, place_y)
    parts.append("</svg>")
    return "\n".join(parts)


def _y_range(ys: Sequence[float]) -> tuple[float, float]:
    """Whole tens around the values, so that the grid lines read 60, 70, 80 ..."""
    low = math.floor(min(ys) / 10) * 10
    high = math.ceil(max(ys) / 10) * 10
    return (low, high) if high > low else (low - 10, high + 10)


def _x_scale(xs: Sequence[float]):
    span = (math.log2(xs[-1]) - math.log2(xs[0])) or 1.0
    inner = WIDTH - LEFT - RIGHT

    def place(x: float) -> float:
        if len(xs) == 1:
            return LEFT + inner / 2
        return LEFT + inner * (math.log2(x) - math.log2(xs[0])) / span

    return place


def _axes(xs, low, high, place_x, place_y, x_label: str, y_label: str) -> list[str]:
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" height="{bottom - TOP}" '
             'fill="#ffffff" stroke="#888888"/>']  # fmt: skip
    for tick in range(int(low), int(high) + 1, 10):
        y = place_y(tick)
        parts.append(f'<line x1="{LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(_label(LEFT - 6, y + 4, str(tick), "end"))
    for x in xs:
        parts.append(_label(place_x(x), bottom + 16, f"{x:g}", "middle"))
    parts.append(_label((LEFT + right) / 2, HEIGHT - 6, x_label, "middle"))
    parts.append(
        f'<text x="14" y="{(TOP + bottom) / 2:.1f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + bottom) / 2:.1f})">{escape(y_label)}</text>'
    )
    return parts


def _line(series: Series, colour: str, index: int, place_x, place_y) -> list[str]:
    points = " ".join(f"{place_x(x):.1f},{place_y(y):.1f}" for x, y in sorted(series.points))
    dash = ' stroke-dasharray="6 4"' if series.dashed else ""
    label = escape(series.label)
    parts = [f'<polyline class="series" points="{points}" fill="none" stroke="{colour}" '
             f'stroke-width="3"{dash}><title>{label}</title></polyline>']  # fmt: skip
    for x, y in series.points:
        hover = f"<title>{escape(series.label)}: {y:.2f}</title>"
        parts.append(f'<circle cx="{place_x(x):.1f}" cy="{place_y(y):.1f}" r="3.5" '
                     f'fill="{colour}">{hover}</circle>')  # fmt: skip
    legend_y = TOP + 10 + 18 * index
    legend_x = WIDTH - RIGHT + 12
    parts.append(f'<line x1="{legend_x}" x2="{legend_x + 22}" y1="{legend_y}" y2="{legend_y}" '
                 f'stroke="{colour}" stroke-width="3"{dash}/>')  # fmt: skip
    parts.append(_label(legend_x + 28, legend_y + 4, _short(series.label), "start", series.label))
    return parts


def _label(x: float, y: float, text: str, anchor: str, hover: str = "") -> str:
    title = f"<title>{escape(hover)}</title>" if hover and hover != text else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="12" text-anchor="{anchor}">'
            f"{title}{escape(text)}</text>")  # fmt: skip


def _short(label: str) -> str:
    return label if len(label) <= LEGEND_CHARACTERS else label[: LEGEND_CHARACTERS - 1] + "…"


def escape(value: str) -> str:
    """Text for an HTML or SVG document."""
    return html.escape(value, quote=True)
