"""The results index: parts per batch, newest rows of a photo win, compaction, JSON Lines without pyarrow."""

from __future__ import annotations

import json
import os

import pytest
import torch
from PIL import Image

from gradcam import index
from gradcam.api import ImageResult


def _result(src="a.jpg", w=40, h=20, boxes=([0, 0, 10, 5], None)):
    return ImageResult(
        image=Image.new("RGB", (w, h)),
        source=src,
        predictions=[("cat", 1, 0.75), ("dog", 2, 0.25)],
        class_ids=[1, 2],
        classes=["cat", "dog"],
        scores=[3.5, 1.5],
        probabilities=[0.75, 0.25],
        input_maps=torch.zeros(2, 4, 8),
        peaks=[[3, 2], None],
        boxes=list(boxes),
        layer="l",
        method="gradcam",
        model="m",
    )


def test_result_rows_one_per_class_with_box_fraction():
    rows = index.result_rows(
        _result(), "a", ["out/a.top1.png", "out/a.top2.png"], "out/a.json", "out/a.maps.pt"
    )
    assert [(r["rank"], r["class"], r["class_id"], r["score"], r["probability"]) for r in rows] == [
        (1, "cat", 1, 3.5, 0.75),
        (2, "dog", 2, 1.5, 0.25),
    ]
    assert rows[0]["box"] == [0, 0, 10, 5] and rows[0]["box_fraction"] == 10 * 5 / (40 * 20)
    assert rows[1]["box"] is None and rows[1]["peak"] is None and rows[1]["box_fraction"] == 0.0
    assert [r["overlay"] for r in rows] == ["out/a.top1.png", "out/a.top2.png"]
    assert {(r["width"], r["height"], r["record"], r["maps"], r["error"]) for r in rows} == {
        (40, 20, "out/a.json", "out/a.maps.pt", None)
    }
    assert set(rows[0]) == set(index.COLUMNS)


@pytest.mark.parametrize("parquet", [True, False])
def test_parts_newest_rows_win_and_compaction(tmp_path, monkeypatch, parquet):
    if parquet:
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(index, "has_parquet", lambda: False)
    out = str(tmp_path)
    index.append(out, index.result_rows(_result("a.jpg"), "a", ["a1", "a2"], None))
    index.append(out, [index.failure_row("b.jpg", "b", "empty file (0 bytes)", "m", "gradcam")])
    assert index.append(out, []) is None
    # An interrupted run: the parts are read as they are.
    assert [(r["stem"], r["rank"], r["error"]) for r in index.read_index(out)] == [
        ("a", 1, None),
        ("a", 2, None),
        ("b", None, "empty file (0 bytes)"),
    ]
    path = index.compact(out)
    assert path == os.path.join(out, "index.parquet" if parquet else "index.jsonl")
    assert not os.path.exists(os.path.join(out, index.PARTS))  # no parts left, nor their folder
    # A later run redoes b (now explained, one class) and a with a single class: their old rows go.
    index.append(out, index.result_rows(_result("b.jpg", boxes=([1, 1, 2, 2],)), "b", ["b1"], None)[:1])
    index.append(out, index.result_rows(_result("a.jpg"), "a", ["a1"], None)[:1])
    index.compact(out)
    rows = index.read_index(out)
    assert [(r["stem"], r["rank"], r["overlay"], r["error"]) for r in rows] == [
        ("a", 1, "a1", None),
        ("b", 1, "b1", None),
    ]
    # A failure retried with the same reason leaves the file untouched; a redone photo rewrites it.
    index.append(out, [index.failure_row("c.jpg", "c", "not an image", "m", "gradcam")])
    index.compact(out)
    stamp = os.stat(path).st_mtime_ns
    index.append(out, [index.failure_row("c.jpg", "c", "not an image", "m", "gradcam")])
    assert index.compact(out) == path and os.stat(path).st_mtime_ns == stamp
    assert not os.path.exists(os.path.join(out, index.PARTS))
    index.append(out, index.result_rows(_result("b.jpg", boxes=([1, 1, 2, 2],)), "b", ["b1"], None)[:1])
    index.compact(out)
    assert os.stat(path).st_mtime_ns != stamp
    assert [r["stem"] for r in index.read_index(out)] == ["a", "b", "c"]
    if not parquet:
        lines = open(path).read().splitlines()
        assert [json.loads(ln)["stem"] for ln in lines] == ["a", "b", "c"]


def test_switching_format_keeps_rows_and_leaves_one_index(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow")
    out = str(tmp_path)
    monkeypatch.setattr(index, "has_parquet", lambda: False)
    index.append(out, [index.failure_row("a.jpg", "a", "not an image", "m", "gradcam")])
    index.compact(out)
    monkeypatch.setattr(index, "has_parquet", lambda: True)
    index.append(out, [index.failure_row("b.jpg", "b", "not an image", "m", "gradcam")])
    index.compact(out)
    assert sorted(f for f in os.listdir(out) if f.startswith("index")) == ["index.parquet"]
    assert [r["stem"] for r in index.read_index(out)] == ["a", "b"]
