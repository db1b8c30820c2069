"""The import layering of ``src/gradcam``: layers import only the ones below them, nothing outside the command
line imports ``gradcam.commands``, and no import cycle exists between modules.

Every ``import`` in every module counts, including those inside functions (a lazy import is still a
dependency). :data:`LAYERS` is the one place where the order is written: top first; modules of one layer
may import each other (without cycles); a module belongs to the first layer with a prefix matching it.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Dict, List, Set, Tuple

SRC = Path(__file__).resolve().parents[1] / "src"

#: Top first. A new module goes into a layer here before it lands (the test fails on an unknown module).
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("command line", ("gradcam.__main__", "gradcam.cli", "gradcam.commands")),
    ("package", ("gradcam",)),  # the public names (gradcam/__init__.py): a facade over everything below
    ("front ends", ("gradcam.integrations.app", "gradcam.integrations.session")),  # gradcam serve: on the API
    ("python api", ("gradcam.api", "gradcam.distributed", "gradcam.medical")),  # medical: volumes from files
    ("pipeline", ("gradcam.pipeline", "gradcam.photos", "gradcam.index", "gradcam.resume")),
    (
        "applications",
        ("gradcam.report", "gradcam.studies", "gradcam.evaluation", "gradcam.integrations", "gradcam.serve"),
    ),
    ("analysis", ("gradcam.vl", "gradcam.neurons")),
    ("models", ("gradcam.models",)),
    ("io", ("gradcam.io", "gradcam.storage")),
    ("methods", ("gradcam.methods",)),
    ("metrics", ("gradcam.metrics",)),
    ("datasets", ("gradcam.datasets",)),
    ("engine", ("gradcam.engine", "gradcam.differentiable", "gradcam.cuts")),
    (
        "core",
        (
            "gradcam.layers",
            "gradcam.targets",
            "gradcam.explanation",
            "gradcam.pixels",
            "gradcam.display",
            "gradcam.volumes",
        ),
    ),
    ("images", ("gradcam.image", "gradcam.regions")),
]

#: Known violations still to remove (each part of a cycle); the xfail test below passes once they are gone.
KNOWN: Dict[Tuple[str, str], str] = {}


def modules() -> Dict[str, Path]:
    """Every module under src/gradcam by dotted name (packages by their own name)."""
    out = {}
    for path in (SRC / "gradcam").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def imports(name: str, path: Path, known: Set[str]) -> Set[str]:
    """The gradcam modules that ``name`` imports anywhere in its file (``from x import y`` counts ``x.y`` when
    that is a module, else ``x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gradcam"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] != "gradcam":
                continue
            if base == "gradcam" and all(alias.name == "__version__" for alias in node.names):
                continue  # the version string, read from the package: not a dependency on what it exports
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    found.discard(name)
    return found


def layer_of(name: str) -> int:
    """Index of the layer ``name`` belongs to (0 = top); a ValueError for a module in no layer."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = name == p or (p != "gradcam" and name.startswith(p + "."))  # the package: __init__ only
            if inside and (best is None or len(p) > best[1]):
                best = (i, len(p))
    if best is None:
        raise ValueError(f"{name} is in no layer: add it to LAYERS in tests/test_layering.py")
    return best[0]


def graph() -> Dict[str, Set[str]]:
    mods = modules()
    names = set(mods)
    return {m: {t for t in imports(m, p, names) if (m, t) not in KNOWN} for m, p in mods.items()}


def upward(g: Dict[str, Set[str]]) -> List[str]:
    return sorted(
        f"{m} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
        for m, ts in g.items()
        for t in ts
        if layer_of(t) < layer_of(m)
    )


def commands_users(g: Dict[str, Set[str]]) -> List[str]:
    allowed = ("gradcam.cli", "gradcam.__main__", "gradcam.commands")
    return sorted(
        f"{m} imports {t}"
        for m, ts in g.items()
        for t in ts
        if t.startswith("gradcam.commands") and not any(m == a or m.startswith(a + ".") for a in allowed)
    )


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for m in modules():
        layer_of(m)


def test_no_layer_imports_a_higher_one():
    assert upward(graph()) == []


def test_only_the_command_line_imports_commands():
    assert commands_users(graph()) == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_known_violations_are_gone():
    mods = modules()
    names = set(mods)
    present = [edge for edge in KNOWN if edge[1] in imports(edge[0], mods[edge[0]], names)]
    assert present == []


def test_the_checks_catch_a_bad_import():
    """The rules fire: an upward import, a commands import from the library, and a cycle."""
    g = graph()
    g["gradcam.image"] = g["gradcam.image"] | {"gradcam.metrics"}
    g["gradcam.explanation"] = g["gradcam.explanation"] | {"gradcam.report.render"}
    g["gradcam.api"] = g["gradcam.api"] | {"gradcam.commands.explain"}
    g["gradcam.regions"] = g["gradcam.regions"] | {"gradcam.image"}
    assert "gradcam.image (images) imports gradcam.metrics (metrics)" in upward(g)
    assert "gradcam.explanation (core) imports gradcam.report.render (applications)" in upward(g)
    assert commands_users(g) == ["gradcam.api imports gradcam.commands.explain"]
    assert any({"gradcam.image", "gradcam.regions"} <= set(c) for c in cycles(g))
    assert cycles(graph()) == []  # the injected edges only


def test_imports_inside_functions_count(tmp_path):
    f = tmp_path / "mod.py"
    f.write_text("def late():\n    from ..report import render\n    import gradcam.metrics.pointing\n")
    assert imports("gradcam.x.mod", f, {"gradcam.report.render", "gradcam.metrics.pointing"}) == {
        "gradcam.report.render",
        "gradcam.metrics.pointing",
    }
    assert os.path.isdir(SRC / "gradcam")
