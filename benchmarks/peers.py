"""Issue 6's benchmark: us side by side with pytorch-grad-cam, Captum and torch-cam, in one run.

Needs the optional ``[bench]`` extra (torchvision, grad-cam, captum, torchcam) in its own
environment; the models themselves come from ``models.py`` (ResNet-50 and VGG-16 with torchvision's
architecture and module names, random weights; the EfficientNet-Lite0 ImageNet checkpoint).

For every model and batch (1 and 16; 224 x 224; 2 threads) each library computes, the way its
documentation shows a user writing it:

- Grad-CAM of the predicted class, upsampled to 224 x 224 (bilinear) and min-max normalised;
- Grad-CAM of the 5 best classes of every image (ours: one call with ``top_k=5``; the peers: five
  calls, the class ids given to them for free);
- Guided Grad-CAM where the library has it (ours, pytorch-grad-cam, Captum).

Timing, memory and load conventions: see ``harness.py``. ``--agreement`` also compares the maps
(max abs difference of normalised maps on two real photos, same layer, same class).

Run: ``python benchmarks/peers.py`` (``--allocator both``, ``--models``, ``--batches``, ``--quick``);
environment ``BENCH_PEERS=captum,torchcam`` keeps only those peers, ``BENCH_SKIP=pgc/guided,...`` drops
cases (the slow ones on VGG-16 at batch 16).
Results go to ``docs/results/benchmarks-peers.md``.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from typing import Dict

import engine
import harness
import models
import torch
import torch.nn.functional as F

import gradcam
from gradcam.explanation import normalize

LABELS = dict(engine.LABELS)
LABELS.update(
    {
        "pgc/gradcam": "pytorch-grad-cam: Grad-CAM",
        "pgc/gradcam-top5": "pytorch-grad-cam: Grad-CAM top-5 (5 calls)",
        "pgc/guided": "pytorch-grad-cam: Guided Grad-CAM",
        "captum/gradcam": "Captum: LayerGradCam",
        "captum/gradcam-top5": "Captum: LayerGradCam top-5 (5 calls)",
        "captum/guided": "Captum: GuidedGradCam",
        "torchcam/gradcam": "torch-cam: GradCAM",
        "torchcam/gradcam-top5": "torch-cam: GradCAM top-5 (1 forward, 5 backward)",
    }
)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    """What a user writes to normalise (N, 1, H, W) maps: per map (m - min) / (max - min)."""
    flat = m.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo + 1e-7)).view_as(m)


def _class_ids(n: int, k: int, device: str) -> torch.Tensor:
    """Fixed class ids (N, K) handed to the peers that need them (the cost does not depend on the class)."""
    return (torch.arange(n * k, device=device).view(n, k) * 37 + 11) % 1000


def pgc_cases(model, layer: str, x: torch.Tensor, device: str) -> Dict[str, harness.Case]:
    from pytorch_grad_cam import GradCAM as PGC
    from pytorch_grad_cam import GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    mod = model.get_submodule(layer)
    ids5 = _class_ids(x.shape[0], 5, device)

    def gradcam_top1():
        with PGC(model=model, target_layers=[mod]) as cam:
            return cam(input_tensor=x, targets=None)

    def gradcam_top5():
        with PGC(model=model, target_layers=[mod]) as cam:
            return [
                cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in ids5[:, j]])
                for j in range(5)
            ]

    # GuidedBackpropReLUModel swaps every nn.ReLU for its own and back for a fresh, not in-place
    # nn.ReLU, which changes the model: it gets its own copy so that the other cases are not affected.
    gmodel = copy.deepcopy(model)
    gmod = gmodel.get_submodule(layer)

    def guided():
        with PGC(model=gmodel, target_layers=[gmod]) as cam:
            maps = cam(input_tensor=x, targets=None)
        gb_model = GuidedBackpropReLUModel(model=gmodel, device=device)
        out = []
        for i in range(x.shape[0]):  # its guided backprop explains one image per call
            gb = gb_model(x[i : i + 1], target_category=None)
            out.append(maps[i][..., None] * gb)
        return out

    return {"pgc/gradcam": gradcam_top1, "pgc/gradcam-top5": gradcam_top5, "pgc/guided": guided}


def captum_cases(model, layer: str, x: torch.Tensor, device: str) -> Dict[str, harness.Case]:
    from captum.attr import GuidedGradCam, LayerAttribution, LayerGradCam

    mod = model.get_submodule(layer)
    ids5 = _class_ids(x.shape[0], 5, device)
    lgc = LayerGradCam(model, mod)
    ggc = GuidedGradCam(model, mod)
    size = tuple(x.shape[-2:])

    def one(target):
        a = lgc.attribute(x, target=target, relu_attributions=True)
        return _minmax(LayerAttribution.interpolate(a, size, interpolate_mode="bilinear"))

    return {
        "captum/gradcam": lambda: one(ids5[:, 0]),
        "captum/gradcam-top5": lambda: [one(ids5[:, j]) for j in range(5)],
        "captum/guided": lambda: ggc.attribute(x, target=ids5[:, 0]),
    }


def torchcam_cases(model, layer: str, x: torch.Tensor, device: str) -> Dict[str, harness.Case]:
    from torchcam.methods import GradCAM as TCGradCAM

    size = tuple(x.shape[-2:])

    def up(cams):
        return F.interpolate(cams.unsqueeze(1), size=size, mode="bilinear", align_corners=False)

    def gradcam_top1():
        with TCGradCAM(model, target_layer=layer) as ext:
            out = model(x)
            return up(ext(out.argmax(1).tolist(), out)[0])

    def gradcam_top5():
        with TCGradCAM(model, target_layer=layer) as ext:
            out = model(x)
            top = out.topk(5, dim=1).indices
            return [up(ext(top[:, j].tolist(), out, retain_graph=j < 4)[0]) for j in range(5)]

    return {"torchcam/gradcam": gradcam_top1, "torchcam/gradcam-top5": gradcam_top5}


PEERS = {"pgc": pgc_cases, "captum": captum_cases, "torchcam": torchcam_cases}


def all_cases(model, layer: str, x: torch.Tensor, device: str = "cpu") -> Dict[str, harness.Case]:
    """Our cases (with the two references) followed by every peer's, as no-argument callables."""
    cases = engine.our_cases(model, layer, x, device)
    only = os.environ.get("BENCH_PEERS")  # e.g. "captum,torchcam": only these peers
    for name, make in PEERS.items():
        if only is None or name in only.split(","):
            cases.update(make(model, layer, x, device))
    skip = os.environ.get("BENCH_SKIP", "")  # e.g. "pgc/gradcam-top5,pgc/guided": leave these cases out
    return {k: v for k, v in cases.items() if k not in skip.split(",")}


# -- agreement ----------------------------------------------------------------------------------------------
def photos(device: str = "cpu") -> torch.Tensor:
    """Two real photos (skimage chelsea, coffee): short side 256 (bicubic), centre crop 224, (x - 0.5) / 0.5."""
    import numpy as np
    from PIL import Image
    from skimage import data

    out = []
    for img in (data.chelsea(), data.coffee()):
        im = Image.fromarray(img)
        s = 256 / min(im.size)
        im = im.resize((round(im.width * s), round(im.height * s)), Image.BICUBIC)
        left, top = (im.width - 224) // 2, (im.height - 224) // 2
        arr = np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
    return ((torch.stack(out) - 0.5) / 0.5).to(device)


def _maxabs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().reshape(b.shape) - b.float()).abs().max())


def agreement(name: str, device: str = "cpu") -> Dict[str, float]:
    """Max abs differences between our normalised Grad-CAM maps and each peer's (same input, layer, class)."""
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM as PGC
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TCGradCAM

    model, layer = models.BUILDERS[name]()
    model = model.to(device)
    mod = model.get_submodule(layer)
    x = photos(device)
    size = tuple(x.shape[-2:])
    with torch.no_grad():
        ids = model(x).argmax(1)
    ours = gradcam.GradCAM(model, layer=layer)(x, target=ids)
    raw_n = normalize(ours.raw)
    res: Dict[str, float] = {}

    c = LayerGradCam(model, mod).attribute(x, target=ids, relu_attributions=True).detach()
    res["captum_raw_rel"] = _maxabs(c, ours.raw) / float(ours.raw.abs().max())
    res["captum_layer"] = _maxabs(normalize(c), raw_n)
    res["captum_upsampled"] = _maxabs(normalize(LayerAttribution.interpolate(c, size, "bilinear")), ours.maps)
    c0 = LayerGradCam(model, mod).attribute(x, target=ids).detach()  # Captum's default: no ReLU
    res["captum_relu_after_upsampling"] = _maxabs(
        normalize(torch.relu(LayerAttribution.interpolate(c0, size, "bilinear"))), ours.maps
    )

    with PGC(model=model, target_layers=[mod]) as cam:
        p = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(i)) for i in ids]))
    res["pgc_vs_maps"] = _maxabs(p, ours.maps)

    with TCGradCAM(model, target_layer=layer) as ext:
        out = model(x)
        t = ext(ids.tolist(), out)[0].detach()
    res["torchcam_layer"] = _maxabs(t, raw_n)
    res["torchcam_upsampled"] = _maxabs(
        F.interpolate(t.unsqueeze(1), size=size, mode="bilinear", align_corners=False), ours.maps
    )
    return res


AGREEMENT_LABELS = [
    ("captum_raw_rel", "Captum LayerGradCam, ReLU before upsampling: raw maps, max abs diff / max", "1e-5"),
    ("captum_layer", "Captum LayerGradCam, ReLU before upsampling: normalised, layer resolution", "1e-5"),
    (
        "captum_upsampled",
        "Captum LayerGradCam, ReLU before upsampling: normalised, after bilinear upsampling",
        "1e-5",
    ),
    (
        "captum_relu_after_upsampling",
        "Captum default (no ReLU), upsample, then ReLU: normalised",
        "convention",
    ),
    ("pgc_vs_maps", "pytorch-grad-cam (normalise, OpenCV bilinear resize, normalise again)", "1e-5"),
    ("torchcam_layer", "torch-cam GradCAM: normalised, layer resolution", "1e-5"),
    (
        "torchcam_upsampled",
        "torch-cam GradCAM (normalised at layer resolution), then upsampled",
        "convention",
    ),
]


def agreement_markdown(agree: Dict[str, Dict[str, float]]) -> str:
    names = list(agree)
    rows = [[label, *(f"{agree[m][key]:.1e}" for m in names)] for key, label, _ in AGREEMENT_LABELS]
    return harness.markdown_table(["comparison (max abs difference)", *names], rows)


LIBS = [("ours", ""), ("pytorch-grad-cam", "pgc/"), ("Captum", "captum/"), ("torch-cam", "torchcam/")]


def summary_markdown(results: list) -> str:
    """One row per (allocator, model, batch, library): the headline ratios (CPU time) and memory."""
    rows = []
    for r in results:
        s, mem = r["summary"], r["memory"]
        fwd_mem = (mem.get("forward") or {}).get("rss_mb")
        dx = s.get("forward+dx", {}).get("cpu_ratio")
        for lib, pre in LIBS:
            g, t5, gd = (s.get(pre + k) for k in ("gradcam", "gradcam-top5", "guided"))
            if g is None:
                continue
            rss = (mem.get(pre + "gradcam") or {}).get("rss_mb")
            rows.append(
                [
                    r["allocator"],
                    r["model"],
                    str(r["batch"]),
                    lib,
                    harness.fmt(g["cpu_ratio"], 2, "x"),
                    harness.fmt(t5["cpu_ratio"] if t5 else None, 2, "x"),
                    (harness.fmt(gd["cpu_ratio"], 2, "x") + f" ({gd['cpu_ratio'] / dx:.2f}x)")
                    if gd and dx
                    else "n/a",
                    harness.fmt(rss, 0) + (f" ({rss / fwd_mem:.2f}x)" if rss is not None and fwd_mem else ""),
                ]
            )
    header = [
        "allocator",
        "model",
        "batch",
        "library",
        "Grad-CAM, x forward",
        "top-5, x forward",
        "Guided Grad-CAM, x forward (x forward + dx)",
        "Grad-CAM peak RSS delta, MB (x forward's)",
    ]
    return harness.markdown_table(header, rows)


NOTES = (
    "Each library's code is what its documentation shows a user writing (see `benchmarks/peers.py`). "
    "Grad-CAM maps are upsampled to 224 x 224 and normalised in every library (pytorch-grad-cam does both "
    "itself; Captum gets `LayerAttribution.interpolate(..., 'bilinear')` and a min-max; torch-cam gets "
    "`F.interpolate`). Captum needs the class ids: they are handed to it for free, as they are to "
    "pytorch-grad-cam for top-5; ours finds the predicted / 5 best classes in its own forward pass. "
    "pytorch-grad-cam's guided backpropagation explains one image per call, so batch 16 is 16 calls. "
    "Layers: ResNet-50 `layer4`, VGG-16 `features.30`, EfficientNet-Lite0 `_bn1`. "
    + engine.NOTES.split("Grad-CAM layers")[0]
)


def main() -> int:
    if harness.child(sys.argv, engine.build, all_cases):
        return 0
    ap_args = [a for a in sys.argv[1:] if a not in ("--agreement", "--no-timing")]
    args = engine.parse(ap_args, default_models=("resnet50", "vgg16", "efficientnet-lite0"))
    results, agree = [], {}
    if args.render:
        for path in args.render:
            with open(path) as f:
                data = json.load(f)
            results += data["timing"]
            agree.update(data["agreement"])
    elif "--no-timing" not in sys.argv:
        results = engine.run(args, os.path.abspath(__file__))
    if "--agreement" in sys.argv and not args.render:
        torch.set_num_threads(args.threads)
        for m in args.models:
            t0 = time.perf_counter()
            agree[m] = agreement(m)
            print(f"agreement {m} ({time.perf_counter() - t0:.0f}s): {agree[m]}", flush=True)
    command = args.command or ("python benchmarks/peers.py " + " ".join(sys.argv[1:])).strip()
    notes = NOTES
    if results:
        notes += (
            "\n\n## Summary (CPU-time ratios, the figure least disturbed by the other processes)\n\n"
            + summary_markdown(results)
            + "\n\nAll measurements follow."
        )
    text = engine.markdown(
        results, "Side by side: ours, pytorch-grad-cam, Captum, torch-cam", command, LABELS, notes=notes
    )
    if agree:
        text += (
            "\n## Agreement of the maps (two real photos, predicted class, same layer)\n\n"
            + agreement_markdown(agree)
            + "\n"
        )
    out = args.out or os.path.join(
        engine.ROOT, "docs", "results", "benchmarks-peers-quick.md" if args.quick else "benchmarks-peers.md"
    )
    with open(out, "w") as f:
        f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"timing": results, "agreement": agree}, f, indent=1)
    print(text)
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
