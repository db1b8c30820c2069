"""The folder job as a library (gradcam.pipeline): typed options, several methods in one pass with their own
output names, the Ray actor pool's shape on GPUs, cost notices, scoped PIL limits, the report path, layering."""

from __future__ import annotations

import ast
import json
import os
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import skimage.data
from PIL import Image

import gradcam
from gradcam import index
from gradcam.cli import main
from gradcam.pipeline import Job, Options, raydata
from gradcam.pipeline import local as local_executor
from gradcam.pipeline.raydata import RayConfig, plan_pool, run_ray

SRC = Path(gradcam.__file__).parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.chelsea()).reduce(3).save(d / "cat.png")
    Image.fromarray(skimage.data.coffee()).reduce(4).save(d / "cup.jpg", quality=90)
    return d


def _bytes(p) -> bytes:
    return Path(p).read_bytes()


def test_several_methods_in_one_pass_keep_their_own_outputs(folder, tmp_path, monkeypatch, capsys):
    one, both = tmp_path / "one", tmp_path / "both"
    assert main(["explain", str(folder), "--out", str(one), "--json"]) == 0
    assert main(["explain", str(folder), "--out", str(one / "e"), "--json", "--method", "eigencam"]) == 0
    decoded = []
    real = local_executor.decode
    monkeypatch.setattr(local_executor, "decode", lambda it, mp: decoded.append(it.stem) or real(it, mp))
    capsys.readouterr()
    assert main(["explain", str(folder), "--out", str(both), "--json", "--method", "gradcam,eigencam"]) == 0
    assert sorted(decoded) == ["cat", "cup"]  # each photo decoded once for both methods
    assert "explained 4 results, 0 failed (2 methods: gradcam, eigencam)" in capsys.readouterr().err
    names = sorted(f for f in os.listdir(both) if not f.startswith("."))
    assert names == [
        "cat.eigencam.json",
        "cat.eigencam.png",
        "cat.json",
        "cat.png",
        "cup.eigencam.json",
        "cup.eigencam.png",
        "cup.json",
        "cup.png",
        "index.parquet",
    ]
    for stem in ("cat", "cup"):  # the default method's names and bytes are those of a gradcam-only run
        assert _bytes(both / f"{stem}.png") == _bytes(one / f"{stem}.png")
        assert _bytes(both / f"{stem}.json") == _bytes(one / f"{stem}.json")
        assert _bytes(both / f"{stem}.eigencam.png") == _bytes(one / "e" / f"{stem}.eigencam.png")
        assert json.loads(_bytes(both / f"{stem}.eigencam.json"))["method"] == "eigencam"
    rows = index.read_index(str(both))
    assert sorted((r["stem"], r["method"]) for r in rows) == [
        ("cat", "gradcam"),
        ("cat.eigencam", "eigencam"),
        ("cup", "gradcam"),
        ("cup.eigencam", "eigencam"),
    ]
    # A later run of one method into the same folder overwrites nothing of the other, and resumes per method.
    before = {f: os.stat(both / f).st_mtime_ns for f in names}
    assert (
        main(["explain", str(folder), "--out", str(both), "--json", "--method", "eigencam", "--force"]) == 0
    )
    assert all(
        os.stat(both / f).st_mtime_ns == t
        for f, t in before.items()
        if ".eigencam." not in f and not f.startswith(("index", "failures"))
    )
    capsys.readouterr()
    assert main(["explain", str(folder), "--out", str(both), "--json", "--method", "gradcam,eigencam"]) == 0
    assert "explained 0 results, 4 already done" in capsys.readouterr().err


def test_options_are_typed_and_checked():
    assert Options(paths=["x"], method="gradcam, eigencam,gradcam").methods == ["gradcam", "eigencam"]
    with pytest.raises(ValueError, match=r"--top must be at least 1; got 0\."):
        Options(paths=["x"], top=0).check()
    with pytest.raises(ValueError, match=r"--masks is an option of rise; it does nothing for gradcam"):
        Options(paths=["x"], method_options={"n_masks": 10}).check()
    with pytest.raises(ValueError, match=r"--gpus-per-worker must be a positive number"):
        Options(paths=["x"], engine="ray", gpus_per_worker=0).check()


@pytest.mark.parametrize(
    "gpus, per_worker, actors, gpus_each, device",
    [
        (0, 1.0, 15, 0.0, "cpu"),  # no GPU on the cluster: CPU actors, with a note
        (1, 1.0, 1, 1.0, "cuda"),
        (4, 1.0, 4, 1.0, "cuda"),
        (4, 0.5, 8, 0.5, "cuda"),  # two actors share each GPU
    ],
)
def test_pool_shape_follows_the_clusters_gpus(gpus, per_worker, actors, gpus_each, device):
    pool = plan_pool({"CPU": 16.0, "GPU": float(gpus)}, "cuda", gpus_per_worker=per_worker)
    assert (pool.actors, pool.gpus, pool.device) == (actors, gpus_each, device)
    assert pool.cpus == 1.0 and pool.threads == 1
    assert (pool.note is not None) == (gpus == 0)
    if gpus == 0:
        assert pool.note.startswith(
            "gradcam: --device cuda but the Ray cluster has no GPU; the model actors run on"
        )
    # A CPU device never asks for GPUs, whatever the cluster has.
    assert plan_pool({"CPU": 16.0, "GPU": float(gpus)}, "cpu").gpus == 0.0


class _FakeRemote:
    """``ray.remote(cls_or_fn).options(**kw)``: records the options and what is made from it."""

    def __init__(self, fn, calls):
        self.fn, self.calls = fn, calls

    def options(self, **kw):
        self.calls.append((self.fn, kw))
        return self

    def remote(self, *args):
        self.calls.append((self.fn, args))
        return SimpleNamespace(ready=SimpleNamespace(remote=lambda box: "ready"))


@pytest.mark.parametrize(
    "gpus, actors, gpus_each, device", [(0, 15, 0.0, "cpu"), (1, 1, 1.0, "cuda"), (4, 4, 1.0, "cuda")]
)
def test_the_pool_reaches_ray(gpus, actors, gpus_each, device, monkeypatch):
    calls, notes, killed = [], [], []
    fake = SimpleNamespace(
        cluster_resources=lambda: {"CPU": 16.0, "GPU": float(gpus)},
        shutdown=lambda: None,
        remote=lambda fn: _FakeRemote(fn, calls),
        put=lambda value: ("ref", value),
        get=lambda refs: refs,
        wait=lambda refs, num_returns, timeout: (refs, []),
        kill=killed.append,
        exceptions=SimpleNamespace(RayError=RuntimeError),
    )
    monkeypatch.setattr(raydata, "start_ray", lambda address: (fake, False))
    monkeypatch.setattr(raydata, "_preprocessor", lambda loaded: loaded)
    monkeypatch.setattr(raydata, "pack_model", lambda loaded: "packed")
    monkeypatch.setattr(raydata._Scheduler, "run", lambda self, stats, stop: iter([]))
    loaded = SimpleNamespace(size=256, max_side=1024)
    job = Job(loaded, object(), None, 1, "out", {"model": "m"})
    item = gradcam.io.Item("a.jpg", "a")
    run_ray(RayConfig(device="cuda", say=notes.append), [job], [item], [{item}], lambda o: None)
    kw = next(kw for fn, kw in calls if fn is raydata._Explainer and isinstance(kw, dict))
    made = [args for fn, args in calls if fn is raydata._Explainer and isinstance(args, tuple)]
    decode_kw = next(kw for fn, kw in calls if fn is raydata._decode_row)
    assert decode_kw["num_cpus"] == raydata.DECODE_CPUS and decode_kw["max_retries"] == 0
    assert len(made) == actors and kw["num_gpus"] == gpus_each and kw["num_cpus"] == 1.0
    assert (kw["max_restarts"], kw["max_task_retries"], kw["scheduling_strategy"]) == (-1, 0, "SPREAD")
    assert made[0][0].device == device and made[0][1][0].loaded is None  # templates: no model, no method
    assert len(killed) == actors  # the pool is stopped at the end
    assert len(notes) == (gpus == 0)


def test_expensive_methods_say_their_cost_first(folder, tmp_path, capsys):
    assert (
        main(
            [
                "explain",
                str(folder / "cat.png"),
                "--out",
                str(tmp_path / "r"),
                "--method",
                "rise",
                "--masks",
                "40",
                "--perturbation-batch-size",
                "20",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "gradcam: rise costs 40 forward passes per photo (one per random mask; 20 per batch): about " in err
    )
    assert err.index("rise costs") < err.index("explained 1 image")
    rec = json.loads((tmp_path / "r" / ".gradcam" / "cat.rise.json").read_text())
    assert rec["fingerprint"]["options"]["method_options"] == {"batch_size": 20, "n_masks": 40}
    # Score-CAM: one forward pass per channel of the embedded model's head (1280), said before it starts.
    from gradcam.pipeline import ConsoleReporter, build_job, prepare
    from gradcam.pipeline.costs import announce

    opts = Options(paths=[str(folder / "cat.png")], out=str(tmp_path / "s"), method="scorecam,gradcam")
    _, jobs, _ = prepare(opts)
    costs = announce(jobs, ["one photo"], ConsoleReporter())
    assert [(c.method, c.passes, c.per_batch) for c in costs] == [("scorecam", 1280, 4)]  # 2**18 px / 256^2
    assert (
        "scorecam costs 1280 forward passes per photo (one per channel of the layer; 4 per batch)"
        in capsys.readouterr().err
    )
    assert build_job  # re-exported for callers that build jobs themselves
    assert main(["explain", str(folder), "--out", str(tmp_path / "g"), "--masks", "5"]) == 2
    assert "--masks is an option of rise; it does nothing for gradcam" in capsys.readouterr().err


def _png_header_only(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


def test_max_pixels_above_pils_limit_is_scoped(tmp_path, capsys):
    big = tmp_path / "in" / "huge.png"
    big.parent.mkdir()
    _png_header_only(big, 20000, 10000)  # 200 megapixels declared: over PIL's own 2 x 89.5 MP
    limit = Image.MAX_IMAGE_PIXELS
    assert main(["explain", str(big.parent), "--out", str(tmp_path / "o"), "--max-pixels", "300"]) == 1
    err = capsys.readouterr().err
    assert "PIL's own limit" not in err and "skipped" in err  # PIL let it through (then it has no pixel data)
    assert Image.MAX_IMAGE_PIXELS == limit  # nothing left set for the rest of the process
    assert main(["explain", str(big.parent), "--out", str(tmp_path / "o2")]) == 1
    assert "image too large" in capsys.readouterr().err


def test_the_report_path_is_printed_absolute(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", str(folder / "cat.png"), "--out", "rel", "--report"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed == str(tmp_path / "rel" / "index.html") and os.path.isabs(printed)


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    pkg = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def test_the_library_never_imports_the_command_line():
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel == "cli.py" or rel.startswith("commands/"):
            continue
        if any(m == "gradcam.commands" or m.startswith("gradcam.commands.") for m in _imports(path)):
            offenders.append(rel)
    assert offenders == []
    for rel in ("distributed.py", *(p.relative_to(SRC).as_posix() for p in (SRC / "pipeline").glob("*.py"))):
        assert "argparse" not in set(_imports(SRC / rel)), rel


def test_explain_dataset_keeps_its_summary(folder, tmp_path):
    from gradcam.distributed import Summary, explain_dataset

    s = explain_dataset(str(folder), out=str(tmp_path / "d"), top_k=2)
    assert isinstance(s, Summary) and (s.found, s.explained, s.skipped, s.failed) == (2, 2, 0, [])
    assert s.index == str(tmp_path / "d" / "index.parquet") and s.exit_code == 0
    with Image.open(tmp_path / "d" / "cat.top2.png") as png:
        assert np.asarray(png).shape[:2] == (100, 151)


def test_a_new_input_kind_is_one_registration(tmp_path, monkeypatch, capsys):
    from gradcam.pipeline import kinds
    from gradcam.pipeline.steps import compute_items, write_outcomes

    d = tmp_path / "in"
    d.mkdir()
    with open(d / "cat.gray", "wb") as f:  # an array file of a kind the photo decoder cannot read
        np.save(f, np.asarray(Image.fromarray(skimage.data.chelsea()).convert("L").reduce(3)))
    Image.fromarray(skimage.data.coffee()).reduce(4).save(d / "cup.jpg")
    seen = []

    def decode_gray(item, max_pixels):
        seen.append(item.stem)
        return Image.fromarray(np.load(item.path)).convert("RGB"), None

    monkeypatch.setitem(
        kinds.KINDS, "gray", kinds.Kind("gray", (".gray",), decode_gray, compute_items, write_outcomes)
    )
    assert kinds.kind_of(str(d / "cat.gray")).name == "gray" and kinds.kind_of("x.JPG") is kinds.PHOTO
    assert main(["explain", str(d), "--out", str(tmp_path / "o")]) == 0
    assert seen == ["cat"] and "explained 2 images, 0 failed" in capsys.readouterr().err
    assert (tmp_path / "o" / "cat.png").exists() and (tmp_path / "o" / "cup.png").exists()
