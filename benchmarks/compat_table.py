"""The compatibility table (docs/results/compat.md): every model of tests/compat/zoo.py explained with layer="auto".

Run in the compat environment (torch 2.14.1 + torchvision 0.29.1 + timm + transformers):
    python benchmarks/compat_table.py [--out docs/results/compat.md] [--reps 3]
Cost ratio = median time of one GradCAM call (auto already resolved) / median time of one plain forward
pass of the same batch, measured in the same run, one torch thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "compat"))
from zoo import SPECS, check  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/results/compat.md")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    t0 = time.time()
    for spec in SPECS:
        try:
            rows.append(check(spec, reps=args.reps))
        except Exception as e:  # noqa: BLE001 - a row that says what went wrong
            rows.append({"model": spec.id, "error": f"{type(e).__name__}: {str(e)[:120]}"})
        print(rows[-1], flush=True)
    import timm
    import torchvision
    import transformers

    lines = [
        "# Compatibility: real architectures with random weights",
        "",
        f"`python benchmarks/compat_table.py` (torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"timm {timm.__version__}, transformers {transformers.__version__}; {platform.machine()} CPU, one thread, "
        f"batch 2; {time.time() - t0:.0f} s in all). Each model is built with random weights (nothing downloaded) "
        'and explained with `GradCAM(model)` (`layer="auto"`) for its top class (segmenters: '
        "`targets.segmentation(c)` of the class with the largest score; the detector: `targets.detection` of "
        "each image's top box). *max err*: largest difference of the normalised maps to a float64 reference of "
        "Grad-CAM at the chosen layer (the float32 activation fed into a float64 copy of the rest of the "
        "network); *unchanged*: parameters, buffers, training flags, requires_grad and hooks identical "
        "afterwards; *ratio*: one explanation / one plain forward pass (medians of "
        f"{args.reps}; a shared, loaded machine, so read ratios as rough).",
        "",
        "| model | input | layer chosen by `auto` | map | max err | unchanged | forward (ms) | Grad-CAM (ms) | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | | error: {r['error']} | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r['input']} | `{r['layer']}` | {r['map']} | {r['max_err']:.1e} | "
            f"{'yes' if r['unchanged'] else 'NO'} | {1000 * r['forward_s']:.0f} | {1000 * r['gradcam_s']:.0f} | "
            f"{r['ratio']:.2f} |"
        )
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
