"""Small inline SVG charts (no plotting library, no script): line curves and bars with a baseline marked.

Every text that comes from data (titles, method names) is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import math
from html import escape
from typing import Dict, List, Optional, Sequence, Tuple

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
W, H = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 46, 130, 28, 36


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) * (b - a) / span


def _frame(title: str, ylo: float, yhi: float, xlabel: str) -> List[str]:
    y = _scale(ylo, yhi, H - BOTTOM, TOP)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="axis"/>',
    ]
    for i in range(5):
        v = ylo + (yhi - ylo) * i / 4
        out.append(f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">{v:.2f}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{W - RIGHT}" y2="{y(v):.1f}" class="grid"/>')
    if xlabel:
        out.append(
            f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" class="tick" text-anchor="middle">'
            f"{escape(xlabel)}</text>"
        )
    return out


def line_chart(
    series: Dict[str, Sequence[float]],
    title: str,
    xlabel: str = "fraction of pixels changed",
    dashed: Sequence[str] = ("random", "gaussian"),
) -> str:
    """Curves y_i(t), t = i / (len - 1) in [0, 1], one per entry of ``series`` (name -> values), with a legend.

    Names in ``dashed`` (the baselines) are drawn dashed. The y range is [min(0, all), max(1, all)].
    """
    vals = [v for ys in series.values() for v in ys if _finite(v)]
    ylo, yhi = min([0.0] + vals), max([1.0] + vals)
    x = _scale(0.0, 1.0, LEFT, W - RIGHT)
    y = _scale(ylo, yhi, H - BOTTOM, TOP)
    out = _frame(title, ylo, yhi, xlabel)
    for i, (name, ys) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        n = max(len(ys) - 1, 1)
        pts = " ".join(f"{x(j / n):.1f},{y(v):.1f}" for j, v in enumerate(ys) if _finite(v))
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.8"{dash}>'
            f"<title>{escape(name)}</title></polyline>"
        )
        ly = TOP + 6 + 15 * i
        out.append(
            f'<line x1="{W - RIGHT + 8}" y1="{ly}" x2="{W - RIGHT + 24}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2"{dash}/><text x="{W - RIGHT + 28}" y="{ly + 4}" class="legend">'
            f"{escape(name)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def bar_chart(
    bars: Sequence[Tuple[str, float]],
    title: str,
    baseline: Optional[float] = None,
    baseline_label: str = "random",
) -> str:
    """Horizontal bars (name, value), with a dashed vertical line at ``baseline`` labelled ``baseline_label``."""
    bars = [(n, v) for n, v in bars if _finite(v)]
    vals: List[float] = [v for _, v in bars] + (
        [baseline] if baseline is not None and _finite(baseline) else []
    )
    lo, hi = min([0.0] + vals), max([1e-9] + vals)
    h = TOP + 18 * len(bars) + BOTTOM
    x = _scale(lo, hi, LEFT + 100, W - 50)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {h}" width="{W}" height="{h}" '
        f'role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" class="title">{escape(title)}</text>',
    ]
    for i, (name, v) in enumerate(bars):
        top = TOP + 18 * i
        x0, x1 = sorted((x(0.0), x(v)))
        cls = "bar base" if name.split(" · ")[-1] in ("random", "gaussian") else "bar"
        out.append(
            f'<text x="{LEFT + 96}" y="{top + 12}" class="tick" text-anchor="end">{escape(name)}</text>'
        )
        out.append(
            f'<rect x="{x0:.1f}" y="{top + 2}" width="{max(x1 - x0, 0.5):.1f}" height="13" class="{cls}">'
            f"<title>{escape(name)}: {v:.4g}</title></rect>"
        )
        out.append(f'<text x="{x1 + 3:.1f}" y="{top + 12}" class="tick">{v:.3f}</text>')
    if _finite(baseline):
        bx = x(baseline)
        out.append(
            f'<line x1="{bx:.1f}" y1="{TOP - 4}" x2="{bx:.1f}" y2="{h - BOTTOM + 6}" class="baseline"/>'
        )
        out.append(
            f'<text x="{bx:.1f}" y="{h - BOTTOM + 20}" class="tick baseline-label" text-anchor="middle">'
            f"{escape(baseline_label)} = {baseline:.3f}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
