"""Resume never keeps a stale result: reruns recompute exactly the photos whose input, model or options changed."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from gradcam import resume
from gradcam.cli import main


def _photo(path, seed=0, size=(96, 64)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _summary(err: str) -> str:
    return err[err.index("gradcam: explained") :].splitlines()[0]


@pytest.fixture()
def one_photo(tmp_path):
    img = tmp_path / "in" / "p.png"
    img.parent.mkdir()
    _photo(img)
    return img, tmp_path / "out"


def test_changed_target_recomputes_same_command_skips_damaged_output_is_redone(one_photo, capsys):
    img, out = one_photo
    base = ["explain", str(img), "--out", str(out), "--json"]
    assert main(base + ["--target", "tabby"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image, 0 failed")
    rec = json.loads((out / "p.json").read_text())
    assert [e["id"] for e in rec["explanations"]] == [281]
    png_tabby = (out / "p.png").read_bytes()
    record = json.loads((out / ".gradcam" / "p.json").read_text())
    assert record["fingerprint"]["options"]["target"] == 281
    assert record["outputs"] == {"p.png": len(png_tabby), "p.json": (out / "p.json").stat().st_size}

    # The same command: nothing recomputed, files untouched.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(base + ["--target", "tabby"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 0 images, 1 already done")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # Another target into the same folder: recomputed, the record and the overlay are the new class's.
    assert main(base + ["--target", "285"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image, 0 failed")
    assert [e["id"] for e in json.loads((out / "p.json").read_text())["explanations"]] == [285]
    assert (out / "p.png").read_bytes() != png_tabby
    assert json.loads((out / ".gradcam" / "p.json").read_text())["fingerprint"]["options"]["target"] == 285

    # A truncated overlay (same name, half the bytes) is redone, and the result is a whole PNG again.
    full = (out / "p.png").read_bytes()
    (out / "p.png").write_bytes(full[: len(full) // 2])
    assert main(base + ["--target", "285"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image, 0 failed")
    assert (out / "p.png").read_bytes() == full  # deterministic: the same bytes as before the damage

    # An empty JSON sidecar is redone too.
    (out / "p.json").write_bytes(b"")
    assert main(base + ["--target", "285"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image, 0 failed")
    assert json.loads((out / "p.json").read_text())["explanations"][0]["id"] == 285

    # --force redoes an up-to-date photo: every output rewritten (new mtimes), the summary says so.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert main(base + ["--target", "285", "--force"]) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image, 0 failed")
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert set(after) == set(before) and all(after[p] != before[p] for p in before)


@pytest.mark.parametrize(
    "change",
    [
        ["--method", "cam"],
        ["--layer", "_blocks.15"],
        ["--alpha", "0.3"],
        ["--colormap", "viridis"],
        ["--colorbar"],
        ["--top", "2"],
        ["--no-json"],
        ["touch-input"],
        ["weights"],
        ["no-record"],
        ["--max-side", "320"],
        ["upgrade"],
    ],
)
def test_each_result_changing_option_recomputes(one_photo, capsys, change, tmp_path, monkeypatch):
    img, out = one_photo
    base = ["explain", str(img), "--out", str(out), "--json"]
    assert main(base) == 0
    capsys.readouterr()
    if change == ["--no-json"]:
        args = base[:-1]
    elif change == ["touch-input"]:
        st = img.stat()
        os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, a later mtime
        args = base
    elif change == ["weights"]:
        import torch

        import gradcam

        w = tmp_path / "w.pt"
        torch.save(gradcam.load_model().model.state_dict(), w)
        assert main(base + ["--weights", str(w)]) == 0  # a weights file: recomputed (no weights before)
        assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image")
        st = w.stat()
        os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the weights file replaced
        args = base + ["--weights", str(w)]
    elif change == ["upgrade"]:
        import gradcam

        monkeypatch.setattr(gradcam, "__version__", gradcam.__version__ + ".post1")  # a newer gradcam
        args = base
    elif change == ["no-record"]:
        (out / ".gradcam" / "p.json").unlink()  # outputs of an older gradcam, or of unknown options
        args = base
    else:
        args = base + change
    assert main(args) == 0
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 1 image")
    assert main(args) == 0  # and the new state is then up to date
    assert _summary(capsys.readouterr().err).startswith("gradcam: explained 0 images, 1 already done")


def test_fingerprint_and_output_checks(tmp_path):
    f = tmp_path / "a.png"
    _photo(f)
    fp = resume.fingerprint(str(f), {"target": 3, "size": (1, 2)})
    assert fp == {
        "version": resume.FORMAT,
        "options": {"size": [1, 2], "target": 3},
        "input": {"path": os.path.realpath(f), "size": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns},
    }
    assert resume.output_ok(str(f)) and resume.output_ok(str(f), f.stat().st_size)
    assert not resume.output_ok(str(f), f.stat().st_size + 1)  # not the size the record vouches for
    data = f.read_bytes()
    f.write_bytes(data[:-1])
    assert not resume.output_ok(str(f))  # no IEND at the end: cut
    f.write_bytes(b"x" * len(data))
    assert not resume.output_ok(str(f))  # not a PNG
    j = tmp_path / "a.json"
    j.write_text('{"a": ')
    assert not resume.output_ok(str(j))
    j.write_text('{"a": 1}')
    assert resume.output_ok(str(j))
    rec = resume.record_path(str(tmp_path), "sub/a")
    assert rec == os.path.join(str(tmp_path), ".gradcam", "sub", "a.json")
    resume.write_record(rec, {"k": 1}, [str(j)])
    assert resume.is_up_to_date(rec, {"k": 1}, [str(j)])
    assert not resume.is_up_to_date(rec, {"k": 2}, [str(j)])
    assert not resume.is_up_to_date(rec, {"k": 1}, [str(j), str(tmp_path / "b.png")])  # another output set
    open(rec, "w").write("{")  # noqa: SIM115 - an unreadable record
    assert not resume.is_up_to_date(rec, {"k": 1}, [str(j)])
