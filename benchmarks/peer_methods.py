"""Cost of the methods from the peers (pytorch-grad-cam, torch-cam, Captum) as ratios to a plain forward, in one
run, beside the peers' own implementations where they are installed.

Usage: python benchmarks/peer_methods.py [--batch 8] [--rounds 5] [--threads 2] [--out docs/results/peer-methods.md]
(in the compat environment, with grad-cam, torchcam and captum, for the peers' rows; without them only ours).

EfficientNet-Lite0 (embedded, 224 px, its default layer) and a ResNet-50-sized layer (a CNN whose last
block outputs 2048 x 7 x 7, random weights) for DFF's K = 8 bound. SS-CAM and IS-CAM score C x samples
masked inputs per image (1280 x 35 and 1280 x 10 at the defaults): they run on one image with 2 samples at
the 320-channel block before the head, in a table of their own (their cost is linear in C x samples). Every case of one table runs interleaved in rounds (benchmarks/harness.py), so load from
other processes hits all cases alike.
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


#: Constructor arguments of our cases (name -> (registry name, kwargs)).
OURS = {
    "dff": ("dff", {"concepts": 8}),
    "integrated-gradients (batch_size=64, before)": ("integrated-gradients", {"batch_size": 64}),
    "sscam (2 samples)": ("sscam", {"samples": 2}),
    "iscam (2 samples)": ("iscam", {"samples": 2}),
}


def pgc_cases(model: nn.Module, layer: str, x: torch.Tensor, names) -> dict:
    """pytorch-grad-cam's own implementations, called as its README shows (targets: the top-1 classes)."""
    try:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        return {}
    mod = model.get_submodule(layer)
    ids = model(x).argmax(1).tolist()
    targets = [ClassifierOutputTarget(c) for c in ids]
    classes = {
        "shapleycam": pgc.ShapleyCAM,
        "gradcam-elementwise": pgc.GradCAMElementWise,
        "kpcacam": pgc.KPCA_CAM,
        "fullgrad": pgc.FullGrad,
        "finercam": pgc.FinerCAM,
        "segeigencam": pgc.SegEigenCAM,
    }
    cases = {}
    for name in names:
        if name == "dff":

            def dff_run():  # built per call, its hooks released after (they would slow every other case)
                dff = pgc.DeepFeatureFactorization(
                    model=model, target_layer=mod, computation_on_concepts=None
                )
                try:
                    return dff(x, n_components=8)
                finally:
                    dff.activations_and_grads.release()

            cases["pytorch-grad-cam: dff"] = dff_run
        elif name in classes:

            def run(cls=classes[name], name=name):
                layers = [] if name == "fullgrad" else [mod]
                kw = {} if name == "finercam" else {"targets": targets}
                with cls(model=model, target_layers=layers) as cam:
                    return cam(input_tensor=x, **kw)

            cases[f"pytorch-grad-cam: {name}"] = run
    return cases


def torchcam_cases(model: nn.Module, layer: str, x: torch.Tensor, names) -> dict:
    """torch-cam's own extractors (hooks on the model; one forward, then the extractor's passes)."""
    try:
        from torchcam import methods
    except ImportError:
        return {}
    specs = {
        "smoothgradcam++": ("SmoothGradCAMpp", {}),
        "sscam (2 samples)": ("SSCAM", {"num_samples": 2}),
        "iscam (2 samples)": ("ISCAM", {"num_samples": 2}),
    }
    ids = model(x).argmax(1).tolist()
    cases = {}
    for name in names:
        if name not in specs:
            continue
        cls, kw = specs[name]

        def run(cls=cls, kw=kw):
            with getattr(methods, cls)(model, layer, input_shape=tuple(x.shape[1:]), **kw) as ext:
                out = model(x)
                return ext(class_idx=ids, scores=out)

        cases[f"torch-cam: {name}"] = run
    return cases


def captum_cases(model: nn.Module, x: torch.Tensor, names) -> dict:
    """Captum's IntegratedGradients (33 points) and NoiseTunnel SmoothGrad (25 samples), at most about 10 inputs
    per pass like ours (Captum's default, everything in one batch, needs several GB at 224 px)."""
    try:
        from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
    except ImportError:
        return {}
    ids = model(x).argmax(1)
    cases = {}
    if "integrated-gradients" in names:
        ig = IntegratedGradients(model)
        cases["Captum: integrated-gradients (33 points)"] = lambda: ig.attribute(
            x, target=ids, n_steps=33, method="riemann_trapezoid", internal_batch_size=10
        )
    if "smoothgrad" in names:
        nt = NoiseTunnel(Saliency(model))
        cases["Captum: smoothgrad (25 samples)"] = lambda: nt.attribute(
            x,
            target=ids,
            nt_type="smoothgrad",
            nt_samples=25,
            stdevs=0.15,
            abs=False,
            nt_samples_batch_size=2,
        )
    return cases


def cases_for(model: nn.Module, layer: str, x: torch.Tensor, names, peers: bool = True):
    def forward():
        with torch.no_grad():
            return model(x)

    def forward_backward():
        xx = x.clone().requires_grad_(True)
        y = model(xx)
        return torch.autograd.grad(y.gather(1, y.argmax(1, keepdim=True)).sum(), xx)

    cases = {"forward": forward, "forward+backward": forward_backward}
    for name in names:
        reg, kw = OURS.get(name, (name, {}))
        m = registry.get(reg)(model, layer=layer, **kw)
        cases[name] = lambda m=m: m(x)
    if peers:
        with torch.no_grad():
            cases.update(pgc_cases(model, layer, x, names))
            cases.update(torchcam_cases(model, layer, x, names))
        cases.update(captum_cases(model, x, names))
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
            x,
            [
                "gradcam",
                "shapleycam",
                "smoothgradcam++",
                "fullgrad",
                "gradcam-elementwise",
                "segeigencam",
                "kpcacam",
                "finercam",
                "dff",
                "gradient-x-input",
                "integrated-gradients",
                "integrated-gradients (batch_size=64, before)",
                "smoothgrad",
                "vargrad",
            ],
        ),
        "EfficientNet-Lite0, SS-CAM and IS-CAM (one image, 2 samples, layer _blocks.15: 320 channels)": (
            lite.model.eval(),
            "_blocks.15",
            x[:1],
            ["gradcam", "sscam (2 samples)", "iscam (2 samples)"],
        ),
        "ResNet-50-sized (2048 x 7 x 7)": (
            resnet50_sized(),
            "14",
            x,
            ["gradcam", "dff", "kpcacam", "fullgrad"],
        ),
    }
    result, lines = {}, []
    for label, (model, layer, xb, names) in runs.items():
        rounds = args.rounds if xb.shape[0] == x.shape[0] else max(1, args.rounds // 2)
        timed = harness.time_interleaved(cases_for(model, layer, xb, names), rounds=rounds, min_rounds=1)
        summary = harness.summarize(timed, xb.shape[0])
        result[label] = summary
        lines.append(f"\n### {label}, batch {xb.shape[0]}, 224 px, {args.threads} threads, {rounds} rounds\n")
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
