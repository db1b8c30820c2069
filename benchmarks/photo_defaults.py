"""Choose `gradcam explain`'s defaults by measurement on the hand-annotated photos.

Levers: input short side (256, 320, 384, 448: Grad-CAM maps of 8x8 to 14x14 for EfficientNet-Lite0), the
method (every registered CAM-family method; new ones join when registered), fusing a stride-16 layer with
the last one, and ``aug_smooth`` when a method offers it. For each setting, on the photos of
:mod:`gradcam.evaluation.photos` (the true class's map): localization accuracy (box at 15% of the max,
IoU >= 0.5), pointing (TorchRay, 15 px), peak in the box (0 px), and cost: seconds per photo for the
explanation and its ratio to a plain forward pass of the same photo, in the same run.

    python benchmarks/photo_defaults.py --out docs [--sizes 256,320,384,448] [--threads 1]
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from gradcam.evaluation import photos as P  # noqa: E402
from gradcam.image import preprocess_image  # noqa: E402
from gradcam.methods import registry  # noqa: E402
from gradcam.models import load_model  # noqa: E402

CAM_FAMILY = ("gradcam", "cam", "gradcam++", "xgradcam", "layercam", "hirescam", "scorecam", "eigencam", "ablationcam")
FUSED = ["_head_act", "_blocks.10"]  # last layer (stride 32) + last stride-16 block


def forward_seconds(model, photos, size, mean, std) -> float:
    t = 0.0
    for p in photos:
        x = preprocess_image(p.image, size, mean, std)[None]
        with torch.no_grad():
            s = time.perf_counter()
            model(x)
            t += time.perf_counter() - s
    return t / len(photos)


def render(rows) -> list:
    """The Markdown table of the measured settings."""
    lines = ["| short side | method | layer | box threshold | IoU ≥ 0.5 (true class) | peak in box | pointing (15 px) "
             "| s / photo (6 maps) | × one forward |", "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['method']}{' ' + str(r['options']) if r['options'] else ''} | `{r['layer']}` | "
                     f"{r.get('threshold', 0.15):g} | {r['loc_hits']}/{r['photos']} ({r['loc_gt']:.2f}) | "
                     f"{r['peak_hits']}/{r['photos']} | {r['pointing']:.2f} | {r['seconds_per_photo']:.3f} | "
                     f"{r['ratio_to_forward']:.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,320,384,448")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=None, help="comma-separated (default: every registered CAM-family method)")
    ap.add_argument("--thresholds", default="0.15", help="box thresholds, fractions of the map's max (default 0.15)")
    ap.add_argument("--no-fused", action="store_true", help="leave out the fused-layer setting")
    ap.add_argument("--tag", default="", help="suffix of the output files (photo_defaults<tag>.md/json)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lm = load_model("efficientnet-lite0")
    model = lm.model.eval()
    photos = P.load_annotated()
    registry.get("gradcam")
    methods = [m for m in (args.methods.split(",") if args.methods else CAM_FAMILY) if m in registry.METHODS]
    settings = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for name in methods:
            settings.append((size, name, lm.layer, {}))
        if not args.no_fused:
            settings.append((size, "gradcam", FUSED, {}))
        factory = registry.get("gradcam")
        if "aug_smooth" in inspect.signature(factory.__call__).parameters:
            settings.append((size, "gradcam", lm.layer, {"aug_smooth": True}))
    rows = []
    thresholds = [float(t) for t in args.thresholds.split(",")]
    for (size, name, layer, call_kw), threshold in ((s_, t_) for s_ in settings for t_ in thresholds):
        method = registry.get(name)(model, layer=layer)
        run = (lambda x, target, m=method, kw=call_kw: m(x, target=target, **kw)) if call_kw else method
        fwd = forward_seconds(model, photos, size, lm.mean, lm.std)
        res = P.evaluate_method(run, model, photos, size, lm.mean, lm.std, threshold=threshold)
        n = len(photos)
        row = {"size": size, "method": name, "threshold": threshold, "layer": "+".join(layer) if isinstance(layer, list) else layer,
               "options": call_kw, "loc_gt": res["loc_gt"], "loc_hits": round(res["loc_gt"] * n),
               "pointing": res["pointing"], "peak_in_box": res["peak_in_box"], "peak_hits": round(res["peak_in_box"] * n),
               "energy": res["energy"], "seconds_per_photo": res["seconds"], "forward_seconds": round(fwd, 4),
               "ratio_to_forward": round(res["seconds"] / max(fwd, 1e-9), 2), "photos": n,
               "misses": [r["photo"] for r in res["per_photo"] if not r["loc_gt"]]}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "misses"}), flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"photo_defaults{args.tag}.json"), "w") as f:
            json.dump({"threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows}, f, indent=1)
        lines = render(rows)
        with open(os.path.join(args.out, f"photo_defaults{args.tag}.md"), "w") as f:
            f.write(f"<!-- made by: benchmarks/photo_defaults.py {' '.join(sys.argv[1:])} -->\n"
                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
