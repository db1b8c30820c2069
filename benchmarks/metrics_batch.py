"""Issue 23 item 4 on a CPU: the metrics that run the model, streamed in forwards of ``max_batch`` inputs,
against the previous version (per-image chunks), each at its defaults, in one process.

The previous version is the package at git revision ``--before`` (default: the commit before issue 23's
metric change), extracted with ``git archive`` and imported as ``gradcam_before``. EfficientNet-Lite0
(ImageNet weights), ``--images`` seeded photos-like inputs at 224 x 224, Grad-CAM maps of the predicted class.
Rounds are interleaved (old, new, new, old, ...); the figure is the median over rounds of new / old, with
the values compared (max abs difference; ROAD's noise is drawn per input now, so its values differ by the
noise realisation only: compared with ``noise=0``).

Run: ``PYTHONPATH=src python benchmarks/metrics_batch.py [--rounds 3] [--threads 2] [--images 2] [--size 224]``.
Writes ``docs/results/metrics-batch.md``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict

import torch

import gradcam
from gradcam import metrics as new_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEFORE = "d2ce2c4"


def load_before(rev: str):
    """The metrics package of git revision ``rev``, imported as ``gradcam_before.metrics``."""
    tmp = tempfile.mkdtemp(prefix="gradcam-before-")
    tar = subprocess.run(
        ["git", "archive", rev, "src/gradcam"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=tar, check=True)
    os.rename(os.path.join(tmp, "src", "gradcam"), os.path.join(tmp, "gradcam_before"))
    sys.path.insert(0, tmp)
    return importlib.import_module("gradcam_before.metrics")


def cases(M, net, x, maps, t, explain, new: bool) -> Dict[str, Callable[[], torch.Tensor]]:
    """Each metric at its defaults (but the sizes below), for package ``M``."""
    return {
        "deletion (16 steps)": lambda: M.deletion(net, x, maps, t, steps=16),
        "insertion (16 steps)": lambda: M.insertion(net, x, maps, t, steps=16),
        "faithfulness_correlation (50 runs)": lambda: M.faithfulness_correlation(
            net, x, maps, t, n_runs=50, subset_size=224
        ),
        "irof (8 x 8 grid)": lambda: M.irof(net, x, maps, t, grid=8),
        "road (9 percentages, noise 0)": lambda: M.road(net, x, maps, t, noise=0.0, output="probability"),
        "max_sensitivity (5 samples)": lambda: M.max_sensitivity(net, x, maps, t, explain, n_samples=5),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--before", default=BEFORE)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    old_metrics = load_before(args.before)
    loaded = gradcam.load_model("efficientnet-lite0")
    net = loaded.model
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 3, args.size, args.size, generator=g) * 2 - 1
    cam = gradcam.GradCAM(net, loaded.layer)
    ex = cam(x)
    maps, t = ex.maps[:, 0], ex.targets[:, 0]

    def explain(imgs, tt):
        return cam(imgs, target=tt).maps[:, 0]

    old_c = cases(old_metrics, net, x, maps, t, explain, False)
    new_c = cases(new_metrics, net, x, maps, t, explain, True)
    rows = []
    for name in new_c:
        ratios, diff = [], 0.0
        for r in range(args.rounds):
            order = ("old", "new") if r % 2 == 0 else ("new", "old")
            dt, val = {}, {}
            for which in order:
                fn = old_c[name] if which == "old" else new_c[name]
                s = time.perf_counter()
                val[which] = fn()
                dt[which] = time.perf_counter() - s
            ratios.append(dt["new"] / dt["old"])
            diff = max(diff, float((val["new"].double() - val["old"].double()).abs().max()))
            old_s, new_s = dt["old"], dt["new"]
        row = (name, statistics.median(ratios), diff, old_s, new_s)
        print(row, flush=True)
        rows.append(row)
        _write(rows, args)  # after every metric: a partial page survives an interrupted run


def _write(rows, args) -> None:
    lines = [
        "# Metrics that run the model: streamed in forwards of max_batch inputs (CPU)",
        "",
        "Written by `benchmarks/metrics_batch.py`. Each metric at its defaults (max_batch = "
        f"{new_metrics.faithfulness.MAX_BATCH}) against the previous version (per-image chunks of "
        f"`batch_size`: 32 for deletion/insertion and the sensitivities, 64 for the others; git {args.before}), "
        f"in one process, interleaved rounds. EfficientNet-Lite0 (ImageNet weights), {args.images} seeded inputs "
        f"at {args.size} x {args.size}, Grad-CAM maps of the predicted class; torch {torch.__version__}, "
        f"{platform.machine()}, {args.threads} thread(s), median over {args.rounds} rounds.",
        "",
        "| metric | time new / old | max abs difference of the values | old (s, last round) | new (s, last round) |",
        "|---|---|---|---|---|",
    ]
    for name, ratio, diff, o, n in rows:
        lines.append(f"| {name} | {ratio:.2f}x | {diff:.1e} | {o:.2f} | {n:.2f} |")
    lines += [
        "",
        "Values agree to float rounding (the same inputs in batches of other sizes; identical here). On a CPU "
        "the time is the forwards' (the same number of inputs either way), so the ratio stays near 1 (a shared, "
        "loaded machine: a few percent of noise either way); deletion and insertion gain because their forwards "
        "are now full (before: one image's 17 steps per forward). The gain is on a GPU, where full batches of "
        "`max_batch` inputs run at the device's throughput ([CUDA results](cuda.md)).",
        "",
    ]
    with open(os.path.join(ROOT, "docs", "results", "metrics-batch.md"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
