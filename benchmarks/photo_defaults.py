"""Choose `gradcam explain`'s defaults by measurement on the TUNING half of the hand-annotated photos.

Only ``load_annotated(split="tuning")`` is read here: the held-out half (benchmarks/presets_heldout.py,
docs/results/presets.md) never takes part in a choice (tests/test_photo_split.py checks this file).

Everything goes through the path users get: :func:`gradcam.api.explain_batch` (the whole photo, short side
``size``; the true class's map), the box and peak in original-photo pixels. Levers:

- input short side (256, 320, 384, 448: Grad-CAM maps of 8x8 to 14x14 for EfficientNet-Lite0);
- the method (the CAM family's gradient methods and Eigen-CAM; ``aug_smooth`` for Grad-CAM and
  Eigen-Grad-CAM; Grad-CAM fused over the last layer and the last stride-16 block);
- the box threshold (a fraction of the map's maximum; the paper's rule is 0.15).

Per setting and threshold, over the photos of :mod:`gradcam.evaluation.photos`: boxes with IoU >= 0.5
against one of the photo's annotated objects, peaks inside one of them, the mean best IoU, and the cost
(seconds per photo and its ratio to a plain forward pass of the same photo, in the same run).

The choice is made by a stated rule and checked by leave-one-photo-out: the rule picks a setting on 21
photos and is scored on the one left out, for every photo; that held-out count is the estimate of how the
choice does on photos it was not picked on (the in-sample count of the best of hundreds of settings is
optimistic on 22 photos).

    python benchmarks/photo_defaults.py --out docs/results [--sizes 256,320,384,448] [--threads 1]
    python benchmarks/photo_defaults.py --presets --out docs/results [--threads 1]   # the --quality presets
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Sequence

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from gradcam.api import BOX_RESOLUTION, explain_batch, get_model  # noqa: E402
from gradcam.evaluation import photos as P  # noqa: E402
from gradcam.image import boxes as map_boxes  # noqa: E402
from gradcam.image import scale_box  # noqa: E402
from gradcam.methods import registry  # noqa: E402
from gradcam.metrics.localization import iou  # noqa: E402

METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam", "eigencam")
SMOOTHED = ("gradcam", "eigengradcam")
FUSED = ["_head_act", "_blocks.10"]  # last layer (stride 32) + last stride-16 block
THRESHOLDS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def measure(lm, method, photos, thresholds: Sequence[float], call_kw: Dict) -> Dict:
    """Per photo: the true class's map through explain_batch; per threshold its box's IoU and the peak."""
    per_t = {t: {"hit": [], "iou": []} for t in thresholds}
    peak_hits, seconds, fwd = [], 0.0, 0.0
    run = method if not call_kw else (lambda x, target=None, m=method: m(x, target=target, **call_kw))
    for p in photos:
        x = lm.preprocess(p.image)[None]
        with torch.no_grad():
            s = time.perf_counter()
            lm.model(x)
            fwd += time.perf_counter() - s
        s = time.perf_counter()
        r = explain_batch([p.image], lm, run, p.label, 1, inputs=[x[0]], box_threshold=thresholds[0])[0]
        seconds += time.perf_counter() - s
        gt = torch.tensor(p.boxes)
        pk = r.peaks[0]
        peak_hits.append(
            pk is not None and any(b[0] <= pk[0] < b[2] and b[1] <= pk[1] < b[3] for b in p.boxes)
        )
        maps = r.input_maps[:1]
        h, w = maps.shape[-2:]
        for t in thresholds:
            b, ok = map_boxes(maps, t, max_side=BOX_RESOLUTION)
            box = scale_box(b[0].tolist(), (w, h), r.size) if bool(ok[0]) else [0, 0, 0, 0]
            if t == thresholds[0]:
                assert box == (r.boxes[0] or [0, 0, 0, 0]), "the sweep's box must be explain's box"
            v = float(iou(torch.tensor(box), gt).max())
            per_t[t]["iou"].append(v)
            per_t[t]["hit"].append(v >= 0.5)
    n = len(photos)
    return {"per_t": per_t, "peaks": peak_hits, "seconds": seconds / n, "forward": fwd / n}


def loo(rows: List[Dict], score: Callable[[Dict, List[int]], tuple], n: int) -> Dict:
    """Leave-one-photo-out: pick the row that maximises ``score`` on the other photos, score the one left out."""
    hits = peaks = 0
    picked = []
    for j in range(n):
        cols = [i for i in range(n) if i != j]
        best = max(rows, key=lambda r: score(r, cols))
        hits += best["hit"][j]
        peaks += best["peak"][j]
        picked.append(best["name"])
    return {"held_out_boxes": hits, "held_out_peaks": peaks, "photos": n, "picked": sorted(set(picked))}


def by_peaks_then_iou(r: Dict, cols: List[int]) -> tuple:
    return (sum(r["peak"][i] for i in cols), sum(r["iou"][i] for i in cols))


def by_boxes_then_peaks(r: Dict, cols: List[int]) -> tuple:
    return (sum(r["hit"][i] for i in cols), sum(r["peak"][i] for i in cols), sum(r["iou"][i] for i in cols))


def row_line(r: Dict, n: int) -> str:
    return (
        f"| {r['size']} | {r['method']} | {r['threshold']:g} | {sum(r['hit'])}/{n} | {sum(r['peak'])}/{n} | "
        f"{sum(r['iou']) / n:.3f} | {r['seconds_per_photo']:.3f} | {r['ratio_to_forward']:.1f} |"
    )


HEADER = [
    "| short side | method | box threshold | IoU ≥ 0.5 | peak in a box | mean IoU | s / photo | × one forward |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,320,384,448")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    ap.add_argument("--no-smooth", action="store_true", help="leave out the aug_smooth settings")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--presets", action="store_true", help="choose the --quality presets (Lite0/1/2, sizes, thresholds)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.presets:
        choose_presets([float(t) for t in args.thresholds.split(",")], args.out)
        return
    lm = get_model("efficientnet-lite0")
    photos = P.load_annotated(split="tuning")
    n = len(photos)
    registry.get("gradcam")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    settings = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for name in args.methods.split(","):
            settings.append((size, name, lm.layer, {}))
            if name in SMOOTHED and not args.no_smooth:
                settings.append((size, name, lm.layer, {"aug_smooth": True}))
        settings.append((size, "gradcam", FUSED, {}))
    rows = []
    for size, name, layer, kw in settings:
        lm.size = size
        method = registry.get(name)(lm.model, layer=layer)
        label = (
            name
            + (" aug_smooth" if kw else "")
            + (" `" + "+".join(layer) + "`" if isinstance(layer, list) else "")
        )
        m = measure(lm, method, photos, thresholds, kw)
        for t in thresholds:
            r = {
                "name": f"{size} {label} @{t:g}",
                "size": size,
                "method": label,
                "threshold": t,
                "hit": [bool(v) for v in m["per_t"][t]["hit"]],
                "iou": [round(v, 4) for v in m["per_t"][t]["iou"]],
                "peak": [bool(v) for v in m["peaks"]],
                "seconds_per_photo": round(m["seconds"], 4),
                "ratio_to_forward": round(m["seconds"] / max(m["forward"], 1e-9), 2),
            }
            rows.append(r)
        print(
            json.dumps(
                {
                    "setting": f"{size} {label}",
                    "boxes": {t: sum(m["per_t"][t]["hit"]) for t in thresholds},
                    "peaks": sum(m["peaks"]),
                    "s": round(m["seconds"], 3),
                }
            ),
            flush=True,
        )
    photo_names = [p.name for p in photos]
    gradcam_rows = [r for r in rows if r["method"] == "gradcam"]
    choices = {}
    for size in sorted({r["size"] for r in gradcam_rows}):
        mine = [r for r in gradcam_rows if r["size"] == size]
        best = max(mine, key=lambda r: by_peaks_then_iou(r, list(range(n))))
        choices[size] = {
            "threshold": best["threshold"],
            "in_sample": best,
            "loo": loo(mine, by_peaks_then_iou, n),
        }
    overall = max(rows, key=lambda r: by_boxes_then_peaks(r, list(range(n))))
    overall_loo = loo(rows, by_boxes_then_peaks, n)
    lines = [
        f"<!-- made by: benchmarks/photo_defaults.py {' '.join(sys.argv[1:])} -->",
        f"{n} annotated photos; EfficientNet-Lite0; the true class's map through `gradcam.api.explain_batch`; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s).",
        "",
        "## Grad-CAM's box threshold at each input size (rule: most peaks in a box, then the highest mean IoU)",
        "",
        "| short side | threshold chosen | IoU ≥ 0.5 at 0.15 (paper) | IoU ≥ 0.5 at the chosen | peak in a box | mean IoU at 0.15 / chosen | "
        "held-out IoU ≥ 0.5 (leave one photo out) | thresholds the rule picked | s / photo | × one forward |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for size, c in choices.items():
        b = c["in_sample"]
        paper = next(r for r in gradcam_rows if r["size"] == size and abs(r["threshold"] - 0.15) < 1e-9)
        lines.append(
            f"| {size} | {c['threshold']:g} | {sum(paper['hit'])}/{n} | {sum(b['hit'])}/{n} | {sum(b['peak'])}/{n} | "
            f"{sum(paper['iou']) / n:.3f} / {sum(b['iou']) / n:.3f} | {c['loo']['held_out_boxes']}/{n} | "
            f"{', '.join(p.split('@')[1] for p in c['loo']['picked'])} | {b['seconds_per_photo']:.3f} | {b['ratio_to_forward']:.1f} |"
        )
    lines += [
        "",
        "## The best of every setting (rule: most boxes with IoU ≥ 0.5, then peaks, then mean IoU)",
        "",
        f"In-sample best: **{overall['name']}**: {sum(overall['hit'])}/{n} boxes, {sum(overall['peak'])}/{n} peaks. "
        f"Leave one photo out (the rule picks among all {len(rows)} settings on 21 photos, scored on the 22nd): "
        f"{overall_loo['held_out_boxes']}/{n} boxes, {overall_loo['held_out_peaks']}/{n} peaks; picked "
        f"{', '.join(overall_loo['picked'])}.",
        "",
        "Each method's best threshold at each size:",
        "",
    ] + HEADER
    seen = {}
    for r in rows:
        key = (r["size"], r["method"])
        if key not in seen or by_boxes_then_peaks(r, list(range(n))) > by_boxes_then_peaks(
            seen[key], list(range(n))
        ):
            seen[key] = r
    lines += [row_line(r, n) for r in seen.values()]
    lines += ["", "## Every setting", ""] + HEADER + [row_line(r, n) for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "photo_defaults.json"), "w") as f:
            json.dump(
                {
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "photos": photo_names,
                    "choices": {
                        str(k): {"threshold": v["threshold"], "loo": v["loo"]} for k, v in choices.items()
                    },
                    "overall": {"name": overall["name"], "loo": overall_loo},
                    "rows": rows,
                },
                f,
            )
        with open(os.path.join(args.out, "photo_defaults.md"), "w") as f:
            f.write(text)


PRESET_GRID = {
    "efficientnet-lite0": (224, 256, 320, 384),
    "efficientnet-lite1": (256, 288, 320, 384),
    "efficientnet-lite2": (288, 320, 384, 448),
}
COST_LIMIT = 1.5  # standard: at most 1.5x the cost of Lite0 at 256 (the fast preset's model), same run


def interleaved_cost(settings, photos, repeats: int = 3) -> List[float]:
    """Seconds per photo of explain_batch for each (loaded model, size, method) in ``settings``, timed round-robin
    (every setting on a photo, then the next photo; ``repeats`` rounds) so that a shared CPU's changing load
    falls on all settings alike; per setting and photo the fastest run, then the mean over photos."""
    best = [[float("inf")] * len(photos) for _ in settings]
    for _ in range(repeats):
        for j, p in enumerate(photos):
            for i, (lm, size, method) in enumerate(settings):
                lm.size = size
                x = lm.preprocess(p.image)
                s = time.perf_counter()
                explain_batch([p.image], lm, method, None, 1, inputs=[x])
                best[i][j] = min(best[i][j], time.perf_counter() - s)
    return [sum(b) / len(b) for b in best]


def choose_presets(thresholds: Sequence[float], out: str = None) -> Dict:
    """The --quality presets, chosen on the tuning half by one rule (most boxes with IoU >= 0.5, then peaks in a
    box, then mean IoU): fast = Lite0 at 256 (the cost base: the former default) with its best threshold; standard = the best setting of any model costing at
    most COST_LIMIT x Lite0 at 256; high = the best setting of any model. Grad-CAM at the model's head."""
    photos = P.load_annotated(split="tuning")
    n = len(photos)
    rows, timed = [], []
    for name, sizes in PRESET_GRID.items():
        lm = get_model(name)
        method = registry.get("gradcam")(lm.model, layer=lm.layer)
        for size in sizes:
            lm.size = size
            m = measure(lm, method, photos, thresholds, {})
            timed.append((lm, size, method))
            for t in thresholds:
                rows.append(
                    {
                        "name": f"{name} {size} @{t:g}",
                        "model": name,
                        "size": size,
                        "threshold": t,
                        "hit": m["per_t"][t]["hit"],
                        "iou": m["per_t"][t]["iou"],
                        "peak": m["peaks"],
                    }
                )
            print(
                json.dumps(
                    {
                        "model": name,
                        "size": size,
                        "peaks": sum(m["peaks"]),
                        "boxes": {t: sum(m["per_t"][t]["hit"]) for t in thresholds},
                        "mean_iou": {t: round(sum(m["per_t"][t]["iou"]) / n, 3) for t in thresholds},
                    }
                ),
                flush=True,
            )
    secs = interleaved_cost(timed, photos)
    for r in rows:
        r["seconds"] = next(
            sec for (lm, size, _), sec in zip(timed, secs) if lm.name == r["model"] and size == r["size"]
        )
    print(
        json.dumps({f"{lm.name} {size}": round(sec, 4) for (lm, size, _), sec in zip(timed, secs)}),
        flush=True,
    )
    base = next(r["seconds"] for r in rows if r["model"] == "efficientnet-lite0" and r["size"] == 256)
    allc = list(range(n))
    pick = {
        "fast": max(
            (r for r in rows if r["model"] == "efficientnet-lite0" and r["size"] == 256),
            key=lambda r: by_boxes_then_peaks(r, allc),
        ),
        "standard": max(
            (r for r in rows if r["seconds"] <= COST_LIMIT * base), key=lambda r: by_boxes_then_peaks(r, allc)
        ),
        "high": max(rows, key=lambda r: by_boxes_then_peaks(r, allc)),
    }
    print(f"tuning half: {n} objects; Lite0 at 256: {base:.3f} s / photo")
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "presets_tuning.json"), "w") as f:
            json.dump(
                {
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "objects": n,
                    "cost_base_seconds": base,
                    "cost_limit": COST_LIMIT,
                    "picked": {q: r["name"] for q, r in pick.items()},
                    "rows": rows,
                },
                f,
            )
    for q, r in pick.items():
        print(
            f"{q}: {r['model']} size {r['size']} threshold {r['threshold']:g}: {sum(r['hit'])}/{n} boxes, "
            f"{sum(r['peak'])}/{n} peaks, mean IoU {sum(r['iou']) / n:.3f}, cost x{r['seconds'] / base:.2f}"
        )
    return pick


if __name__ == "__main__":
    main()
