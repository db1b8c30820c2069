"""``gradcam explain --box largest|peak|all``: the rule makes the box, is stored as ``box_rule`` and is part of
the resume key."""

from __future__ import annotations

import json

import torch

from gradcam.cli import main
from gradcam.image import boxes, scale_box


def test_box_rule_option_stored_and_in_the_resume_key(tmp_path, capsys):
    out = tmp_path / "out"
    seen = {}
    for rule in ("largest", "peak", "all"):
        capsys.readouterr()
        assert main(["explain", "--demo", "--out", str(out), "--json", "--maps", "--box", rule]) == 0
        assert "explained 1 image" in capsys.readouterr().err  # a new rule is a new output, not a resumed one
        rec = json.loads((out / "demo_chelsea.json").read_text())
        ex = rec["explanations"][0]
        maps = torch.load(out / "demo_chelsea.maps.pt")  # (K, h, w): the maps the box was made from
        h, w = maps.shape[-2:]
        b, _ = boxes(maps[:1], ex["box_threshold"], max_side=96, rule=rule)
        assert ex["box_rule"] == rule and ex["box"] == scale_box(b[0].tolist(), (w, h), tuple(rec["size"]))
        seen[rule] = ex["box"]
    x0, y0, x1, y1 = seen["all"]
    for rule in ("largest", "peak"):  # "all" surrounds every segment, so it holds the others
        a0, b0, a1, b1 = seen[rule]
        assert x0 <= a0 and y0 <= b0 and a1 <= x1 and b1 <= y1
    assert main(["explain", "--demo", "--out", str(out), "--json", "--maps", "--box", "all"]) == 0
    assert "1 already done" in capsys.readouterr().err
