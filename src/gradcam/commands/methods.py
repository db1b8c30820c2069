"""``gradcam methods``: print every registered method with its metadata (a table, or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import List

COLUMNS = (
    ("name", "NAME"),
    ("family", "FAMILY"),
    ("output", "OUTPUT"),
    ("needs_gradients", "GRADIENTS"),
    ("forward_passes", "FORWARDS/IMAGE"),
    ("handles_tokens", "TOKENS"),
    ("handles_volumes", "VOLUMES"),
    ("options", "OPTIONS"),
)


def register(subparsers) -> None:
    """Add the ``methods`` subcommand."""
    p = subparsers.add_parser(
        "methods",
        help="list the explanation methods (--method NAME) and what each needs and handles",
        description="List every registered explanation method: its family, whether it needs gradients, forward "
        "passes per image (C: the layer's channels), whether it handles token models and volumes, and "
        "the call options it honours (the others are refused with a clear error).",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of the methods' metadata instead")
    p.set_defaults(func=run)


def _cell(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (tuple, list)):
        return ",".join(value) or "-"
    return str(value)


def format_table(rows: List[dict]) -> str:
    """The metadata rows as an aligned text table (one line per method, then its summary indented)."""
    cells = [[head for _, head in COLUMNS]] + [[_cell(r[key]) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    lines = []
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON) of :func:`gradcam.methods.registry.table`."""
    from ..methods import registry

    rows = [info.as_dict() for info in registry.table()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
    return 0
