"""The evaluation part of a report: ``evaluation.json`` (``gradcam evaluate --out``) as tables and SVG charts.

For every table of results (a ``rows`` list of one dict per method): an HTML table, one bar chart per
measure with the ``random`` baseline's value marked, and the deletion/insertion curves (``deletion_curve``,
``insertion_curve``: mean class probability after each step) and the sanity-check curves per method when
the rows carry them. Nested results without rows (vision and language) become key/value tables, and
groups of ``{"gradcam": ..., "random": ...}`` become bars. All text is escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Dict, Iterator, List, Tuple

from .svg import bar_chart, line_chart

SKIP_MEASURES = ("seconds", "avg_increase")
CURVES = (
    ("deletion_curve", "deletion curve (lower is better)"),
    ("insertion_curve", "insertion curve (higher is better)"),
    ("sanity_curve", "sanity check: rank correlation ρ (lower is better)"),
)


def _headers(title: str) -> Dict[str, str]:
    """Column headers of ``gradcam evaluate``'s tables (the mosaic's, or the synthetic scenes')."""
    try:
        from ..evaluation.runner import MOSAIC_COLUMNS, SYNTH_COLUMNS
    except Exception:  # noqa: BLE001 - headers are cosmetic; the keys are shown instead
        return {}
    return {k: h for k, h, _ in (MOSAIC_COLUMNS if title.startswith("mosaic") else SYNTH_COLUMNS)}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(v) -> str:
    if _num(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    return "–" if v is None else str(v)


def _tables(results: dict, path: str = "") -> Iterator[Tuple[str, List[dict]]]:
    """(title, rows) of every ``rows`` list in the nested results."""
    for key, val in results.items():
        if not isinstance(val, dict):
            continue
        here = f"{path} / {key}" if path else str(key)
        if isinstance(val.get("rows"), list):
            yield here, [r for r in val["rows"] if isinstance(r, dict)]
        yield from _tables({k: v for k, v in val.items() if k != "rows"}, here)


def rows_html(title: str, rows: List[dict], headers: Dict[str, str]) -> str:
    """A table, bars per measure (random marked) and curves for one ``rows`` list."""
    measures = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in SKIP_MEASURES and any(_num(r.get(k)) for r in rows)
    ]
    head = "".join(f"<th>{escape(headers.get(k, k))}</th>" for k in measures)
    body = []
    for r in rows:
        note = f' <span class="note">{escape(str(r["note"]))}</span>' if r.get("note") else ""
        cells = "".join(f"<td>{escape(_fmt(r.get(k)))}</td>" for k in measures)
        body.append(f"<tr><th>{escape(str(r.get('method', '')))}{note}</th>{cells}</tr>")
    out = [
        f'<section class="eval-block"><h3>{escape(title)}</h3>',
        f'<table class="results"><thead><tr><th>method</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>',
        '<div class="charts">',
    ]
    for key, label in CURVES:
        series = {str(r.get("method", "")): r[key] for r in rows if isinstance(r.get(key), list)}
        if series:
            out.append(
                line_chart(
                    series,
                    label,
                    "layers randomised, top to bottom"
                    if key == "sanity_curve"
                    else "fraction of pixels changed",
                )
            )
    for k in measures:
        bars = [(str(r.get("method", "")), r[k]) for r in rows if _num(r.get(k))]
        base = next((r[k] for r in rows if r.get("method") == "random" and _num(r.get(k))), None)
        out.append(bar_chart(bars, headers.get(k, k), baseline=base))
    out.append("</div></section>")
    return "\n".join(out)


def _leaves(d: dict, path: str = "") -> Iterator[Tuple[str, object]]:
    for k, v in d.items():
        p = f"{path}.{k}" if path else str(k)
        if isinstance(v, dict):
            yield from _leaves(v, p)
        elif _num(v) or isinstance(v, str):
            yield p, v


def _groups(d: dict, path: str = "") -> Iterator[Tuple[str, Dict[str, dict]]]:
    """Dicts whose values are dicts holding a numeric ``random`` (per-category method vs random)."""
    subs = {k: v for k, v in d.items() if isinstance(v, dict)}
    if subs and all(_num(v.get("random")) for v in subs.values()):
        yield path, subs
        return
    for k, v in subs.items():
        yield from _groups(v, f"{path}.{k}" if path else str(k))


def nested_html(title: str, results: dict) -> str:
    """Key/value table and bars (each category's methods next to its random baseline) of nested results."""
    out = [f'<section class="eval-block"><h3>{escape(title)}</h3><div class="charts">']
    for gpath, subs in _groups(results):
        bars = [
            (f"{cat} · {m}", v)
            for cat, d in subs.items()
            for m, v in d.items()
            if _num(v) and m not in ("n",)
        ]
        out.append(bar_chart(bars, f"{title}: {gpath}", baseline=None))
    out.append("</div>")
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(_fmt(v))}</td></tr>" for k, v in _leaves(results))
    out.append(
        f'<details><summary>all numbers</summary><table class="kv"><tbody>{rows}</tbody></table></details>'
    )
    out.append("</section>")
    return "\n".join(out)


def evaluation_html(ev: dict) -> str:
    """The whole evaluation section for the contents of ``evaluation.json``."""
    results = ev.get("results", {})
    parts = ['<section id="evaluation"><h2>Evaluation</h2>']
    if ev.get("command"):
        parts.append(
            f'<p class="meta">made by <code>{escape(str(ev["command"]))}</code>; wall time '
            f"{escape(_fmt(ev.get('wall_seconds')))} s, torch {escape(str(ev.get('torch', '')))}</p>"
        )
    with_rows = set()
    for title, rows in _tables(results):
        parts.append(rows_html(title, rows, _headers(title)))
        with_rows.add(title.split(" / ")[0])
    for key, val in results.items():
        if key not in with_rows and isinstance(val, dict):
            parts.append(
                nested_html(
                    str(key), val.get("results", val) if isinstance(val.get("results"), dict) else val
                )
            )
    notes = ev.get("notes") or []
    if notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f"<li>{escape(str(n))}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)
