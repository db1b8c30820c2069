"""Occlusion defaults for ``gradcam explain --method occlusion``: pointing game on real-photo mosaics.

Mosaics of four foolbox ImageNet photos (``gradcam.evaluation.mosaics``), tiles of 128 px, so the
256 x 256 mosaic has the scale the CLI feeds the embedded EfficientNet-Lite0 (short side 256). For each
(window, stride): pointing game (peak within 15 px of the class's tile), energy in the tile, forwards
per image and CPU seconds per mosaic. Run: ``python benchmarks/occlusion_defaults.py [--mosaics 8]``;
writes docs/results/occlusion_defaults.md.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from gradcam import metrics as M
from gradcam.evaluation import mosaics as mos
from gradcam.methods.occlusion import Occlusion, window_positions
from gradcam.models import load_model

SETTINGS = [(32, 16), (48, 24), (64, 32), (96, 48), (128, 64)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mosaics", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--settings",
        default=",".join(f"{w}/{s}" for w, s in SETTINGS),
        help="window/stride pairs, comma-separated (default: %(default)s)",
    )
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(__file__), "..", "docs", "results", "occlusion_defaults.md"),
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    loaded = load_model()
    model = loaded.model
    mean, std = torch.tensor(loaded.mean).view(1, 3, 1, 1), torch.tensor(loaded.std).view(1, 3, 1, 1)
    photos = mos.load_photos(128)
    with torch.no_grad():
        pred = model((torch.stack([p.image for p in photos]) - mean) / std).argmax(1)
    usable, _ = mos.split_classified(photos, pred)
    m = mos.make_mosaics(usable, a.mosaics, seed=0)
    x = (m.images - mean) / std
    rows = []
    for window, stride in [tuple(int(v) for v in p.split("/")) for p in a.settings.split(",")]:
        occ = Occlusion(model, window=window, stride=stride)
        t = time.process_time()
        maps = torch.cat([occ(x[i : i + 1], target=m.labels[i : i + 1]).maps for i in range(x.shape[0])])
        cpu = (time.process_time() - t) / x.shape[0]
        n_pos = len(window_positions(256, window, stride)) ** 2
        rows.append(
            (
                window,
                stride,
                n_pos,
                float(M.pointing_hits(maps, m.masks, 15).float().mean()),
                float(M.energy_in_box(maps, m.masks).mean()),
                cpu,
            )
        )
        print(rows[-1], flush=True)
    lines = [
        "# Occlusion window and stride on real-photo mosaics (EfficientNet-Lite0, 256 x 256 input)",
        "",
        f"{a.mosaics} mosaics of 4 foolbox ImageNet photos ({4 * a.mosaics} class maps), tiles 128 px; "
        f"pointing: peak within 15 px of the class's tile (chance ~0.25 plus the tolerance); "
        f"energy: share of the map inside the tile (uniform map: 0.25). CPU seconds per mosaic, "
        f"{a.threads} thread(s). Made by `python benchmarks/occlusion_defaults.py --mosaics {a.mosaics}`.",
        "",
        "| window | stride | forwards per image | pointing | energy in tile | CPU s / mosaic |",
        "|---|---|---|---|---|---|",
    ] + [f"| {w} | {s} | {p} | {pt:.3f} | {e:.3f} | {c:.1f} |" for w, s, p, pt, e, c in rows]
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
