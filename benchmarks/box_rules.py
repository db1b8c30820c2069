"""Which box rule (largest | peak | all) fits the hand-annotated photos best, at the CLI's defaults.

Through the path users get (:func:`gradcam.api.explain_batch`, the embedded EfficientNet-Lite0 at
``--quality standard``: short side 256, Grad-CAM, threshold 0.45), the true class's box by each rule, in
original-photo pixels, against the photo's annotated objects: boxes with IoU >= 0.5 with one of them, the
mean best IoU, and how often the box contains the map's peak. Also at the paper's threshold 0.15.

    python benchmarks/box_rules.py [--out docs/results/box_rules.md]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from gradcam.api import BOX_RESOLUTION, explain_batch, get_method, get_model  # noqa: E402
from gradcam.evaluation import photos as P  # noqa: E402
from gradcam.image import boxes, scale_box  # noqa: E402
from gradcam.metrics.localization import iou  # noqa: E402
from gradcam.regions import BOX_RULES  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lm = get_model("efficientnet-lite0")
    lm.size = 256
    method = get_method(lm, "gradcam")
    photos = P.load_annotated()
    stats = {(t, r): {"hit": 0, "iou": 0.0, "peak_in": 0} for t in (0.45, 0.15) for r in BOX_RULES}
    for p in photos:
        res = explain_batch([p.image], lm, method, p.label, 1)[0]
        maps = res.input_maps[:1]
        h, w = maps.shape[-2:]
        gt = torch.tensor(p.boxes)
        pk = res.peaks[0]
        for (t, rule), s in stats.items():
            b, ok = boxes(maps, t, max_side=BOX_RESOLUTION, rule=rule)
            box = scale_box(b[0].tolist(), (w, h), res.size) if bool(ok[0]) else [0, 0, 0, 0]
            v = float(iou(torch.tensor(box), gt).max())
            s["hit"] += v >= 0.5
            s["iou"] += v
            s["peak_in"] += pk is not None and box[0] <= pk[0] < box[2] and box[1] <= pk[1] < box[3]
    n = len(photos)
    lines = [
        "# Box rules on the annotated photos",
        "",
        "Made by `python benchmarks/box_rules.py --out docs/results/box_rules.md` (EfficientNet-Lite0, "
        "Grad-CAM, short side 256, the true class's map).",
        "",
        f"| threshold | rule | boxes with IoU >= 0.5 (of {n}) | mean best IoU | box holds the peak |",
        "| --- | --- | --- | --- | --- |",
    ]
    for (t, rule), s in stats.items():
        lines.append(f"| {t} | {rule} | {s['hit']} | {s['iou'] / n:.3f} | {s['peak_in']}/{n} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
