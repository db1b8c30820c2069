"""The paper-style figure of the CAM family: one photo, two classes, every method side by side.

The photo: two of foolbox's labelled ImageNet photos side by side (a bull mastiff and a bald eagle,
160 x 320), explained by the embedded EfficientNet-Lite0 at its default layer for each of the two
classes. Rows: the classes; columns: the photo, then every method of the family (same layer, same
class; Score-CAM with all 1280 channels, RISE with 1000 masks, SS-CAM and IS-CAM with 2 samples: 2560
masked inputs each).

Run: ``python benchmarks/figure_grid.py [--out docs/figures/cam-family.png]`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

import gradcam
from gradcam.evaluation import mosaics
from gradcam.methods import registry

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = [
    ("gradcam", {}, "Grad-CAM"),
    ("gradcam++", {}, "Grad-CAM++"),
    ("xgradcam", {}, "XGrad-CAM"),
    ("hirescam", {}, "HiResCAM"),
    ("layercam", {}, "LayerCAM"),
    ("eigencam", {}, "Eigen-CAM"),
    ("eigengradcam", {}, "Eigen-Grad-CAM"),
    ("scorecam", {"batch_size": 64}, "Score-CAM"),
    ("ablationcam", {}, "Ablation-CAM"),
    ("rise", {"n_masks": 1000, "batch_size": 50}, "RISE"),
    ("random", {}, "RandomCAM"),
    ("gradcam", {"aug_smooth": True}, "Grad-CAM aug_smooth"),
    ("gradcam", {"eigen_smooth": True}, "Grad-CAM eigen_smooth"),
    ("gradcam-elementwise", {}, "Grad-CAM element-wise"),
    ("kpcacam", {}, "KPCA-CAM"),
    ("finercam", {}, "Finer-CAM"),
    ("shapleycam", {}, "Shapley-CAM"),
    ("smoothgradcam++", {}, "Smooth Grad-CAM++"),
    ("segeigencam", {}, "Seg-Eigen-CAM"),
    ("sscam", {"samples": 2}, "SS-CAM (2 samples)"),
    ("iscam", {"samples": 2}, "IS-CAM (2 samples)"),
    ("fullgrad", {}, "FullGrad"),
    ("gradient-x-input", {}, "Gradient x Input"),
    ("integrated-gradients", {"steps": 32, "baseline": "blurred"}, "Integrated Gradients"),
    ("smoothgrad", {}, "SmoothGrad"),
    ("vargrad", {}, "VarGrad"),
]
PHOTOS = ("imagenet_00_243.jpg", "imagenet_17_22.jpg")  # bull mastiff (243), bald eagle (22)
TILE = 160  # px per photo: the figure takes about 2 minutes of CPU (Score-CAM: 1280 forwards, RISE: 1000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "docs", "figures", "cam-family.png"))
    args = ap.parse_args(argv)
    import matplotlib.pyplot as plt
    import numpy as np

    torch.manual_seed(0)
    loaded = gradcam.load_model("efficientnet-lite0")
    photos = {p.name: p for p in mosaics.load_photos(TILE)}
    img = torch.cat([photos[n].image for n in PHOTOS], dim=-1)  # (3, TILE, 2 TILE) in [0, 1]
    classes = [photos[n].label for n in PHOTOS]
    mean = torch.tensor(loaded.mean).view(3, 1, 1)
    std = torch.tensor(loaded.std).view(3, 1, 1)
    x = ((img - mean) / std).unsqueeze(0)
    maps = {}
    for name, kw, label in METHODS:
        t = time.time()
        m = registry.get(name)(loaded.model, layer=loaded.layer, **kw)
        maps[label] = m(x, target=[classes]).maps[0]
        print(f"{label}: {time.time() - t:.1f} s", flush=True)
    photo = img.permute(1, 2, 0).numpy()
    panels = [("photo", None)] + list(maps.items())
    per_row = 7  # methods per row: each block of rows shows both classes for up to 7 panels
    blocks = [panels[i : i + per_row] for i in range(0, len(panels), per_row)]
    fig, axes = plt.subplots(
        2 * len(blocks), per_row, figsize=(2.3 * per_row, 1.45 * 2 * len(blocks)), squeeze=False
    )
    for b, block in enumerate(blocks):
        for r, c in enumerate(classes):
            row = axes[2 * b + r]
            for j in range(per_row):
                ax = row[j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j >= len(block):
                    ax.axis("off")
                    continue
                label, mp = block[j]
                ax.imshow(photo)
                if mp is not None:
                    ax.imshow(mp[r].numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
                if r == 0:
                    ax.set_title(label, fontsize=8)
                if j == 0:
                    ax.set_ylabel(loaded.labels[c].split(",")[0], fontsize=7)
    fig.suptitle(
        f"EfficientNet-Lite0, layer {loaded.layer}: the CAM family and the pixel methods for two classes of one photo",
        fontsize=9,
    )
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"written {args.out}; {np.round(time.process_time(), 1)} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
