"""The Ray engine gives the local engine's results: same records, maps, failures, index; and it resumes.

Real photos: 16 of foolbox's labelled ImageNet photos plus scikit-image's chelsea and coffee, and three
broken files. One local Ray (2 CPUs) serves the whole module.
"""

from __future__ import annotations

import glob
import json
import os
import shutil

import pytest

ray = pytest.importorskip("ray")

import skimage.data  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from gradcam import index  # noqa: E402
from gradcam.cli import main  # noqa: E402
from gradcam.distributed import explain_dataset, pool_shape  # noqa: E402

BROKEN = {
    "cut.jpg": "truncated or corrupt image data",
    "empty.png": "empty file",
    "notes.jpg": "not an image",
}
PATH_COLUMNS = ("file", "overlay", "record", "maps")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import foolbox

    folder = tmp_path_factory.mktemp("photos")
    data = os.path.join(os.path.dirname(foolbox.__file__), "data")
    for f in sorted(glob.glob(os.path.join(data, "imagenet_*.jpg")))[:16]:
        shutil.copy(f, folder / os.path.basename(f))
    Image.fromarray(skimage.data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.png")
    (folder / "notes.jpg").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    whole = (folder / "imagenet_00_243.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    return folder


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(photos, tmp_path_factory, local_ray):
    root = tmp_path_factory.mktemp("runs")
    opts = {"top_k": 2, "maps": True, "batch_size": 4}
    loc = explain_dataset(str(photos), out=str(root / "local"), engine="local", **opts)
    ray_ = explain_dataset(str(photos), out=str(root / "ray"), engine="ray", threads=1, **opts)
    return root, loc, ray_


def _records(out):
    return {
        os.path.basename(f): json.loads(open(f).read())
        for f in sorted(glob.glob(os.path.join(out, "*.json")))
        if os.path.basename(f) != "failures.json"
    }


def _rows(out):
    """Index rows without the time stamp and with output paths relative to the output folder."""
    rows = []
    for r in index.read_index(out):
        r = dict(r)
        r.pop("updated")
        for c in PATH_COLUMNS[1:]:
            r[c] = None if r[c] is None else os.path.relpath(r[c], out)
        rows.append(r)
    return rows


def test_ray_and_local_runs_give_the_same_records_maps_failures_and_index(runs, photos):
    root, loc, ray_ = runs
    # The same summary: 18 photos explained, the same 3 failures (path and reason), exit code 1.
    assert (loc.explained, loc.skipped, ray_.explained, ray_.skipped) == (18, 0, 18, 0)
    assert sorted(loc.failed) == sorted(ray_.failed)
    assert {os.path.basename(p): r.split(" (")[0] for p, r in ray_.failed} == BROKEN
    assert loc.exit_code == ray_.exit_code == 1 and (loc.engine, ray_.engine) == ("local", "ray")

    # Identical JSON records (classes, scores, probabilities, peaks, boxes, top-5), photo by photo.
    rec_l, rec_r = _records(root / "local"), _records(root / "ray")
    assert len(rec_l) == 18 and rec_l == rec_r
    # They are real answers: foolbox's label (in the file name) is among the top-2 classes of most photos.
    hits = [
        int(n.split("_")[2].split(".")[0]) in [e["id"] for e in r["explanations"]]
        for n, r in rec_l.items()
        if n.startswith("imagenet")
    ]
    assert sum(hits) >= 14, hits

    # Maps equal to 1e-6 (saved by --maps at the input's resolution), overlays the same pixels.
    for f in sorted(glob.glob(str(root / "local" / "*.maps.pt"))):
        a = torch.load(f, weights_only=True)
        b = torch.load(f.replace(str(root / "local"), str(root / "ray")), weights_only=True)
        assert a.shape[0] == 2 and a.shape == b.shape and (a - b).abs().max().item() <= 1e-6, f
        assert a.amax(dim=(1, 2)).tolist() == [1.0, 1.0]
    for f in sorted(glob.glob(str(root / "local" / "*.png"))):
        with Image.open(f) as x, Image.open(f.replace(str(root / "local"), str(root / "ray"))) as y:
            assert x.tobytes() == y.tobytes(), f

    # The same index: one row per photo and class (2 each) plus one per failure, as Parquet.
    assert loc.index == str(root / "local" / "index.parquet") and ray_.index == str(
        root / "ray" / "index.parquet"
    )
    rows_l, rows_r = _rows(str(root / "local")), _rows(str(root / "ray"))
    assert rows_l == rows_r and len(rows_l) == 18 * 2 + 3
    assert not os.path.exists(root / "ray" / index.PARTS) or not os.listdir(root / "ray" / index.PARTS)


def test_index_rows_agree_with_the_records(runs):
    root, loc, _ = runs
    recs = _records(root / "local")
    rows = [r for r in index.read_index(str(root / "local")) if r["error"] is None]
    for r in rows:
        rec = recs[r["stem"] + ".json"]
        ex = rec["explanations"][r["rank"] - 1]
        assert (r["class"], r["class_id"], r["peak"], r["box"]) == (
            ex["class"],
            ex["id"],
            ex["peak"],
            ex["box"],
        )
        assert abs(r["score"] - ex["score"]) <= 5e-7 and abs(r["probability"] - ex["probability"]) <= 5e-7
        assert [r["width"], r["height"]] == rec["size"]
        x0, y0, x1, y1 = r["box"]
        assert r["box_fraction"] == pytest.approx(
            (x1 - x0) * (y1 - y0) / (r["width"] * r["height"]), rel=1e-12
        )
    failures = {
        os.path.basename(r["file"]): r["error"].split(" (")[0]
        for r in index.read_index(str(root / "local"))
        if r["error"] is not None
    }
    assert failures == BROKEN


def test_a_second_ray_run_skips_up_to_date_outputs_and_redoes_a_touched_photo(runs, photos, capsys):
    root, _, _ = runs
    out = str(root / "ray")
    before = {f: os.stat(f).st_mtime_ns for f in glob.glob(os.path.join(out, "*.*"))}
    assert (
        len(before) == 18 * 4 + 2
    )  # two overlays, a record and the maps per photo; the index; failures.json
    rows_before = _rows(out)
    capsys.readouterr()
    # The CLI with --engine ray: every good photo is skipped, only the broken files are tried again.
    rc = main(["explain", str(photos), "--out", out, "--json", "--maps", "--top", "2", "--engine", "ray"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "explained 0 images, 18 already done" in err and "3 failed" in err
    assert {f: os.stat(f).st_mtime_ns for f in before} == before
    assert _rows(out) == rows_before
    # A touched input photo (new mtime) is redone; the rest stays skipped.
    photo = photos / "imagenet_03_990.jpg"
    st = os.stat(photo)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    s = explain_dataset(str(photos), out=out, engine="ray", top_k=2, maps=True, threads=1)
    assert (s.explained, s.skipped, len(s.failed)) == (1, 17, 3)
    changed = sorted(os.path.basename(f) for f, t in before.items() if os.stat(f).st_mtime_ns != t)
    assert changed == [
        "imagenet_03_990.json",
        "imagenet_03_990.maps.pt",
        "imagenet_03_990.top1.png",
        "imagenet_03_990.top2.png",
        "index.parquet",
    ]
    # The same rows after the redo; alone in its batch, the photo's numbers may move by float32 rounding
    # (CPU kernels sum in a batch-size-dependent order), and so may the 6th decimal of its top-5 probabilities.
    after = _rows(out)
    assert len(after) == len(rows_before)
    numeric = ("score", "probability", "box_fraction", "predictions")
    for a, b in zip(after, rows_before):
        if a["stem"] != "imagenet_03_990":
            assert a == b
            continue
        for c in ("score", "probability", "box_fraction"):
            assert a[c] == pytest.approx(b[c], rel=1e-5)
        pa, pb = json.loads(a["predictions"]), json.loads(b["predictions"])
        assert [(p["class"], p["id"]) for p in pa] == [(p["class"], p["id"]) for p in pb]
        assert [p["probability"] for p in pa] == pytest.approx([p["probability"] for p in pb], abs=2e-6)
        assert {k: v for k, v in a.items() if k not in numeric} == {
            k: v for k, v in b.items() if k not in numeric
        }


def test_engine_options_need_the_ray_engine(photos, tmp_path, capsys):
    assert main(["explain", str(photos), "--out", str(tmp_path / "o"), "--workers", "2"]) == 2
    assert (
        "--address and --workers are options of the Ray engine; add --engine ray." in capsys.readouterr().err
    )


def test_pool_leaves_cpus_for_the_decode_tasks():
    # 2 CPUs: one actor of 1 CPU (0.5 left for decoding); 4 asked-for actors share 1.5 CPUs.
    assert pool_shape(2.0, None) == (1, 1.0, 1)
    assert pool_shape(2.0, 4) == (4, 0.375, 1)
    assert pool_shape(16.0, None) == (15, 1.0, 1)
    # GPU models: one actor per GPU by default.
    assert pool_shape(64.0, None, gpus=4.0) == (4, 1.0, 1)
    assert pool_shape(2.0, None, gpus=2.0) == (2, 0.75, 1)
