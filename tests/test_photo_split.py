"""The annotated photos: at least 40 objects, split once by file into tuning and held-out halves, and no
script that chooses a default reads the held-out half."""

import ast
import json
from collections import defaultdict
from pathlib import Path

import pytest

from gradcam.evaluation import photos as P

ROOT = Path(__file__).resolve().parent.parent
# Scripts whose output is a default of gradcam (model, size, box threshold, method): tuning half only.
CHOOSERS = [ROOT / "benchmarks" / "photo_defaults.py"]


def test_at_least_40_objects_split_once_by_file():
    doc = json.loads(P.BOXES_FILE.read_text())
    assert len(doc["photos"]) >= 40 and "by file" in doc["split"]
    by_file = defaultdict(set)
    for p in doc["photos"]:
        assert p["split"] in P.SPLITS
        by_file[p["file"]].add(p["split"])
    assert all(len(s) == 1 for s in by_file.values()), "every object of a photo is on the same side"
    halves = [sum(p["split"] == s for p in doc["photos"]) for s in P.SPLITS]
    assert min(halves) >= 15


def test_load_annotated_reads_one_half():
    tuning, held = P.load_annotated(split="tuning"), P.load_annotated(split="held_out")
    assert {p.split for p in tuning} <= {"tuning"} and {p.split for p in held} <= {"held_out"}
    assert not {p.name for p in tuning} & {p.name for p in held}
    with pytest.raises(ValueError, match="split must be one of tuning, held_out or None"):
        P.load_annotated(split="test")


def _calls(tree, name):
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", None)) == name
    ]


@pytest.mark.parametrize("script", CHOOSERS, ids=lambda p: p.name)
def test_no_default_choosing_script_reads_the_held_out_half(script):
    src = script.read_text()
    tree = ast.parse(src)
    calls = _calls(tree, "load_annotated")
    assert calls, f"{script.name} reads the photos through load_annotated"
    for c in calls:
        kw = {k.arg: k.value for k in c.keywords}
        assert isinstance(kw.get("split"), ast.Constant) and kw["split"].value == "tuning", (
            f"{script.name}:{c.lineno} must call load_annotated(split='tuning')"
        )
    consts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)] + [
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    ]
    assert not [c for c in consts if c == "held_out"], "no string 'held_out' in a choosing script"
    assert not {"BOXES_FILE", "photo_boxes"} & set(names) and "photo_boxes.json" not in src
