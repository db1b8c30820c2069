"""Issue 2's benchmark: what Grad-CAM costs on top of a plain forward pass (CPU, core install).

For EfficientNet-Lite0 (the real ImageNet checkpoint) and a ResNet-50 (random weights; built in
``models.py``, no torchvision), batch 1 and 16, 224 x 224, 2 threads:

- ``forward``: ``model(x)`` under ``torch.no_grad()``, the reference of every ratio;
- ``forward+dx``: forward and one backward to the input, parameter gradients off (the floor of any
  input-gradient method such as Guided Grad-CAM);
- ``gradcam``: ``GradCAM(model, layer)(x)`` for the predicted class, maps upsampled to 224 x 224;
- ``gradcam-top5``: the same for the 5 best classes of every image in one call (``top_k=5``);
- ``guided``: ``GuidedGradCAM`` (when the installed package has it).

Run ``python benchmarks/engine.py`` (add ``--quick`` for a < 1 minute smoke run, ``--allocator both``
for glibc malloc and tcmalloc). Results go to ``docs/results/benchmarks-engine.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, Optional

import harness
import models
import torch

import gradcam

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

LABELS = {
    "forward": "plain forward (`no_grad`)",
    "forward+dx": "forward + backward to the input",
    "gradcam": "ours: Grad-CAM",
    "gradcam-top5": "ours: Grad-CAM top-5 (`top_k=5`)",
    "guided": "ours: Guided Grad-CAM",
}


build = models.build


_forward_dx = harness.forward_dx


def our_cases(
    model: torch.nn.Module, layer: str, x: torch.Tensor, device: str = "cpu"
) -> Dict[str, harness.Case]:
    """Our library's cases plus the two references, each a no-argument callable."""

    def forward():
        with torch.no_grad():
            return model(x)

    cam = gradcam.GradCAM(model, layer=layer)
    cases = {
        "forward": forward,
        "forward+dx": lambda: _forward_dx(model, x),
        "gradcam": lambda: cam(x).maps,
        "gradcam-top5": lambda: cam(x, top_k=5).maps,
    }
    guided_cls = getattr(gradcam, "GuidedGradCAM", None)
    if guided_cls is not None:
        guided = guided_cls(model, layer=layer)
        cases["guided"] = lambda: guided(x).maps
    return cases


def markdown(results: list, title: str, command: str, labels: Dict[str, str], notes: str = "") -> str:
    """The results as Markdown: one table per allocator, with the machine, command and load."""
    info = harness.machine()
    lines = [f"# {title}", "", "Command: " + "; ".join(f"`{c.strip()}`" for c in command.split(" ; ")), ""]
    lines.append(
        f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (measured just before) on {info['cpu']}, "
        f"torch {info['torch']}, "
        f"Python {info['python']}, {results[0]['threads'] if results and 'threads' in results[0] else 2} threads."
    )
    lines.append("")
    if notes:
        lines += [notes, ""]
    reps = sorted({len(m.get("rss_mb_all", [0])) for r in results for m in r["memory"].values() if m})
    if reps:
        lines += [f"Each memory figure is the median of {' or '.join(map(str, reps))} fresh process(es).", ""]
    cuda = any(r["device"].startswith("cuda") for r in results)
    header = [
        "model",
        "batch",
        "what",
        "ms/image (median)",
        "x forward (median)",
        "ms/image (best)",
        "x forward (best)",
        "x forward (CPU time)",
        "peak RSS delta (MB)",
        "x forward's RSS delta",
    ]
    if cuda:
        header.append("peak CUDA delta (MB)")
    for alloc in dict.fromkeys(r["allocator"] for r in results):
        sub = [r for r in results if r["allocator"] == alloc]
        loads = ", ".join(f"{r['model']} b{r['batch']}: {r['load_before']} -> {r['load_after']}" for r in sub)
        lines += [
            f"## Allocator: {alloc}",
            "",
            f"Load averages (1/5/15 min) before -> after each block: {loads}.",
            "",
        ]
        table = []
        for r in sub:
            table += harness.rows(r, labels, cuda)
        lines += [harness.markdown_table(header, table), ""]
    return "\n".join(lines)


def parse(
    argv: Optional[list] = None, default_models=("efficientnet-lite0", "resnet50")
) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(default_models), choices=sorted(models.BUILDERS))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument(
        "--allocator",
        choices=["glibc", "tcmalloc", "both"],
        default="tcmalloc" if os.path.exists(harness.TCMALLOC) else "glibc",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--rounds", type=int, default=9, help="timing rounds at batch 1 (batch 16: a third, >= 3)"
    )
    ap.add_argument("--budget", type=float, default=120.0, help="stop adding rounds after this many seconds")
    ap.add_argument(
        "--memory-batches",
        nargs="*",
        type=int,
        default=None,
        help="batch sizes whose memory is measured (default: all; none: skip)",
    )
    ap.add_argument(
        "--memory-repeats", type=int, default=3, help="fresh processes per memory figure (median)"
    )
    ap.add_argument(
        "--render", nargs="+", default=None, help="only write the Markdown from these JSON results"
    )
    ap.add_argument("--command", default=None, help="with --render: the command(s) that measured them")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 1 min): EfficientNet-Lite0, batch 1, 3 rounds, no memory processes",
    )
    ap.add_argument("--out", default=None, help="Markdown file to write (default under docs/)")
    ap.add_argument("--json", default=None, help="also write the raw results as JSON")
    args = ap.parse_args(argv)
    if args.memory_batches is None:
        args.memory_batches = list(args.batches)
    if args.quick:
        args.models, args.batches, args.rounds, args.budget, args.memory_batches = (
            ["efficientnet-lite0"],
            [1],
            3,
            10.0,
            [],
        )
        args.allocator = "glibc" if args.allocator == "both" else args.allocator
    return args


def run(args: argparse.Namespace, script: str) -> list:
    """Run the timing and memory children for ``args`` and return their results."""
    allocs = ["glibc", "tcmalloc"] if args.allocator == "both" else [args.allocator]
    results = harness.orchestrate(
        script,
        args.models,
        args.batches,
        allocs,
        threads=args.threads,
        rounds=lambda b: args.rounds if b == 1 else max(2, args.rounds // 3),
        warmup=1,
        budget=args.budget,
        memory=args.memory_batches,
        memory_repeats=args.memory_repeats,
    )
    for r in results:
        r["threads"] = args.threads
    return results


def main() -> int:
    if harness.child(sys.argv, build, our_cases):
        return 0
    args = parse()
    if args.render:
        results = []
        for path in args.render:
            with open(path) as f:
                results += json.load(f)
    else:
        results = run(args, os.path.abspath(__file__))
    command = args.command or "python benchmarks/engine.py " + " ".join(sys.argv[1:])
    text = markdown(
        results,
        "Engine benchmark: Grad-CAM against a plain forward pass",
        command.strip(),
        LABELS,
        notes=NOTES,
    )
    out = args.out or os.path.join(
        ROOT, "docs", "results", "benchmarks-engine-quick.md" if args.quick else "benchmarks-engine.md"
    )
    with open(out, "w") as f:
        f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(text)
    print(f"\nwritten to {out}")
    return 0


NOTES = (
    "ms/image (median): median over interleaved rounds divided by the batch size. x forward (median): median "
    "over rounds of (case time / plain forward time of the same round). Best: the fastest round of each case "
    "and the ratio of the fastest times (load from other processes only adds time). CPU time: median over "
    "rounds of the ratio of process CPU time (both threads; OpenMP threads sleep when idle, "
    "`OMP_WAIT_POLICY=PASSIVE`), the figure least disturbed by other processes. Peak RSS delta: extra resident memory of one call in "
    "a fresh process (peak during the call minus RSS just before it). Grad-CAM layers: EfficientNet-Lite0 "
    "`_bn1` (1280 x 7 x 7), ResNet-50 `layer4` (2048 x 7 x 7); maps are upsampled to 224 x 224 and normalised."
)

if __name__ == "__main__":
    sys.exit(main())
