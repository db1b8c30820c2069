"""Issue 4's benchmark: what Guided Grad-CAM costs against one forward + one backward to the input.

Guided Grad-CAM needs the guided input gradient and Grad-CAM's layer gradient. Ours gets both from
one forward pass (the layer's plain gradient from a backward through the part after the layer, the
guided gradient from one backward to the input). The floor is ``forward+dx``: a forward and one
backward to the input with parameter gradients off. Cases, per (model, batch), are timed in interleaved
rounds in one child process; ratios are taken per round against ``forward+dx``, in the CPU time of the
process (exact with ``--threads 1``, the default, and steady on a machine shared with other jobs) and in
wall time:

- ``forward``: ``model(x)`` under ``torch.no_grad()``;
- ``forward+dx``: forward + d(top logit)/dx, the reference;
- ``gradient``: ``gradcam.Gradient`` (plain input gradient through the engine);
- ``guided-backprop``: ``gradcam.GuidedBackprop``;
- ``guided-gradcam``: ``gradcam.GuidedGradCAM`` (the figure of the issue: <= 1.2x ``forward+dx``);
- ``two-pass``: ``GuidedBackprop`` then ``GradCAM``, two forward passes, as peer libraries do it.

Models from ``benchmarks/models.py``: ResNet-50 (random weights, layer ``layer4``) and EfficientNet-Lite0
(ImageNet checkpoint, layer ``_bn1``: a shared ReLU6 follows it, so the plain layer gradient really
differs from the guided one). Run ``python benchmarks/bench_guided.py`` (``--quick`` for a smoke run);
results go to ``docs/results/benchmarks-guided.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from typing import Dict

import harness
import models
import torch

import gradcam

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
REFERENCE = "forward+dx"
LABELS = {
    "forward": "plain forward (`no_grad`)",
    "forward+dx": "forward + backward to the input (reference)",
    "gradient": "ours: Gradient",
    "guided-backprop": "ours: GuidedBackprop",
    "guided-gradcam": "ours: GuidedGradCAM",
    "two-pass": "GuidedBackprop + GradCAM, two passes",
}


build = models.build


_forward_dx = harness.forward_dx


def cases(model: torch.nn.Module, layer: str, x: torch.Tensor) -> Dict[str, harness.Case]:
    """Each case is a no-argument callable; all explain the top-1 class."""

    def forward():
        with torch.no_grad():
            return model(x)

    gg = gradcam.GuidedGradCAM(model, layer=layer)
    gb = gradcam.GuidedBackprop(model)
    cam = gradcam.GradCAM(model, layer=layer)
    grad = gradcam.Gradient(model)

    def two_pass():
        return gb(x).pixels * cam(x).maps.unsqueeze(2)

    return {
        "forward": forward,
        "forward+dx": lambda: _forward_dx(model, x),
        "gradient": lambda: grad(x).pixels,
        "guided-backprop": lambda: gb(x).pixels,
        "guided-gradcam": lambda: gg(x).pixels,
        "two-pass": two_pass,
    }


def time_both(cs: Dict[str, harness.Case], rounds: int, budget_s: float) -> Dict[str, Dict[str, list]]:
    """Interleaved rounds (order rotated each round), recording wall time and this process's CPU time.

    On a machine shared with other jobs, wall time includes waiting for a core; the CPU time of the
    process (``time.process_time``, all its threads) does not, so its ratios are the steadier figure.
    """
    names = list(cs)
    for name in names:  # warm-up
        cs[name]()
    out: Dict[str, Dict[str, list]] = {n: {"wall": [], "cpu": []} for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            w0, c0 = time.perf_counter(), time.process_time()
            res = cs[name]()
            out[name]["wall"].append(time.perf_counter() - w0)
            out[name]["cpu"].append(time.process_time() - c0)
            del res
        sys.stderr.write(
            f"    round {r + 1}: " + ", ".join(f"{n} {out[n]['wall'][-1] * 1e3:.0f}ms" for n in names) + "\n"
        )
        if r + 1 >= 3 and time.perf_counter() - start > budget_s:
            break
    return out


def child(cfg: dict) -> dict:
    torch.set_num_threads(cfg["threads"])
    model, layer, x = build(cfg["model"], cfg["batch"])
    timed = time_both(cases(model, layer, x), cfg["rounds"], cfg["budget"])
    summary = {}
    for name, v in timed.items():
        row = {"rounds": len(v["wall"])}
        for kind in ("wall", "cpu"):
            ref, fwd = timed[REFERENCE][kind], timed["forward"][kind]
            row[f"{kind}_ms_per_image"] = statistics.median(v[kind]) * 1e3 / cfg["batch"]
            row[f"{kind}_ratio"] = statistics.median(a / b for a, b in zip(v[kind], ref))
            row[f"{kind}_x_forward"] = statistics.median(a / b for a, b in zip(v[kind], fwd))
        summary[name] = row
    return {"summary": summary}


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--models", nargs="+", default=["resnet50", "efficientnet-lite0"], choices=sorted(models.BUILDERS)
    )
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=9, help="rounds at batch 1 (larger batches: a third, >= 3)")
    ap.add_argument("--budget", type=float, default=120.0, help="stop adding rounds after this many seconds")
    ap.add_argument(
        "--allocator",
        choices=["glibc", "tcmalloc"],
        default="tcmalloc" if os.path.exists(harness.TCMALLOC) else "glibc",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: EfficientNet-Lite0, batch 1, 3 rounds")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.quick:
        args.models, args.batches, args.rounds, args.budget = ["efficientnet-lite0"], [1], 3, 10.0
    env = harness.allocator_env(args.allocator)
    results = []
    for name in args.models:
        for batch in args.batches:
            cfg = {
                "model": name,
                "batch": batch,
                "threads": args.threads,
                "budget": args.budget,
                "rounds": args.rounds if batch == 1 else max(3, args.rounds // 3),
            }
            before = harness.load()
            print(f"{name} batch {batch} (load {before})", flush=True)
            res = harness.run_child(os.path.abspath(__file__), ["--child", json.dumps(cfg)], env)
            if res is None:
                continue
            results.append({"model": name, "batch": batch, "load": f"{before} -> {harness.load()}", **res})
            for case, s in res["summary"].items():
                print(
                    f"    {case:16s} {s['cpu_ms_per_image']:8.1f} ms/img (CPU)  x{s['cpu_ratio']:.2f} of forward+dx "
                    f"(CPU), x{s['wall_ratio']:.2f} (wall)",
                    flush=True,
                )
    info = harness.machine()
    command = ("python benchmarks/bench_guided.py " + " ".join(sys.argv[1:])).strip()
    lines = [
        "# Guided Grad-CAM against one forward + one backward to the input",
        "",
        f"Command: `{command}`",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {info['cpu']}, torch {info['torch']}, "
        f"{args.threads} thread(s), allocator {args.allocator}. Ratios: median over interleaved rounds of "
        "(case time / `forward+dx` time of the same round), in CPU time of the process (`time.process_time`, "
        "steady on a shared machine) and in wall time.",
        "",
    ]
    rows = []
    for r in results:
        for case, s in r["summary"].items():
            rows.append(
                [
                    r["model"],
                    str(r["batch"]),
                    LABELS[case],
                    harness.fmt(s["cpu_ms_per_image"]),
                    harness.fmt(s["cpu_ratio"], 2, "x"),
                    harness.fmt(s["cpu_x_forward"], 2, "x"),
                    harness.fmt(s["wall_ms_per_image"]),
                    harness.fmt(s["wall_ratio"], 2, "x"),
                    str(s["rounds"]),
                ]
            )
    lines.append(
        harness.markdown_table(
            [
                "model",
                "batch",
                "what",
                "CPU ms/image",
                "x forward+dx (CPU)",
                "x forward (CPU)",
                "wall ms/image",
                "x forward+dx (wall)",
                "rounds",
            ],
            rows,
        )
    )
    lines += [
        "",
        "Load averages during the runs: "
        + "; ".join(f"{r['model']} b{r['batch']}: {r['load']}" for r in results),
    ]
    text = "\n".join(lines) + "\n"
    out = args.out or os.path.join(
        ROOT, "docs", "results", "benchmarks-guided-quick.md" if args.quick else "benchmarks-guided.md"
    )
    with open(out, "w") as f:
        f.write(text)
    print(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
