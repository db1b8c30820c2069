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


def test_parquet_parts_are_the_tables_pyarrow_builds_from_the_rows_without_importing_pandas(tmp_path):
    """The index is parsed from JSON lines by Arrow (``Table.from_pylist`` imports pandas, 0.4-0.7 s): the same
    Parquet bytes as ``from_pylist`` would write, NaN through the Python-object path; a part is read back with
    ``ParquetFile`` (``read_table`` imports pyarrow.dataset, 0.4 s). Neither pandas nor pyarrow.dataset imported."""
    pytest.importorskip("pyarrow")
    import subprocess
    import sys

    code = """
import io, math, sys
from gradcam import index
import pyarrow as pa, pyarrow.parquet as pq
rows = [dict(file="a/\\u00e9.jpg", stem="x", width=3, height=4, rank=1, peak=[1, 2], box=None, score=1.5,
             probability=0.25, updated=1.0, predictions='[{"class": "a"}]'),
        dict(file="b", stem="y", error="bad\\nline", updated=2.0)]
data = index._encode(rows, True)
assert "pandas" not in sys.modules, "pandas imported"
buf = io.BytesIO()
pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in index.COLUMNS} for r in rows], schema=index._schema()), buf)
assert data == buf.getvalue(), "not the bytes from_pylist writes"
rows[0]["score"] = float("nan")
back = pq.ParquetFile(io.BytesIO(index._encode(rows, True))).read().to_pylist()
assert math.isnan(back[0]["score"]) and back[1]["error"] == "bad\\nline" and back[0]["file"] == "a/\\u00e9.jpg"
open(sys.argv[1], "wb").write(data)
assert index._decode(sys.argv[1])[1]["stem"] == "y"
assert "pyarrow.dataset" not in sys.modules, "pyarrow.dataset imported"
print("ok")
"""
    part = str(tmp_path / "part.parquet")
    out = subprocess.run([sys.executable, "-c", code, part], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
