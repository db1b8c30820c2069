"""benchmarks/folder_pipeline.py's start-up probe: the split into torch's import and gradcam's own start-up."""

import importlib.util
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHELSEA = os.path.join(ROOT, "src", "gradcam", "data", "chelsea.png")


@pytest.fixture(scope="module")
def bench():
    """The benchmark module, loaded without leaving its OMP_WAIT_POLICY default in this process's environment."""
    before = dict(os.environ)
    spec = importlib.util.spec_from_file_location(
        "folder_pipeline_bench", os.path.join(ROOT, "benchmarks", "folder_pipeline.py")
    )
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    finally:
        os.environ.clear()
        os.environ.update(before)
    return mod


def test_startup_splits_each_run_at_torch_imported(bench, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(CHELSEA, one)
    su = bench.startup(str(one), str(tmp_path / "out"), threads=1, runs=1)
    (wall,), (torch_wall,), (ours,) = su["wall"], su["torch_wall"], su["ours_wall"]
    assert 0 < torch_wall < wall  # the first decode comes after torch is imported
    assert ours == wall - torch_wall
    assert su["ours_wall_median"] == ours and su["torch_wall_median"] == torch_wall
    assert su["bytecode"] is True


def _result(startup: dict) -> dict:
    case = {"marginal_wall": 10.0, "overall_wall": 9.0, "marginal_cpu": 8.0, "marginal_main": 9.5}
    cli = {"marginal_wall": 9.0, "overall_wall": 8.0, "seconds": 25.0, "cpu_seconds": 30.0, "photos": 200}
    cases = {
        "reference: decode + preprocess + forward": [case],
        "explain, prefetch 2 (default)": [dict(case, marginal_wall=9.0, marginal_cpu=6.0, marginal_main=9.0)],
        "explain, prefetch 0 (serial)": [case],
        "gradcam explain DIR (CLI, a new process)": [cli],
    }
    return {
        "command": "python benchmarks/folder_pipeline.py",
        "when": "2026-12-07 00:00 UTC",
        "cpus": 2,
        "torch": "2.13.0+cpu",
        "batch_size": 4,
        "photos": 200,
        "copies": 10,
        "skip": 50,
        "rounds": 1,
        "omp_wait_policy": "PASSIVE",
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [1.0, 1.0, 1.0],
        "threads": [1],
        "prefetch": 2,
        "by_threads": {"1": cases},
        "startup": startup,
    }


def test_page_states_torch_share_and_ours(bench, tmp_path):
    su = {
        "wall": [1.6, 1.5, 1.7],
        "cpu": [1.7, 1.6, 1.8],
        "wall_median": 1.6,
        "cpu_median": 1.7,
        "torch_wall": [1.3, 1.35, 1.4],
        "torch_wall_median": 1.35,
        "ours_wall": [0.3, 0.15, 0.3],
        "ours_wall_median": 0.3,
    }
    page = tmp_path / "page.md"
    bench.write_page(_result(su), str(page))
    text = page.read_text()
    assert (
        "- Start-up to the first decode: median 1.60 s wall (1.70 s of CPU time): the interpreter, PIL and "
        "`import torch` 1.35 s, then gradcam's own start-up (its imports, the model built and its weights loaded, "
        "the colormap) 0.30 s (medians; both times taken in each run)." in text
    )
    assert "median **1.35 s** (runs: 1.30, 1.35, 1.40);" in text
    assert "median **0.30 s** (runs: 0.30, 0.15, 0.30)." in text
    assert (
        "needs 1.33x the reference's CPU time per photo (marginal CPU-time rate 75% of the reference's"
        in text
    )


def test_page_from_a_run_before_the_split_has_no_split(bench, tmp_path):
    su = {"wall": [2.6], "cpu": [2.7], "wall_median": 2.6, "cpu_median": 2.7}
    page = tmp_path / "page.md"
    bench.write_page(_result(su), str(page))
    text = page.read_text()
    assert "- Start-up to the first decode: median 2.60 s wall (2.70 s of CPU time)." in text
    assert "import torch` done" not in text
