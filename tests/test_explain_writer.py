"""The local engine's background writer (``WRITE_AHEAD``): same files as writing synchronously; a write error
inside the writer thread is that photo's failure (reported, in failures.json and the index, no record)."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import skimage.data
from PIL import Image

from gradcam import index
from gradcam.cli import main
from gradcam.pipeline import local as local_executor
from gradcam.pipeline import steps as pipeline_steps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:  # small real photos: 3 batches of 2 at --batch-size 2
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").reduce(2).save(
            d / f"{name}.jpg", quality=90
        )
    (d / "broken.jpg").write_text("not an image")
    return d


def _run(folder, out, ahead, monkeypatch) -> int:
    monkeypatch.setattr(local_executor, "WRITE_AHEAD", ahead)
    return main(
        ["explain", str(folder), "--out", str(out), "--json", "--top", "2", "--maps", "--batch-size", "2"]
    )


def _files(out) -> dict:
    return {
        os.path.relpath(os.path.join(r, f), out): os.path.join(r, f)
        for r, _, fs in os.walk(out)
        for f in fs
        if not f.startswith("index.")
    }


def test_writer_gives_the_synchronous_files(folder, tmp_path, monkeypatch, capsys):
    sync, bg = tmp_path / "sync", tmp_path / "bg"
    assert _run(folder, sync, 0, monkeypatch) == 1  # the broken file fails in both
    said_sync = capsys.readouterr()
    assert _run(folder, bg, 1, monkeypatch) == 1
    said_bg = capsys.readouterr()
    fs, fb = _files(sync), _files(bg)
    assert sorted(fs) == sorted(fb)
    assert sum(k.endswith(".png") for k in fs) == 2 * len(PHOTOS)
    assert sum(k.startswith(".gradcam") for k in fs) == len(PHOTOS)
    for rel in fs:
        if rel.endswith(".png"):  # pixel-identical overlays
            with Image.open(fs[rel]) as a, Image.open(fb[rel]) as b:
                assert np.array_equal(np.asarray(a), np.asarray(b)), rel
        elif not rel.endswith(".maps.pt"):  # records, JSON, failures.json: byte-identical
            with open(fs[rel], "rb") as a, open(fb[rel], "rb") as b:
                assert a.read() == b.read(), rel
    # Same index rows (output paths relative to their folder; not the time of writing) and the same printed report, in order.
    rows = [
        [
            {
                k: (v.replace(str(o), "OUT") if isinstance(v, str) else v)
                for k, v in r.items()
                if k != "updated"
            }
            for r in index.read_index(str(o))
        ]
        for o in (sync, bg)
    ]
    assert rows[0] == rows[1] and len(rows[0]) == 2 * len(PHOTOS) + 1
    assert said_sync.out.replace(str(sync), "OUT") == said_bg.out.replace(str(bg), "OUT")


def test_write_error_in_the_writer_is_that_photos_failure(folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real, threads = pipeline_steps.atomic_write, []

    def failing(path, data):
        if os.path.basename(path) == "coffee.top2.png":
            threads.append(threading.current_thread().name)
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(pipeline_steps, "atomic_write", failing)
    assert _run(folder, out, 1, monkeypatch) == 1
    err = capsys.readouterr().err
    assert threads and threads[0].startswith("gradcam-writer")  # it did fail inside the writer thread
    reason = "cannot write its outputs (OSError: [Errno 28] No space left on device)"
    assert f"skipped {folder / 'coffee.jpg'}: {reason}" in err
    assert "explained 4 images, 2 failed" in err
    failures = json.loads((out / "failures.json").read_text())
    assert {f["file"]: f["reason"] for f in failures} == {
        str(folder / "coffee.jpg"): reason,
        str(folder / "broken.jpg"): "not an image (format not recognised)",
    }
    assert not (out / ".gradcam" / "coffee.json").exists()  # no record: a rerun redoes it
    assert (out / ".gradcam" / "chelsea.json").exists() and (out / "rocket.top2.png").exists()
    rows = {r["file"]: r for r in index.read_index(str(out)) if r["file"] == str(folder / "coffee.jpg")}
    assert rows[str(folder / "coffee.jpg")]["error"] == reason
    # The rerun (no error now) redoes coffee only.
    monkeypatch.setattr(pipeline_steps, "atomic_write", real)
    assert _run(folder, out, 1, monkeypatch) == 1  # broken.jpg still fails
    err = capsys.readouterr().err
    assert "explained 1 image, 4 already done" in err and (out / ".gradcam" / "coffee.json").exists()
