"""Markdown tables from rows of results (one row per method)."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

Column = Tuple[str, str, str]  # (key, header, format)

#: Below this classification accuracy a model's table marks nothing best: its maps explain a model that is
#: often wrong, and differences between methods are noise (``gradcam evaluate --quick`` trains small CNNs).
MIN_ACCURACY_FOR_BEST = 0.8


def accuracy_caveat(model: str, accuracy: float, threshold: float = MIN_ACCURACY_FOR_BEST) -> str:
    """The caveat printed at the top of a table whose model is below ``threshold`` accuracy."""
    return (
        f"**Caveat:** the {model} classifies {accuracy:.3f} of its test images right, below {threshold}: "
        f"its maps explain a model that is often wrong, so nothing is marked best in its table."
    )


def fmt(value, spec: str = ".3f") -> str:
    """A number formatted with ``spec``; ``None``/NaN as an en dash; strings as they are."""
    if value is None:
        return "–"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "–"
    return format(value, spec)


def markdown_table(rows: Sequence[Dict], columns: Sequence[Column], first: Optional[Column] = None) -> str:
    """A Markdown table with one line per row; ``columns`` are (key, header, format spec)."""
    cols: List[Column] = ([first] if first else []) + list(columns)
    head = "| " + " | ".join(h for _, h, _ in cols) + " |"
    sep = "| " + " | ".join("---" if i == 0 and first else "---:" for i in range(len(cols))) + " |"
    lines = [head, sep]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(k), f) for k, _, f in cols) + " |")
    return "\n".join(lines)


def best_marks(
    rows: Sequence[Dict],
    columns: Sequence[Column],
    lower_better: Sequence[str] = (),
    skip: Sequence[str] = ("random", "random-map", "gaussian"),
    accuracy: Optional[float] = None,
    min_accuracy: float = MIN_ACCURACY_FOR_BEST,
) -> None:
    """Bold the best value of each numeric column in place (baselines excluded), by formatting it as a
    string ``**x**``. Nothing is marked when the model's ``accuracy`` is below ``min_accuracy``."""
    if accuracy is not None and accuracy < min_accuracy:
        return
    for key, _, spec in columns:
        vals = [
            (r[key], i)
            for i, r in enumerate(rows)
            if isinstance(r.get(key), (int, float))
            and r.get("method") not in skip
            and not (isinstance(r.get(key), float) and math.isnan(r[key]))
        ]
        if not vals:
            continue
        best = min(vals)[0] if key in lower_better else max(vals)[0]
        for v, i in vals:
            if v == best:
                rows[i][key] = f"**{format(v, spec)}**"
