"""Measure the ``--quality`` presets on the HELD-OUT half of the annotated photos (docs/results/presets.md).

The presets were chosen on the tuning half (``benchmarks/photo_defaults.py --presets``); this script only
measures them, on photos no choice saw: per preset its model, size and box threshold, the cost per photo
(ratio to Lite0 at short side 256, measured in the same run), pointing (the true class's map peak inside one
of its boxes) and boxes with IoU >= 0.5, at the preset's threshold and at the Grad-CAM paper's 15%.

    python benchmarks/presets_heldout.py --out docs/results [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from photo_defaults import cost, measure  # noqa: E402

from gradcam.evaluation import photos as P  # noqa: E402
from gradcam.methods import registry  # noqa: E402
from gradcam.models import QUALITY_PRESETS, prepare_model  # noqa: E402

PAPER = 0.15


def run(threads: int) -> str:
    """The results page as Markdown."""
    torch.set_num_threads(threads)
    photos = P.load_annotated(split="held_out")
    n = len(photos)
    rows = []
    base = None
    settings = [("Lite0 at 256 (cost base)", "efficientnet-lite0", 256, None)] + [
        (q, p.model, p.size, p.box_threshold) for q, p in QUALITY_PRESETS.items()
    ]
    for label, model, size, threshold in settings:
        lm, _ = prepare_model(model)
        lm.size = size
        method = registry.get("gradcam")(lm.model, layer=lm.layer)
        ts = [PAPER] + ([threshold] if threshold and threshold != PAPER else [])
        m = measure(lm, method, photos, ts, {})
        m["seconds"] = cost(lm, method, photos)
        if base is None:
            base = m["seconds"]
            continue
        t = threshold
        rows.append(
            f"| `{label}` | {model} | {size} | {t:.0%} | {m['seconds']:.3f} | {m['seconds'] / base:.2f} | "
            f"{sum(m['peaks'])}/{n} | {sum(m['per_t'][t]['hit'])}/{n} | {sum(m['per_t'][PAPER]['hit'])}/{n} | "
            f"{sum(m['per_t'][t]['iou']) / n:.3f} / {sum(m['per_t'][PAPER]['iou']) / n:.3f} |"
        )
        print(rows[-1], flush=True)
    head = [
        "# Quality presets on held-out photos",
        "",
        f"<!-- made by: python benchmarks/presets_heldout.py {' '.join(sys.argv[1:])} -->",
        "",
        "`gradcam explain --quality fast|standard|high` picks a model, an input short side and a box threshold. "
        "The presets were chosen on the **tuning** half of the annotated photos "
        "(`python benchmarks/photo_defaults.py --presets`); every number on this page comes from the **held-out** "
        f"half ({n} objects on {len({p.image.size + (p.label,) for p in photos})} photo/class pairs, never used for a "
        "choice). Grad-CAM at the model's head, the true class's map, the whole photo (no crop).",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU; cost = seconds per photo for "
        "`gradcam.api.explain_batch` (per photo the fastest of 3 runs), as a ratio to EfficientNet-Lite0 at short side 256 measured in the same run.",
        "",
        "| preset | model | short side | box threshold | s / photo | cost ratio | pointing (peak in a box) | "
        "IoU ≥ 0.5 at the preset's threshold | IoU ≥ 0.5 at 15% (paper) | mean IoU preset / 15% |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    return "\n".join(head + rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    text = run(args.threads)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "presets.md"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
