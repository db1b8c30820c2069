"""Object storage in and out: `gradcam explain s3://bucket/in --out s3://bucket/out` against an S3 API served
locally (moto's server), on the local engine and on Ray, gives a local-disk run's records, pixels, maps and
index rows; a rerun recomputes nothing; a changed input object is recomputed alone. Skipped without s3fs and
moto (the `test` extra installs both)."""

from __future__ import annotations

import io
import json
import os

import pytest
import skimage.data
import torch
from PIL import Image
from storage_fixtures import s3, s3_options, s3_server  # noqa: F401 - pytest fixtures

from gradcam import index, storage
from gradcam.cli import main

NAMES = ("broken.jpg", "cat.png", "cup.jpg", "rocket.png")
PATHS = ("file", "overlay", "record", "maps")
ARGS = ["--json", "--maps", "--top", "2", "--batch-size", "2"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    Image.fromarray(skimage.data.chelsea()).reduce(3).save(d / "cat.png")
    Image.fromarray(skimage.data.coffee()).reduce(4).save(d / "cup.jpg", quality=90)
    Image.fromarray(skimage.data.rocket()).reduce(3).save(d / "rocket.png")
    (d / "broken.jpg").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def bucket(s3, photos):  # noqa: F811
    s3.mkdir("bucket")
    for n in NAMES:
        s3.pipe_file(f"bucket/in/{n}", (photos / n).read_bytes())
    s3.pipe_file("bucket/in/.hidden/x.png", (photos / "cat.png").read_bytes())  # hidden: never listed
    s3.pipe_file("bucket/in/notes.txt", b"not a photo extension")
    return "s3://bucket"


@pytest.fixture(scope="module")
def disk_run(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("disk") / "out"
    assert main(["explain", str(photos), "--out", str(out), *ARGS]) == 1  # broken.jpg fails
    return out


def _objects(s3, prefix):  # noqa: F811
    """{relative key: (bytes, etag)} of every object under ``prefix`` (index parts included)."""
    s3.invalidate_cache()
    out = {}
    for key, info in s3.find(prefix, detail=True).items():
        out[key[len(prefix) + 1 :]] = (s3.cat_file(key), info["ETag"])
    return out


def _norm(text: str, *pairs) -> str:
    for a, b in pairs:
        text = text.replace(a, b)
    return text


def _compare_with_disk(s3, url, disk, photos, options):  # noqa: F811
    """The S3 outputs under ``url`` equal the disk run's: records, pixels, maps, failures, index rows."""
    objs = _objects(s3, url[len("s3://") :])
    files = sorted(
        os.path.relpath(os.path.join(r, f), disk)
        for r, _, fs in os.walk(disk)
        for f in fs
        if f != "index.parquet"
    )
    assert sorted(k for k in objs if k != "index.parquet") == files
    pairs = ((str(photos), "IN"), ("s3://bucket/in", "IN"), (str(disk), "OUT"), (url, "OUT"))
    for rel in files:
        mine, theirs = objs[rel][0], (disk / rel).read_bytes()
        if rel.endswith(".png"):
            a, b = Image.open(io.BytesIO(mine)), Image.open(io.BytesIO(theirs))
            assert a.size == b.size and a.tobytes() == b.tobytes()  # pixel-identical
        elif rel.endswith(".maps.pt"):
            assert torch.equal(torch.load(io.BytesIO(mine)), torch.load(io.BytesIO(theirs)))
        elif rel.endswith(".json") and rel.startswith(".gradcam/"):
            a, b = json.loads(mine), json.loads(theirs)
            same = {
                k: v for k, v in a["outputs"].items() if not k.endswith(".json")
            }  # JSON: path lengths differ
            assert sorted(a["outputs"]) == sorted(b["outputs"]) and same == {k: b["outputs"][k] for k in same}
            assert a["fingerprint"]["options"] == b["fingerprint"]["options"]
            assert a["fingerprint"]["input"]["size"] == (photos / (rel[9:-5] + _ext(rel))).stat().st_size
            assert set(a["fingerprint"]["input"]) == {"path", "size", "etag"}
        else:  # JSON records and failures.json: the same text once the folders are named alike
            assert json.loads(_norm(mine.decode(), *pairs)) == json.loads(_norm(theirs.decode(), *pairs))
    rows_s3 = index.read_index(url, options)
    rows_disk = index.read_index(str(disk))
    assert len(rows_s3) == len(rows_disk) == 3 * 2 + 1
    for a, b in zip(rows_s3, rows_disk):
        assert {k: v for k, v in a.items() if k != "updated" and k not in PATHS} == {
            k: v for k, v in b.items() if k != "updated" and k not in PATHS
        }
        assert [_norm(str(a[k]), *pairs) for k in PATHS] == [_norm(str(b[k]), *pairs) for k in PATHS]


def _ext(rel):
    return {"cat": ".png", "cup": ".jpg", "rocket": ".png"}[os.path.basename(rel)[:-5]]


def test_an_s3_run_equals_a_disk_run_and_resumes_by_etag(bucket, s3, s3_options, disk_run, photos, capsys):  # noqa: F811
    url = f"{bucket}/out-local"
    so = json.dumps(s3_options)
    assert main(["explain", f"{bucket}/in", "--out", url, *ARGS, "--storage-options", so]) == 1
    err = capsys.readouterr().err
    assert "explained 3 images, 1 failed" in err and "skipped s3://bucket/in/broken.jpg: not an image" in err
    _compare_with_disk(s3, url, disk_run, photos, s3_options)
    before = _objects(s3, url[5:])
    # A rerun (credentials and endpoint from the environment this time) recomputes nothing.
    os.environ["AWS_ENDPOINT_URL"] = s3_options["endpoint_url"]
    try:
        assert main(["explain", f"{bucket}/in", "--out", url, *ARGS]) == 1
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
    assert "explained 0 images, 3 already done (same input" in capsys.readouterr().err
    assert {k: v[1] for k, v in _objects(s3, url[5:]).items()} == {k: v[1] for k, v in before.items()}
    # A changed input object (new bytes, new ETag) is recomputed, alone.
    flipped = Image.open(photos / "cup.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    flipped.save(buf, format="JPEG", quality=90)
    s3.pipe_file("bucket/in/cup.jpg", buf.getvalue())
    try:
        assert main(["explain", f"{bucket}/in", "--out", url, *ARGS, "--storage-options", so]) == 1
        assert "explained 1 image, 2 already done (same input" in capsys.readouterr().err
        after = _objects(s3, url[5:])
        changed = sorted(k for k in after if after[k][1] != before.get(k, (None, None))[1])
        assert changed == [
            ".gradcam/cup.json",
            "cup.json",
            "cup.maps.pt",
            "cup.top1.png",
            "cup.top2.png",
            "index.parquet",
        ]
    finally:
        s3.pipe_file("bucket/in/cup.jpg", (photos / "cup.jpg").read_bytes())


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs (one already running is used as it is, and left running)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_an_s3_run_on_ray_equals_a_disk_run(bucket, s3, s3_options, disk_run, photos, capsys, local_ray):  # noqa: F811
    url = f"{bucket}/out-ray"
    so = json.dumps(s3_options)
    cmd = ["explain", f"{bucket}/in", "--out", url, *ARGS, "--storage-options", so, "--engine", "ray"]
    assert main(cmd) == 1
    assert "explained 3 images, 1 failed" in capsys.readouterr().err
    _compare_with_disk(s3, url, disk_run, photos, s3_options)
    before = _objects(s3, url[5:])
    assert main(cmd) == 1
    assert "explained 0 images, 3 already done (same input" in capsys.readouterr().err
    assert {k: v[1] for k, v in _objects(s3, url[5:]).items()} == {k: v[1] for k, v in before.items()}


def test_storage_paths_and_errors(tmp_path, capsys):
    assert [storage.is_remote(p) for p in ("s3://b/k", "gs://b", "file:///tmp/x", "/tmp/x", "C:/x")] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert (
        storage.local_path("file:///tmp/x") == "/tmp/x"
        and storage.join("s3://b/o", "a.png") == "s3://b/o/a.png"
    )
    assert main(["explain", "--demo", "--out", str(tmp_path), "--storage-options", "{bad"]) == 2
    assert "--storage-options must be a JSON object" in capsys.readouterr().err
    assert main(["explain", "--demo", "--out", "s3://b/o", "--report"]) == 2
    assert "--report writes a local HTML page" in capsys.readouterr().err
