"""Every function and method in src/gradcam is at most 80 lines long."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 80
SRC = Path(__file__).resolve().parents[1] / "src" / "gradcam"


def _long_functions() -> list[str]:
    """Return "path:line name (N lines)" for every function over MAX_LINES."""
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > MAX_LINES:
                    rel = path.relative_to(SRC.parents[1])
                    offenders.append(f"{rel}:{node.lineno} {node.name} ({length} lines)")
    return offenders


def test_no_function_is_longer_than_80_lines() -> None:
    offenders = _long_functions()
    assert not offenders, f"functions over {MAX_LINES} lines:\n" + "\n".join(offenders)
