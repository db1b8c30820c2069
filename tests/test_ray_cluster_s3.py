"""`gradcam explain s3://bucket/in --out s3://bucket/out --engine ray` on a real two-node Ray cluster
(tests/ray_cluster.py) against an S3 API served locally (moto's server, tests/storage_fixtures.py): the
outputs equal a local-disk run's (records, pixels, maps, index rows) and a rerun recomputes nothing.

The nodes share no environment with the bucket: they were started before the S3 server and get the endpoint
and keys only through ``--storage-options``. Runs where object storage support is installed
(:mod:`gradcam.storage`, s3fs, moto: the ``test`` extra) and ``ray`` is."""

from __future__ import annotations

import json
import os

import pytest

if os.environ.get("GRADCAM_REQUIRE_RAY"):  # CI (.ci/run): these tests must run, never skip
    import ray  # noqa: F401
pytest.importorskip("ray", reason="the two-node Ray tests need ray (the ray or test extra)")
pytest.importorskip("gradcam.storage", reason="object storage support (gradcam.storage) is not in this tree")
pytest.importorskip("storage_fixtures", reason="the moto S3 fixtures (tests/storage_fixtures.py) are missing")

from storage_fixtures import s3, s3_options, s3_server  # noqa: E402, F401 - pytest fixtures
from test_storage import ARGS, NAMES, _compare_with_disk, _objects, disk_run, photos  # noqa: E402, F401

from gradcam.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def bucket(s3, photos):  # noqa: F811
    """s3://bucket/in with tests/test_storage.py's photos; removed at the end (moto's state is global to the
    process, and tests/test_storage.py creates its own "bucket")."""
    s3.mkdir("bucket")
    for n in NAMES:
        s3.pipe_file(f"bucket/in/{n}", (photos / n).read_bytes())
    yield "s3://bucket"
    s3.rm("bucket", recursive=True)


def test_an_s3_bucket_on_two_nodes_equals_a_disk_run_and_resumes(
    ray_two_nodes,
    bucket,  # noqa: F811
    s3,  # noqa: F811
    s3_options,  # noqa: F811
    disk_run,  # noqa: F811
    photos,  # noqa: F811
    capsys,
):
    url = f"{bucket}/out"
    cmd = ["explain", f"{bucket}/in", "--out", url, *ARGS, "--storage-options", json.dumps(s3_options)]
    cmd += ["--engine", "ray", "--address", ray_two_nodes.address, "--workers", "2"]
    assert main(cmd) == 1  # broken.jpg fails, as on disk
    assert "explained 3 images, 1 failed" in capsys.readouterr().err
    _compare_with_disk(s3, url, disk_run, photos, s3_options)
    before = _objects(s3, url[len("s3://") :])
    assert main(cmd) == 1
    assert "explained 0 images, 3 already done (same input" in capsys.readouterr().err
    assert {k: v[1] for k, v in _objects(s3, url[len("s3://") :]).items()} == {
        k: v[1] for k, v in before.items()
    }
