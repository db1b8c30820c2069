"""What ``GradCAM(model, differentiable=True)`` costs inside a training step (issue 16).

Cases, timed in interleaved rounds in one process (CPU time of the process, one thread), ratios per round
against ``train-step``:

- ``forward``: ``model(x)`` under ``torch.no_grad()``;
- ``train-step``: cross-entropy, parameter gradients with ``torch.autograd.grad`` (the reference);
- ``gradcam``: the ordinary (non-differentiable) Grad-CAM call, for scale;
- ``attention-step``: one forward with ``GradCAM(model, differentiable=True)`` (maps of the label),
  loss = CE + 10 * Grad-CAM mass in a corner region, parameter gradients of that loss (a double backward).

Models: the bias study's CNN (:class:`gradcam.evaluation.synthetic.ShapeNet`, width 8, 64 px, batch 50)
and the embedded EfficientNet-Lite0 (224 px, batch 4, layer ``_head_act``). Peak extra memory per case
from ``benchmarks/harness.py`` (fresh process each). Run ``python benchmarks/bench_differentiable.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import gradcam  # noqa: E402
from gradcam.evaluation.synthetic import GRADCAM_LAYER, ShapeNet  # noqa: E402
from gradcam.studies.bias import mass_share  # noqa: E402


def build(name: str):
    torch.manual_seed(0)
    if name == "shapenet":
        model, layer, x = ShapeNet("gap", 8, 64, num_classes=2), GRADCAM_LAYER, torch.rand(50, 3, 64, 64)
        y = torch.randint(0, 2, (50,))
    else:
        loaded = gradcam.load_model("efficientnet-lite0")
        model, layer, x = loaded.model, loaded.layer, torch.rand(4, 3, 224, 224) * 2 - 1
        y = torch.randint(0, 1000, (4,))
    return model, layer, x, y


def cases(model, layer, x, y):
    params = [p for p in model.parameters() if p.requires_grad]
    region = torch.zeros(x.shape[-2:])
    region[: x.shape[-2] // 4, : x.shape[-1] // 4] = 1
    diff = gradcam.GradCAM(model, layer=layer, differentiable=True)
    plain = gradcam.GradCAM(model, layer=layer)
    model.eval()

    def forward():
        with torch.no_grad():
            return model(x)

    def train_step():
        return torch.autograd.grad(F.cross_entropy(model(x), y), params)

    def gradcam_call():
        return plain(x, target=y.tolist()).maps

    def attention_step():
        res = diff(x, target=y.tolist())
        loss = F.cross_entropy(res.output, y) + 10 * mass_share(res.maps[:, 0], region).mean()
        return torch.autograd.grad(loss, params)

    return {
        "forward": forward,
        "train-step": train_step,
        "gradcam": gradcam_call,
        "attention-step": attention_step,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--models", default="shapenet,efficientnet-lite0")
    ap.add_argument("--memory", nargs=2, metavar=("MODEL", "CASE"), help=argparse.SUPPRESS)  # child mode
    ap.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(__file__), "..", "docs", "results", "benchmarks-differentiable.md"
        ),
    )
    args = ap.parse_args(argv)
    harness.setup(1)
    if args.memory:  # a fresh process: warm up on a small input, then measure one call of one case
        model, layer, x, y = build(args.memory[0])
        cases(model, layer, x[:1], y[:1])[args.memory[1]]()
        print(json.dumps(harness.measure_memory(cases(model, layer, x, y)[args.memory[1]])))
        return 0
    rows, raw = [], {}
    for name in args.models.split(","):
        model, layer, x, y = build(name)
        cs = cases(model, layer, x, y)
        timed = harness.time_interleaved(
            cs, args.rounds, reference="train-step", log=lambda s: print(s, file=sys.stderr)
        )
        summary = harness.summarize(timed, x.shape[0], reference="train-step")
        mem = {}
        for case in cs:
            out = harness.run_child(os.path.abspath(__file__), ["--memory", name, case], dict(os.environ))
            mem[case] = out["rss_mb"] if out else None
        raw[name] = {"timing": summary, "memory": mem}
        for case, s in summary.items():
            rows.append(
                [
                    name,
                    f"{x.shape[0]} x {x.shape[-1]} px",
                    case,
                    f"{s['cpu_ms_per_image']:.1f}",
                    f"{s['cpu_ratio']:.2f}",
                    harness.fmt(mem[case], 0, " MB"),
                ]
            )
    table = harness.markdown_table(
        ["model", "batch", "case", "CPU ms/image", "ratio to train-step", "peak extra memory"], rows
    )
    text = (
        f"<!-- made by: python benchmarks/bench_differentiable.py; {harness.allocator()}, 1 thread, "
        f"{harness.load()} -->\n\n{table}\n"
    )
    print(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(json.dumps(raw, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
