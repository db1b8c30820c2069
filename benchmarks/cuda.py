"""Issue 23: the GPU path measured in one run -- engine, CAM family, folder pipeline and metrics on CUDA at
fp32 / bf16 / fp16.

1. **Engine**: Grad-CAM against a plain forward (``torch.no_grad``, the same autocast) at each precision, on
   ResNet-50 (random weights) and EfficientNet-Lite0 (ImageNet weights), batch 1 and 64 at 224 x 224:
   ms/image, images/s and the ratio Grad-CAM / forward (median over interleaved rounds, CUDA events), and
   the maps' max |difference| / Pearson r to fp32's.
2. **CAM family**: Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM, Score-CAM on EfficientNet-Lite0,
   batch 16 (Score-CAM: 1), each precision: ms/image and the ratio to the plain forward of the same batch.
3. **Folder pipeline**: ``explain_dataset`` on ``--photos`` copies of the demo photo (JPEG, four sizes), batch
   32, at each precision: images/s against decode + preprocess + plain forward of the same photos at the
   same batch size in this process (pinned, non-blocking copies).
4. **Metrics** (fp32): deletion, insertion, faithfulness correlation, IROF, ROAD and max-sensitivity on
   EfficientNet-Lite0, 8 images: time at ``max_batch`` = 1 (one input per forward: the unbatched version),
   64 (the default) and 256, and the ratio to max_batch = 1.

Without a CUDA device it prints that nothing was measured and exits 0 (the results page is left as it is).
``--device cpu`` runs every code path on the CPU for a check (fp16 skipped; the page is then not written
unless ``--write``).

Run on a GPU machine: ``PYTHONPATH=src:benchmarks python benchmarks/cuda.py`` (about 3-5 minutes on an
H100). Writes ``docs/results/cuda.md`` and ``benchmarks/results/cuda.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PAGE = os.path.join(ROOT, "docs", "results", "cuda.md")
COMMAND = "PYTHONPATH=src:benchmarks python benchmarks/cuda.py"
FAMILY = ("gradcam++", "xgradcam", "layercam", "hirescam", "eigencam", "scorecam")


class Timer:
    """Wall time of a call on ``device``: CUDA events around it (synchronised), else ``perf_counter``."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1000.0
        s = time.perf_counter()
        fn()
        return time.perf_counter() - s


def interleaved(timer: Timer, cases: Dict[str, Callable[[], object]], rounds: int, warmup: int = 2):
    """Per case the list of times over ``rounds``; every round runs every case once, the order rotated."""
    names = list(cases)
    for _ in range(warmup):
        for n in names:
            cases[n]()
    times: Dict[str, List[float]] = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(timer(cases[n]))
    return times


def ratio(times: Dict[str, List[float]], a: str, b: str) -> float:
    """Median over rounds of time(a) / time(b) in the same round."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def autocast(device: torch.device, precision: str):
    from gradcam import engine

    with engine.precision(precision):
        return engine.forward_autocast(device)


def plain_forward(model, x, device, precision) -> Callable[[], object]:
    def run():
        with torch.no_grad(), autocast(device, precision):
            return model(x)

    return run


def compare(a: torch.Tensor, b: torch.Tensor) -> Dict[str, float]:
    fa, fb = a.flatten().double(), b.flatten().double()
    return {
        "max_abs": float((fa - fb).abs().max()),
        "pearson": float(torch.corrcoef(torch.stack([fa, fb]))[0, 1]),
    }


# ---- 1. the engine ------------------------------------------------------------------------------------------


def engine_part(device, precisions, rounds, quick) -> List[dict]:
    import models

    import gradcam

    rows = []
    for name in ("resnet50", "efficientnet-lite0"):
        for batch in (1, 8) if quick else (1, 64):
            model, layer, x = models.build(name, batch, 64 if quick else 224, str(device))
            cam = gradcam.GradCAM(model, layer)
            cases: Dict[str, Callable[[], object]] = {}
            for p in precisions:
                cases[f"forward {p}"] = plain_forward(model, x, device, p)
                cases[f"gradcam {p}"] = lambda p=p, cam=cam, x=x: cam(x, precision=p)
            times = interleaved(Timer(device), cases, rounds)
            ref = cam(x, precision="fp32").maps
            for p in precisions:
                t = statistics.median(times[f"gradcam {p}"])
                row = {
                    "model": name,
                    "batch": batch,
                    "precision": p,
                    "forward_ms_per_image": 1000 * statistics.median(times[f"forward {p}"]) / batch,
                    "gradcam_ms_per_image": 1000 * t / batch,
                    "gradcam_images_per_s": batch / t,
                    "gradcam_over_forward": ratio(times, f"gradcam {p}", f"forward {p}"),
                    "gradcam_over_fp32_gradcam": ratio(times, f"gradcam {p}", "gradcam fp32"),
                    **compare(cam(x, precision=p).maps, ref),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
            _free(device)
    return rows


# ---- 2. the CAM family ------------------------------------------------------------------------------------


def family_part(device, precisions, rounds, quick) -> List[dict]:
    import models

    from gradcam.methods import registry

    rows = []
    for method in FAMILY:
        batch = 1 if method == "scorecam" else (4 if quick else 16)
        model, layer, x = models.build("efficientnet-lite0", batch, 64 if quick else 224, str(device))
        m = registry.get(method)(model, layer=layer)
        cases: Dict[str, Callable[[], object]] = {}
        for p in precisions:
            cases[f"forward {p}"] = plain_forward(model, x, device, p)
            cases[f"{method} {p}"] = lambda p=p, m=m, x=x: m(x, precision=p)
        times = interleaved(Timer(device), cases, max(3, rounds // 2 if method == "scorecam" else rounds), 1)
        ref = m(x, precision="fp32").maps
        for p in precisions:
            row = {
                "method": method,
                "batch": batch,
                "precision": p,
                "ms_per_image": 1000 * statistics.median(times[f"{method} {p}"]) / batch,
                "over_forward": ratio(times, f"{method} {p}", f"forward {p}"),
                **compare(m(x, precision=p).maps, ref),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        _free(device)
    return rows


# ---- 3. the folder pipeline -------------------------------------------------------------------------------


def _photos(folder: str, n: int) -> List[str]:
    """``n`` JPEG copies of the demo photo at four sizes (so the batches group as in a real folder)."""
    from PIL import Image

    import gradcam

    photo = Image.open(gradcam.demo_photo()).convert("RGB")
    sizes = [photo.size, (photo.width * 3 // 4, photo.height * 3 // 4), (640, 480), (480, 640)]
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"p{i:04d}.jpg")
        img = photo.resize(sizes[i % 4]) if i % 4 else photo
        (img.transpose(Image.FLIP_LEFT_RIGHT) if i % 8 >= 4 else img).save(p, quality=90)
        paths.append(p)
    return paths


def _reference(paths: List[str], device, batch: int, precision: str) -> float:
    """Seconds for decode + preprocess + plain forward of ``paths``, ``batch`` at a time (same-size groups)."""
    import gradcam
    from gradcam.image import load_image
    from gradcam.photos import to_device

    loaded = gradcam.load_model("efficientnet-lite0", device=str(device))
    timer = Timer(device)

    def run():
        for i in range(0, len(paths), batch):
            xs = [loaded.preprocess(load_image(p)) for p in paths[i : i + batch]]
            groups: Dict[tuple, list] = {}
            for x in xs:
                groups.setdefault(tuple(x.shape), []).append(x)
            for g in groups.values():
                with torch.no_grad(), autocast(device, precision):
                    loaded.model(to_device(torch.stack(g), device))

    run()  # warm-up (cudnn autotuning per shape)
    return timer(run)


def pipeline_part(device, precisions, n_photos: int) -> List[dict]:
    from gradcam.distributed import explain_dataset

    rows = []
    tmp = tempfile.mkdtemp(prefix="gradcam-cuda-")
    try:
        os.makedirs(os.path.join(tmp, "in"))
        paths = _photos(os.path.join(tmp, "in"), n_photos)
        for p in precisions:
            kw = dict(device=str(device), batch_size=32, precision=p, force=True, json_records=False)
            explain_dataset(os.path.join(tmp, "in"), os.path.join(tmp, f"warm-{p}"), **kw)
            s = time.perf_counter()
            summary = explain_dataset(os.path.join(tmp, "in"), os.path.join(tmp, f"out-{p}"), **kw)
            wall = time.perf_counter() - s
            ref = _reference(paths, device, 32, p)
            row = {
                "precision": p,
                "photos": n_photos,
                "explained": summary.explained,
                "images_per_s": n_photos / wall,
                "reference_images_per_s": n_photos / ref,
                "fraction_of_reference": ref / wall,
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ---- 4. the metrics ---------------------------------------------------------------------------------------


def metrics_part(device, rounds, quick) -> List[dict]:
    import gradcam
    from gradcam import metrics as M

    loaded = gradcam.load_model("efficientnet-lite0", device=str(device))
    net, n = loaded.model, 2 if quick else 8
    size = 64 if quick else 224
    x = (torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(device)
    cam = gradcam.GradCAM(net, loaded.layer)
    ex = cam(x)
    maps, t = ex.maps[:, 0], ex.targets[:, 0]

    def explain(imgs, tt):
        return cam(imgs, target=tt).maps[:, 0]

    metrics = {
        "deletion (16 steps)": lambda b: M.deletion(net, x, maps, t, steps=16, max_batch=b),
        "insertion (16 steps)": lambda b: M.insertion(net, x, maps, t, steps=16, max_batch=b),
        "faithfulness_correlation (100 runs)": lambda b: M.faithfulness_correlation(
            net, x, maps, t, n_runs=100, subset_size=224, max_batch=b
        ),
        "irof (8 x 8)": lambda b: M.irof(net, x, maps, t, grid=8, max_batch=b),
        "road (9 percentages)": lambda b: M.road(net, x, maps, t, max_batch=b),
        "max_sensitivity (10 samples)": lambda b: M.max_sensitivity(net, x, maps, t, explain, max_batch=b),
    }
    rows = []
    for name, fn in metrics.items():
        cases = {f"max_batch={b}": (lambda b=b, fn=fn: fn(b)) for b in (1, 64, 256)}
        times = interleaved(Timer(device), cases, max(2, rounds // 3), 1)
        one = fn(1).double()
        row = {"metric": name, "images": n}
        for b in (1, 64, 256):
            row[f"s_{b}"] = statistics.median(times[f"max_batch={b}"])
            row[f"speedup_{b}"] = ratio(times, "max_batch=1", f"max_batch={b}")
        row["max_abs_diff_256_vs_1"] = float((fn(256).double() - one).abs().max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---- the page ---------------------------------------------------------------------------------------------


def _free(device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def write_page(results: dict, device, args) -> None:
    L = [
        "# The GPU path (CUDA): engine, CAM family, folder pipeline and metrics",
        "",
        f"Written by `benchmarks/cuda.py`: `{COMMAND}`. Device: {_device_name(device)}; "
        f"torch {torch.__version__}; CUDA {torch.version.cuda}; rounds {args.rounds}. Times with CUDA events "
        "after a synchronise; ratios are medians over interleaved rounds of one run. Precision: autocast "
        "around the forward only; gradients and maps in float32.",
        "",
        "## Engine: Grad-CAM against a plain forward",
        "",
        "| model | batch | precision | forward ms/img | Grad-CAM ms/img | Grad-CAM img/s | Grad-CAM / forward | "
        "/ fp32 Grad-CAM | max abs diff to fp32 | Pearson r |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["engine"]:
        L.append(
            f"| {r['model']} | {r['batch']} | {r['precision']} | {r['forward_ms_per_image']:.3f} | "
            f"{r['gradcam_ms_per_image']:.3f} | {r['gradcam_images_per_s']:.0f} | {r['gradcam_over_forward']:.2f}x | "
            f"{r['gradcam_over_fp32_gradcam']:.2f}x | {r['max_abs']:.4f} | {r['pearson']:.5f} |"
        )
    L += [
        "",
        "## CAM family (EfficientNet-Lite0)",
        "",
        "| method | batch | precision | ms/img | / forward | max abs diff to fp32 | Pearson r |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["family"]:
        L.append(
            f"| {r['method']} | {r['batch']} | {r['precision']} | {r['ms_per_image']:.3f} | "
            f"{r['over_forward']:.2f}x | {r['max_abs']:.4f} | {r['pearson']:.5f} |"
        )
    L += [
        "",
        f"## Folder pipeline ({args.photos} photos, batch 32, EfficientNet-Lite0)",
        "",
        "| precision | explain_dataset img/s | decode + preprocess + forward img/s | fraction |",
        "|---|---|---|---|",
    ]
    for r in results["pipeline"]:
        L.append(
            f"| {r['precision']} | {r['images_per_s']:.1f} | {r['reference_images_per_s']:.1f} | "
            f"{r['fraction_of_reference']:.0%} |"
        )
    L += [
        "",
        "## Metrics (fp32, EfficientNet-Lite0): max_batch",
        "",
        "| metric | images | s at 1 | s at 64 (default) | s at 256 | speed-up 64 | speed-up 256 | max abs diff 256 vs 1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results["metrics"]:
        L.append(
            f"| {r['metric']} | {r['images']} | {r['s_1']:.3f} | {r['s_64']:.3f} | {r['s_256']:.3f} | "
            f"{r['speedup_64']:.1f}x | {r['speedup_256']:.1f}x | {r['max_abs_diff_256_vs_1']:.1e} |"
        )
    L.append("")
    with open(PAGE, "w") as f:
        f.write("\n".join(L))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N; cpu: check the code paths")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--parts", default="engine,family,pipeline,metrics")
    ap.add_argument("--quick", action="store_true", help="small inputs (a check of the code paths)")
    ap.add_argument("--write", action="store_true", help="write the page also for --device cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"benchmarks/cuda.py: no CUDA device (torch {torch.__version__} sees none), so nothing was measured "
            f"and {os.path.relpath(PAGE, ROOT)} is left as it is. Run it on a machine with a GPU: {COMMAND}"
        )
        return 0
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type != "cpu" else [])
    parts = args.parts.split(",")
    results: Dict[str, list] = {"engine": [], "family": [], "pipeline": [], "metrics": []}
    if "engine" in parts:
        results["engine"] = engine_part(device, precisions, args.rounds, args.quick)
    if "family" in parts:
        results["family"] = family_part(device, precisions, args.rounds, args.quick)
    if "pipeline" in parts:
        results["pipeline"] = pipeline_part(device, precisions, args.photos)
    if "metrics" in parts:
        results["metrics"] = metrics_part(device, args.rounds, args.quick)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "cuda.json"), "w") as f:
        json.dump({"device": _device_name(device), "torch": torch.__version__, **results}, f, indent=1)
    if device.type == "cuda" or args.write:
        write_page(results, device, args)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
