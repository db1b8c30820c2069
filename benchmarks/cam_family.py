"""Issue 11's benchmark: the CAM family, ours beside pytorch-grad-cam (pgc) and torch-cam, in one run.

Three parts (environment: the ``[bench]`` extra, e.g. /work/benchenv with ``PYTHONPATH=src:benchmarks``;
pgc also needs ``ttach``):

1. Layer methods (``--part layer``), per model and batch (1 and 16; 224 x 224; 2 threads), interleaved
   rounds in a child process and each case's peak memory in a fresh one (``harness.orchestrate``):
   plain forward, ours and pgc's Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM, Eigen-CAM, Eigen-Grad-CAM,
   Grad-CAM with ``aug_smooth`` / ``eigen_smooth``, our Ablation-CAM; torch-cam's Grad-CAM++, XGrad-CAM,
   LayerCAM. Predicted class, maps upsampled to 224 and normalised, the way each library documents it.
2. Perturbation methods (``--part perturbation``), one process, one image: Ablation-CAM (ours; pgc's,
   one call: it runs the whole network for every batch of ablations) on EfficientNet-Lite0's default
   layer and ResNet-50 ``layer4``; Score-CAM and RISE (ours, 1280 masked inputs at batch 64) against
   the same number of plain forwards at the same batch size, and pgc's / torch-cam's Score-CAM; peak
   memory of each call (extra RSS).
3. ``--agreement``: max abs difference between our normalised maps and each peer's for the methods
   they share (EfficientNet-Lite0 with its ImageNet weights, two real photos, predicted class).

Run: ``PYTHONPATH=src:benchmarks /work/benchenv/bin/python benchmarks/cam_family.py [--part layer|perturbation|all]
[--agreement] [--quick]``. Results: ``benchmarks/results/cam_family.json`` and ``docs/results/benchmarks-cam-family.md``.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
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

OURS = {
    "gradcam": gradcam.GradCAM,
    "gradcam++": gradcam.GradCAMPlusPlus,
    "xgradcam": gradcam.XGradCAM,
    "hirescam": gradcam.HiResCAM,
    "layercam": gradcam.LayerCAM,
    "eigencam": gradcam.EigenCAM,
    "eigengradcam": gradcam.EigenGradCAM,
}
PGC = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "eigengradcam": "EigenGradCAM",
}
TORCHCAM = {"gradcam++": "GradCAMpp", "xgradcam": "XGradCAM", "layercam": "LayerCAM"}
LABELS = dict(engine.LABELS)
LABELS.update({f"ours/{k}": f"ours: {k}" for k in OURS})
LABELS.update({f"pgc/{k}": f"pytorch-grad-cam: {v}" for k, v in PGC.items()})
LABELS.update({f"torchcam/{k}": f"torch-cam: {v}" for k, v in TORCHCAM.items()})
LABELS.update(
    {
        "ours/gradcam-aug": "ours: Grad-CAM, aug_smooth (6 views)",
        "ours/gradcam-eigen": "ours: Grad-CAM, eigen_smooth",
        "pgc/gradcam-aug": "pytorch-grad-cam: GradCAM, aug_smooth=True",
        "pgc/gradcam-eigen": "pytorch-grad-cam: GradCAM, eigen_smooth=True",
        "ours/ablationcam": "ours: Ablation-CAM (post-layer replay)",
    }
)


def _minmax(m: torch.Tensor) -> torch.Tensor:
    flat = m.flatten(1)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    return ((flat - lo) / (hi - lo + 1e-7)).view_as(m)


def layer_cases(model, layer: str, x: torch.Tensor, device: str) -> Dict[str, harness.Case]:
    """Every timed case of part 1 for one (model, batch)."""
    import pytorch_grad_cam as pgc
    import torchcam.methods as tcm

    mod = model.get_submodule(layer)
    model.eval()

    def forward():
        with torch.no_grad():
            return model(x)

    cases = {"forward": forward}
    for key, cls in OURS.items():
        m = cls(model, layer=layer)
        cases[f"ours/{key}"] = lambda m=m: m(x).maps
    g = gradcam.GradCAM(model, layer=layer)
    cases["ours/gradcam-aug"] = lambda: g(x, aug_smooth=True).maps
    cases["ours/gradcam-eigen"] = lambda: g(x, eigen_smooth=True).maps
    ab = gradcam.AblationCAM(model, layer=layer, batch_size=256)
    cases["ours/ablationcam"] = lambda: ab(x).maps
    for key, name in PGC.items():

        def run(name=name, **kw):
            with getattr(pgc, name)(model=model, target_layers=[mod]) as cam:
                return cam(input_tensor=x, targets=None, **kw)

        cases[f"pgc/{key}"] = run
    cases["pgc/gradcam-aug"] = lambda: cases["pgc/gradcam"](aug_smooth=True)
    cases["pgc/gradcam-eigen"] = lambda: cases["pgc/gradcam"](eigen_smooth=True)
    for key, name in TORCHCAM.items():

        def run_tc(name=name):
            with getattr(tcm, name)(model, target_layer=layer) as ext:
                out = model(x)
                cams = ext(out.argmax(1).tolist(), out)[0]
            return _minmax(
                F.interpolate(cams.unsqueeze(1), size=x.shape[-2:], mode="bilinear", align_corners=False)
            )

        cases[f"torchcam/{key}"] = run_tc
    return cases


# -- part 2: perturbation methods ----------------------------------------------------------------------------


def _timed(fn, repeats: int) -> Dict[str, float]:
    wall, cpu = [], []
    for _ in range(repeats):
        gc.collect()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu), "repeats": repeats}


def _ablation(name: str, quick: bool, reps: int) -> Dict:
    """Ablation-CAM for one image: ours (post-layer replay) and pgc's (whole network per batch), vs a forward."""
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if name == "gradcam.load_model('efficientnet-lite0')":  # our own EfficientNet-Lite0 and its default layer
        loaded = gradcam.load_model("efficientnet-lite0")
        model, layer = loaded.model, loaded.layer
        x = models.build("efficientnet-lite0", 1)[2]
    else:
        model, layer, x = models.build(name, 1)
    model.eval()
    with torch.no_grad():
        cls = int(model(x).argmax(1))
    mod = model.get_submodule(layer)

    def forward():
        with torch.no_grad():
            return model(x)

    ab = gradcam.AblationCAM(model, layer=layer, batch_size=256)
    res = {"forward": _timed(forward, 5 * reps), "ours/ablationcam": _timed(lambda: ab(x, target=cls), reps)}
    res["ours/ablationcam"]["rss_mb"] = harness.measure_memory(lambda: ab(x, target=cls))["rss_mb"]

    ratio = PGC_ABLATION_RATIO

    def pgc_ablation():
        with pgc.AblationCAM(model=model, target_layers=[mod], ratio_channels_to_ablate=ratio) as cam:
            cam.batch_size = 32
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])

    if not quick and name == "resnet50":
        r = _timed(pgc_ablation, 1)
        # pgc's own option to ablate a fraction of the channels; its cost is linear in the channels
        # ablated (one whole-network forward per batch of 32), so the full cost is time / ratio.
        res[f"pgc/ablationcam (ratio_channels_to_ablate={ratio}, scaled x{1 / ratio:.0f})"] = {
            "wall_s": r["wall_s"] / ratio,
            "cpu_s": r["cpu_s"] / ratio,
            "repeats": 1,
        }
    return {"layer": layer, "channels": int(ab(x, target=cls).weights.shape[-1]), **res}


def perturbation(quick: bool = False, only_ablation: bool = False) -> Dict[str, Dict]:
    """Part 2 (see the module docstring); every figure in seconds of one call for one image."""
    import pytorch_grad_cam as pgc
    import torchcam.methods as tcm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    out: Dict[str, Dict] = {}
    reps = 1 if quick else 2
    names = ["gradcam.load_model('efficientnet-lite0')", "resnet50"]
    for name in names[:1] if quick else names:
        out[f"ablation/{name}"] = _ablation(name, quick, reps)
        print(name, json.dumps(out[f"ablation/{name}"]), flush=True)
    if only_ablation:
        return out

    # Score-CAM and RISE on EfficientNet-Lite0 (1280 channels at its default layer), 112 px inputs
    model, layer, x = models.build("efficientnet-lite0", 1, size=SCORE_SIZE)
    model.eval()
    mod = model.get_submodule(layer)
    bs = 64
    n = 1280 if not quick else 256
    seen = {}
    hook = mod.register_forward_hook(lambda m_, i_, o: seen.update(a=o.detach()))
    with torch.no_grad():
        cls = int(model(x).argmax(1))
    hook.remove()
    # Score-CAM scores the zero image once for all the channels that are zero everywhere: the forwards it
    # needs are those of the other channels (and one), which the reference's 1280 overcount.
    zero_channels = int((seen["a"].flatten(2).abs().amax(2) == 0).sum())
    xb = x.expand(bs, *x.shape[1:]).contiguous() * 0.5

    def forwards():
        with torch.no_grad():
            for _ in range(-(-n // bs)):
                model(xb)

    sc = gradcam.ScoreCAM(model, layer=layer, batch_size=bs)
    rise = gradcam.RISE(model, n_masks=n, batch_size=bs)
    res = {
        "forwards": _timed(forwards, reps),
        "ours/scorecam": _timed(lambda: sc(x, target=cls), reps),
        "ours/rise": _timed(lambda: rise(x, target=cls), reps),
    }
    for k, fn in (
        ("forwards", forwards),
        ("ours/scorecam", lambda: sc(x, target=cls)),
        ("ours/rise", lambda: rise(x, target=cls)),
    ):
        res[k]["rss_mb"] = harness.measure_memory(fn)["rss_mb"]

    def pgc_score():
        with pgc.ScoreCAM(model=model, target_layers=[mod]) as cam:
            cam.batch_size = bs
            return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])

    def tc_score():
        with tcm.ScoreCAM(model, target_layer=layer, batch_size=bs) as ext:
            with torch.no_grad():
                out_ = model(x)
            return ext(cls, out_)

    if not quick:
        res["pgc/scorecam"] = _timed(pgc_score, 1)
        res["pgc/scorecam"]["rss_mb"] = harness.measure_memory(pgc_score)["rss_mb"]
        res["torchcam/scorecam"] = _timed(tc_score, 1)
        res["torchcam/scorecam"]["rss_mb"] = harness.measure_memory(tc_score)["rss_mb"]
    key = f"scorecam-rise/efficientnet-lite0 ({SCORE_SIZE} px)"
    out[key] = {"layer": layer, "masked_inputs": n, "zero_channels": zero_channels, "batch_size": bs, **res}
    print(json.dumps(out[key]), flush=True)
    return out


# -- part 3: agreement ---------------------------------------------------------------------------------------


def agreement(quick: bool = False) -> Dict[str, Dict[str, float]]:
    """Max abs difference of normalised maps (224 px unless stated), ours vs each peer, same layer and class."""
    import peers
    import pytorch_grad_cam as pgc
    import torchcam.methods as tcm
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, layer = models.BUILDERS["efficientnet-lite0"]()
    model.eval()
    mod = model.get_submodule(layer)
    x = peers.photos()
    with torch.no_grad():
        ids = model(x).argmax(1)
    targets = [ClassifierOutputTarget(int(i)) for i in ids]
    res: Dict[str, Dict[str, float]] = {}

    def diff(a, b):
        return float((torch.as_tensor(a).float().reshape(b.shape) - b.float()).abs().max())

    ours_all = {k: cls(model, layer=layer)(x, target=ids) for k, cls in OURS.items()}
    if not quick:
        ours_all["scorecam"] = gradcam.ScoreCAM(model, layer=layer, batch_size=64)(x, target=ids)
        ours_all["ablationcam"] = gradcam.AblationCAM(model, layer=layer)(x, target=ids)
    g = gradcam.GradCAM(model, layer=layer)
    ours_all["gradcam-eigen"] = g(x, target=ids, eigen_smooth=True)
    ours_all["gradcam-aug"] = g(x, target=ids, aug_smooth=True)
    pgc_names = dict(PGC, scorecam="ScoreCAM", ablationcam="AblationCAM")
    for key, ours in ours_all.items():
        row: Dict[str, float] = {}
        base = key.split("-")[0] if key.startswith("gradcam-") else key
        if base in pgc_names:
            kw = (
                {"aug_smooth": True}
                if key == "gradcam-aug"
                else {"eigen_smooth": True}
                if key == "gradcam-eigen"
                else {}
            )
            with getattr(pgc, pgc_names[base])(model=model, target_layers=[mod]) as cam:
                if base in ("scorecam", "ablationcam"):
                    cam.batch_size = 64
                p = torch.from_numpy(cam(input_tensor=x, targets=targets, **kw))
            row["pgc"] = diff(p, ours.maps[:, 0])
        tc_name = dict(TORCHCAM, scorecam="ScoreCAM").get(key)
        if tc_name is not None:
            with getattr(tcm, tc_name)(model, target_layer=layer) as ext:
                out = model(x)
                t = ext(ids.tolist(), out)[0].detach()
            row["torchcam_layer"] = diff(t, normalize(ours.raw[:, 0]))
        res[key] = row
        print("agreement", key, row, flush=True)
    return res


PGC_ABLATION_RATIO = 0.05
SCORE_SIZE = 112

NOTES = """Ratios are to a plain `no_grad` forward of the same batch measured in the same rounds (CPU time).
pytorch-grad-cam 1.5.7 (with ttach 0.0.3), torch-cam 0.5.0, torch 2.14.1, in one environment."""


CONVENTIONS = """## Convention differences found (ours vs the peers' code)

- **Grad-CAM++**: pytorch-grad-cam adds 1e-6 to the denominator of alpha (ours: alpha = 0 only where the
  denominator is exactly 0, the paper's rule); where g^2 is below ~1e-6 its alpha shrinks towards 0:
  the 0.10 difference in the agreement table. torch-cam's denominator is 2 g_ij^2 + sum_ab (A_ab g_ab^3),
  the cube *inside* the spatial sum; the paper (and ours, and pytorch-grad-cam) has sum_ab A_ab * g_ij^3.
- **XGrad-CAM**: pytorch-grad-cam adds 1e-7 to sum(A); ours gives weight 0 where sum(A) = 0.
- **Score-CAM**: pytorch-grad-cam weights channels by a softmax *over the channels* of the masked inputs'
  target logits; torch-cam by a softmax over the channels of (logit of the masked input - logit of a
  zero baseline); the paper's Algorithm 1 and ours: the class probability (softmax over the classes) of
  each masked input. pytorch-grad-cam builds all C masked copies of each image before the forwards.
- **Ablation-CAM**: pytorch-grad-cam zeroes the channel only when the layer's minimum is exactly 0;
  otherwise it sets it to min - 1e7 ("deviating from the paper", its comment). Ours always sets it to 0
  (the paper's definition). It also runs the whole network for every batch of 32 ablations.
- **Eigen-CAM / eigen_smooth**: pytorch-grad-cam takes the SVD's sign as it comes (the map can point
  away from the object: the difference of 1.0 for Eigen-CAM in the agreement table is that flip); ours
  fixes it to correlate positively with the channel sum. Both centre the
  activations over positions before the decomposition.
- **LayerCAM with several layers**: pytorch-grad-cam averages the layers' normalised maps; torch-cam
  and ours fuse as the paper: tanh(2 L / max L) per layer, then the element-wise maximum.
- **Normalisation and upsampling**: pytorch-grad-cam min-max normalises at the layer's resolution,
  resizes with OpenCV, and normalises again; torch-cam returns maps at the layer's resolution; ours
  upsamples (bilinear, align_corners=False) then normalises once.
- **aug_smooth**: the same six views as pytorch-grad-cam (ttach: flip x multiply 0.9/1.0/1.1); pgc runs
  one forward and backward per view, ours one for all views, with the classes of the un-augmented image
  (pgc resolves each view's own top class when targets=None).
"""


def render(data: dict, command: str) -> str:
    lines = [f"# The CAM family: ours beside pytorch-grad-cam and torch-cam\n\nCommand: `{command}`\n"]
    lay = data.get("layer") or []
    if lay:
        lines.append(engine.markdown(lay, "Layer methods", command, LABELS, notes=NOTES))
    pert = data.get("perturbation") or {}
    if pert:
        lines.append("## Perturbation methods (one image, seconds per call; CPU time, 1 thread)\n")
        rows = []
        for sec, r in pert.items():
            ref = r["forward"]["cpu_s"] if "forward" in r else r["forwards"]["cpu_s"]
            ref_name = (
                "one forward"
                if "forward" in r
                else f"{r['masked_inputs']} forwards at batch {r['batch_size']}"
            )
            for k, v in r.items():
                if isinstance(v, dict) and "cpu_s" in v:
                    rows.append(
                        [
                            sec,
                            k,
                            f"{v['cpu_s']:.3f}",
                            f"{v['wall_s']:.3f}",
                            f"{v['cpu_s'] / ref:.2f}x {ref_name}",
                            harness.fmt(v.get("rss_mb"), 0),
                        ]
                    )
        lines.append(
            harness.markdown_table(
                ["case", "method", "CPU s", "wall s", "ratio", "extra peak RSS (MB)"], rows
            )
        )
    agree = data.get("agreement") or {}
    if agree:
        lines.append(
            "\n## Agreement (max abs difference of normalised maps; EfficientNet-Lite0, two photos)\n"
        )
        lines.append(
            harness.markdown_table(
                ["method", "pytorch-grad-cam (224 px)", "torch-cam (layer resolution)"],
                [
                    [
                        k,
                        harness.fmt(v.get("pgc"), 4) if "pgc" in v else "n/a",
                        harness.fmt(v.get("torchcam_layer"), 4) if "torchcam_layer" in v else "n/a",
                    ]
                    for k, v in agree.items()
                ],
            )
        )
    lines.append("\n" + CONVENTIONS)
    return "\n".join(lines) + "\n"


def main() -> int:
    if harness.child(sys.argv, models.build, layer_cases):
        return 0
    argv = sys.argv[1:]
    part = "all"
    if "--part" in argv:
        i = argv.index("--part")
        part = argv[i + 1]
        del argv[i : i + 2]
    do_agree = "--agreement" in argv
    argv = [a for a in argv if a != "--agreement"]
    args = engine.parse(argv, default_models=("efficientnet-lite0", "resnet50"))
    torch.set_num_threads(args.threads)
    out_json = args.json or os.path.join(engine.ROOT, "benchmarks", "results", "cam_family.json")
    data = {}
    if os.path.exists(out_json):
        with open(out_json) as f:
            data = json.load(f)
    if part in ("layer", "all"):
        data["layer"] = engine.run(args, os.path.abspath(__file__))
    if part in ("perturbation", "all"):
        data["perturbation"] = perturbation(args.quick)
    if (
        part == "ablation"
    ):  # re-measure only the Ablation-CAM rows (with --quick: ours only, peers' rows kept)
        for key, rows in perturbation(args.quick, only_ablation=True).items():
            data.setdefault("perturbation", {}).setdefault(key, {}).update(rows)
    if do_agree:
        data["agreement"] = agreement(args.quick)
    data["machine"] = harness.machine()
    with open(out_json, "w") as f:
        json.dump(data, f, indent=1)
    command = args.command or "PYTHONPATH=src:benchmarks python benchmarks/cam_family.py " + " ".join(
        sys.argv[1:]
    )
    text = render(data, command)
    out = args.out or os.path.join(engine.ROOT, "docs", "results", "benchmarks-cam-family.md")
    with open(out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
