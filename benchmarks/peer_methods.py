"""Cost of the methods from the peers (pytorch-grad-cam, Captum) as ratios to a plain forward, in one run.

Usage: python benchmarks/peer_methods.py [--batch 8] [--rounds 5] [--threads 2] [--out docs/results/peer-methods.md]

EfficientNet-Lite0 (embedded, 224 px, its default layer) and a ResNet-50-sized layer (a CNN whose last
block outputs 2048 x 7 x 7, random weights) for DFF's K = 8 bound. Every case of one model runs
interleaved in rounds (benchmarks/harness.py), so load from other processes hits all cases alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

from gradcam.methods import registry  # noqa: E402


def resnet50_sized(classes: int = 1000) -> nn.Module:
    """A stride-32 CNN with ResNet-50's last-block width (2048 channels, 7 x 7 at 224 px) and a GAP + FC head."""
    torch.manual_seed(0)
    widths = [3, 64, 256, 512, 1024, 2048]
    layers = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, classes)).eval()


def cases_for(model: nn.Module, layer: str, x: torch.Tensor, names):
    def forward():
        with torch.no_grad():
            return model(x)

    def forward_backward():
        xx = x.clone().requires_grad_(True)
        y = model(xx)
        return torch.autograd.grad(y.gather(1, y.argmax(1, keepdim=True)).sum(), xx)

    cases = {"forward": forward, "forward+backward": forward_backward}
    for name in names:
        kw = {"concepts": 8} if name == "dff" else {}
        m = registry.get(name)(model, layer=layer, **kw)
        cases[name] = lambda m=m: m(x)
    return cases


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from gradcam.models import load_model

    lite = load_model("efficientnet-lite0")
    x = torch.randn(args.batch, 3, 224, 224)
    runs = {
        "EfficientNet-Lite0": (
            lite.model.eval(),
            lite.layer,
            [
                "gradcam",
                "fullgrad",
                "gradcam-elementwise",
                "kpcacam",
                "finercam",
                "dff",
                "gradient-x-input",
                "integrated-gradients",
                "smoothgrad",
                "vargrad",
            ],
        ),
        "ResNet-50-sized (2048 x 7 x 7)": (resnet50_sized(), "14", ["gradcam", "dff", "kpcacam", "fullgrad"]),
    }
    result, lines = {}, []
    for label, (model, layer, names) in runs.items():
        timed = harness.time_interleaved(cases_for(model, layer, x, names), rounds=args.rounds)
        summary = harness.summarize(timed, args.batch)
        result[label] = summary
        lines.append(f"\n### {label}, batch {args.batch}, 224 px, {args.threads} threads\n")
        lines.append(
            "| case | ms / image | x forward (wall) | x forward (best) | x forward (CPU) |\n|---|---:|---:|---:|---:|"
        )
        for name, s in summary.items():
            lines.append(
                f"| {name} | {s['ms_per_image']:.1f} | {s['ratio']:.2f} | {s['best_ratio']:.2f} | "
                f"{s['cpu_ratio']:.2f} |"
            )
    text = "\n".join(lines)
    print(text)
    print(json.dumps({k: {n: round(s["ratio"], 3) for n, s in v.items()} for k, v in result.items()}))
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                f"<!-- made by: python benchmarks/peer_methods.py --batch {args.batch} --rounds {args.rounds} "
                f"--threads {args.threads} ({harness.allocator()}, {harness.load()}) -->\n{text}\n"
            )


if __name__ == "__main__":
    main()
