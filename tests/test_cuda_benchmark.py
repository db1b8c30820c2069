"""benchmarks/cuda.py on a machine without CUDA: a clear message, exit 0, the results page untouched."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: the script measures")
def test_cuda_benchmark_exits_cleanly_without_a_gpu():
    page = os.path.join(ROOT, "docs", "results", "cuda.md")
    before = open(page, "rb").read()
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.path.join(ROOT, "benchmarks")])
    )
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "cuda.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(
        f"benchmarks/cuda.py: no CUDA device (torch {torch.__version__} sees none), so nothing was measured "
        "and docs/results/cuda.md is left as it is. Run it on a machine with a GPU: "
        "PYTHONPATH=src:benchmarks python benchmarks/cuda.py"
    )
    assert open(page, "rb").read() == before
    assert b"Not yet measured: no GPU has been lent." in before
