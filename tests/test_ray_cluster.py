"""The Ray engine on a real two-node Ray cluster (tests/ray_cluster.py, fixture ``ray_two_nodes``): the same
outputs as the local engine, work on both nodes, a killed worker retried without lost or duplicated
outputs, Ctrl-C keeps what finished. Tiny photos (64 px) and a tiny model (tests/cluster_model.py)."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

if os.environ.get("GRADCAM_REQUIRE_RAY"):  # CI (.ci/run): these tests must run, never skip
    import ray  # noqa: F401
pytest.importorskip("ray", reason="the two-node Ray tests need ray (the ray or test extra)")

import cluster_model  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from ray_cluster import kill_node2, start_node2, wait_for_nodes  # noqa: E402

from gradcam import index  # noqa: E402
from gradcam.distributed import explain_dataset  # noqa: E402
from gradcam.pipeline import Options, Reporter, run  # noqa: E402

PATH_COLUMNS = ("overlay", "record", "maps")


def _photos(folder, n, broken=False):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for i in range(n):
        a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        a[16 + i % 24 : 40, 8:40] = (255, 255 - 5 * (i % 40), 0)  # a bright patch: maps with a peak
        Image.fromarray(a).save(folder / f"p{i:03d}.png")
    if broken:
        (folder / "notes.png").write_text("not an image")
    return folder


def _records(out):
    return {
        os.path.basename(f): json.loads(open(f).read())
        for f in sorted(glob.glob(os.path.join(out, "*.json")))
        if os.path.basename(f) != "failures.json"
    }


def _rows(out):
    """Index rows without the time stamp, output paths relative to the output folder."""
    rows = []
    for r in index.read_index(str(out)):
        r = dict(r)
        r.pop("updated")
        for c in PATH_COLUMNS:
            r[c] = None if r[c] is None else os.path.relpath(r[c], out)
        rows.append(r)
    return rows


def _pixels(path):
    with Image.open(path) as im:
        return im.tobytes()


class _DeleteOnStart(Reporter):
    """Deletes ``path`` when the work starts (after the driver loaded the model): an actor that opened it
    would fail."""

    def __init__(self, path):
        self.path = path

    def start(self, total):
        os.unlink(self.path)


def test_two_nodes_give_the_local_engines_outputs_and_both_nodes_work(ray_two_nodes, tmp_path):
    photos = _photos(tmp_path / "in", 16, broken=True)
    weights = tmp_path / "w.pt"
    net = cluster_model.tiny()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.5)
    torch.save(net.state_dict(), weights)
    opts = dict(model="cluster_model:tiny", weights=str(weights), size=64, top=2, batch_size=2, maps=True)
    opts.update(json=True, paths=[str(photos)])
    loc = run(Options(out=str(tmp_path / "local"), **opts))
    # The weights file is gone before the actors start: they get the model by value, never the driver's path.
    ray_ = run(
        Options(
            out=str(tmp_path / "ray"),
            engine="ray",
            address=ray_two_nodes.address,
            workers=2,
            threads=1,
            **opts,
        ),
        _DeleteOnStart(weights),
    )
    assert not weights.exists()
    assert (loc.explained, ray_.explained, ray_.skipped, ray_.retries) == (16, 16, 0, 0)
    assert loc.failed == ray_.failed and [os.path.basename(f) for f, _ in ray_.failed] == ["notes.png"]
    # Work ran on both nodes (the actors report their node ids): the head's and node2's.
    assert sorted(ray_.nodes) == sorted(ray_two_nodes.node_ids.values()) and len(ray_.nodes) == 2
    assert loc.nodes == []
    rec_l, rec_r = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert len(rec_l) == 16 and rec_l == rec_r  # identical JSON records
    pngs = sorted(glob.glob(str(tmp_path / "local" / "*.png")))
    assert len(pngs) == 32
    for f in pngs:  # pixel-identical overlays
        assert _pixels(f) == _pixels(f.replace(str(tmp_path / "local"), str(tmp_path / "ray"))), f
    rows_l, rows_r = _rows(tmp_path / "local"), _rows(tmp_path / "ray")
    assert rows_l == rows_r and len(rows_l) == 16 * 2 + 1  # the same index rows (2 classes each, 1 failure)


def _cli(cluster, photos, out, *extra):
    cmd = [sys.executable, "-m", "gradcam", "explain", str(photos), "--out", str(out), "--json"]
    cmd += ["--model", "cluster_model:slow_tiny", "--size", "64", "--batch-size", "2"]
    cmd += ["--engine", "ray", "--address", cluster.address, "--workers", "2", *extra]
    return subprocess.Popen(cmd, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_records(proc, out, n, timeout=240.0):
    """Block until ``n`` resume records exist under ``out`` while ``proc`` still runs (fails otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = len(glob.glob(os.path.join(out, ".gradcam", "*.json")))
        if done >= n:
            assert proc.poll() is None, "the run ended before the test could interrupt it"
            return done
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.communicate()}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)  # the driver says where it is stuck
    try:
        got = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        got = proc.communicate()
    pytest.fail(f"fewer than {n} outputs after {timeout} s: {got}")


def _one_set_each(out, stems):
    """Every stem has exactly one overlay, one JSON record, one resume record and one index row."""
    assert sorted(os.path.basename(f)[:-4] for f in glob.glob(os.path.join(out, "*.png"))) == stems
    assert sorted(_records(out)) == [s + ".json" for s in stems]
    assert (
        sorted(os.path.basename(f)[:-5] for f in glob.glob(os.path.join(out, ".gradcam", "*.json"))) == stems
    )
    rows = index.read_index(str(out))
    assert sorted((r["stem"], r["rank"]) for r in rows) == [(s, 1) for s in stems]
    assert all(r["error"] is None for r in rows)


def test_a_killed_worker_is_retried_and_loses_or_duplicates_nothing(ray_two_nodes, tmp_path):
    photos = _photos(tmp_path / "in", 100)
    out = tmp_path / "out"
    proc = _cli(ray_two_nodes, photos, out)
    _wait_for_records(proc, out, 10)
    actors = ray_two_nodes.actor_pids()
    assert len(actors) == 2, actors  # one model actor per node
    os.kill(actors[0], signal.SIGKILL)  # kill -9 of a worker process holding a model actor, mid-run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    m = re.search(r"explained 100 images, 0 failed, (\d+) batch(?:es)? retried after a worker failed", err)
    # The batches in flight on the actor that died (Ray may also report the other actor's calls of that
    # moment as failed): at least one, at most DEPTH (2) per actor.
    assert m and 1 <= int(m.group(1)) <= 4, err
    stems = [f"p{i:03d}" for i in range(100)]
    _one_set_each(out, stems)
    assert not (out / "failures.json").exists()  # written only when something failed
    # The retried batches give the same numbers as a local run.
    loc = explain_dataset(
        str(photos), out=str(tmp_path / "local"), model="cluster_model:slow_tiny", size=64, batch_size=2
    )
    assert loc.explained == 100 and _records(tmp_path / "local") == _records(out)


def test_ctrl_c_finishes_the_batches_in_flight_and_a_rerun_does_the_rest(ray_two_nodes, tmp_path):
    photos = _photos(tmp_path / "in", 60)
    out = tmp_path / "out"
    proc = _cli(ray_two_nodes, photos, out)
    _wait_for_records(proc, out, 6)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "gradcam: stopping: finishing the batches in flight (Ctrl-C again to stop at once)" in err
    kept = sorted(os.path.basename(f)[:-5] for f in glob.glob(os.path.join(out, ".gradcam", "*.json")))
    assert 6 <= len(kept) < 60
    _one_set_each(out, kept)  # what finished is kept whole: outputs, records and index rows
    proc = _cli(ray_two_nodes, photos, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"explained {60 - len(kept)} images, {len(kept)} already done" in err, err
    _one_set_each(out, [f"p{i:03d}" for i in range(60)])


def test_a_lost_node_is_retried_on_the_other_and_loses_nothing(ray_two_nodes, tmp_path):
    photos = _photos(tmp_path / "in", 60)
    out = tmp_path / "out"
    proc = _cli(ray_two_nodes, photos, out)
    try:
        _wait_for_records(proc, out, 6)
        kill_node2(ray_two_nodes)  # the whole second node at once: its raylet, agents, actor and tasks
        _, err = proc.communicate(timeout=300)
    finally:
        start_node2(ray_two_nodes)  # the next tests get two nodes again
        wait_for_nodes(ray_two_nodes, 2)
    assert proc.returncode == 0, err
    m = re.search(r"explained 60 images, 0 failed, (\d+) batch(?:es)? retried after a worker failed", err)
    assert m and int(m.group(1)) >= 1, err
    _one_set_each(out, [f"p{i:03d}" for i in range(60)])
