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
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.dirname(__file__))

from photo_defaults import measure  # noqa: E402

from gradcam.api import explain_batch  # noqa: E402
from gradcam.evaluation import photos as P  # noqa: E402
from gradcam.methods import registry  # noqa: E402
from gradcam.models import QUALITY_PRESETS, prepare_model  # noqa: E402

PAPER = 0.15


def interleaved_cost(settings, photos, repeats: int = 3):
    """Seconds per photo of explain_batch for each (loaded model, method) in ``settings``, timed round-robin
    (every setting on a photo, then the next photo; ``repeats`` rounds) so that a shared CPU's changing load
    falls on all settings alike; per setting and photo the fastest run, then the mean over photos."""
    best = [[float("inf")] * len(photos) for _ in settings]
    for _ in range(repeats):
        for j, p in enumerate(photos):
            for i, (lm, method) in enumerate(settings):
                x = lm.preprocess(p.image)
                s = time.perf_counter()
                explain_batch([p.image], lm, method, None, 1, inputs=[x])
                best[i][j] = min(best[i][j], time.perf_counter() - s)
    return [sum(b) / len(b) for b in best]


def run(threads: int) -> str:
    """The results page as Markdown."""
    torch.set_num_threads(threads)
    photos = P.load_annotated(split="held_out")
    n = len(photos)
    files = len({p.name.split(":")[0] for p in photos})
    specs = [("base", "efficientnet-lite0", 256, PAPER)] + [
        (q, p.model, p.size, p.box_threshold) for q, p in QUALITY_PRESETS.items()
    ]
    loaded, rows = [], []
    for label, model, size, threshold in specs:
        lm, _ = prepare_model(model)
        lm.size = size
        method = registry.get("gradcam")(lm.model, layer=lm.layer)
        loaded.append((lm, method))
        if label != "base":
            rows.append(
                (label, model, size, threshold, measure(lm, method, photos, sorted({PAPER, threshold}), {}))
            )
    secs = interleaved_cost(loaded, photos)
    lines = []
    for (label, model, size, t, m), sec in zip(rows, secs[1:]):
        lines.append(
            f"| `{label}` | {model} | {size} | {t:.0%} | {sec:.3f} | {sec / secs[0]:.2f} | "
            f"{sum(m['peaks'])}/{n} | {sum(m['per_t'][t]['hit'])}/{n} | {sum(m['per_t'][PAPER]['hit'])}/{n} | "
            f"{sum(m['per_t'][t]['iou']) / n:.3f} / {sum(m['per_t'][PAPER]['iou']) / n:.3f} |"
        )
        print(lines[-1], flush=True)
    head = [
        "# Quality presets on held-out photos",
        "",
        f"<!-- made by: python benchmarks/presets_heldout.py {' '.join(sys.argv[1:])} -->",
        "",
        "`gradcam explain --quality fast|standard|high` picks a model, an input short side and a box threshold. "
        "The presets were chosen on the **tuning** half of the annotated photos "
        "(`python benchmarks/photo_defaults.py --presets`); every number in this table comes from the **held-out** "
        f"half ({n} objects on {files} photos, never used for a choice). Grad-CAM at the model's head, the true "
        "class's map, the whole photo (no crop); a box counts when its IoU with one of the class's boxes is ≥ 0.5, "
        "a peak when it falls inside one of them.",
        "",
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), CPU (glibc malloc); cost = seconds per photo "
        "of `gradcam.api.explain_batch`, timed round-robin with EfficientNet-Lite0 at short side 256 (the cost base, "
        f"{secs[0]:.3f} s / photo) in the same run, per photo the fastest of 3 rounds.",
        "",
        "| preset | model | short side | box threshold | s / photo | cost ratio | pointing (peak in a box) | "
        "IoU ≥ 0.5 at the preset's threshold | IoU ≥ 0.5 at 15% (paper) | mean IoU preset / 15% |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    return "\n".join(head + lines) + "\n"


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
