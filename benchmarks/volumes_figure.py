"""The figure of docs/results/volumes-benchmark.md: one test volume of the ``volumes`` benchmark with its
lesion, and Grad-CAM's map of the class ``lesion`` (committed weights) in axial, coronal and sagittal slices
through the map's peak, beside the same planes with the lesion's mask.

    PYTHONPATH=src python benchmarks/volumes_figure.py --out docs/figures
"""

from __future__ import annotations

import argparse
import os

import torch
from PIL import Image

import gradcam
from gradcam.datasets import lesions
from gradcam.evaluation import volumes as V
from gradcam.medical import Volume, montage


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/figures")
    p.add_argument("--index", type=int, default=0, help="which test volume with a lesion (default the first)")
    args = p.parse_args(argv)
    net, _ = V.load_or_train(V.VolumeTrainConfig())
    test = lesions.make_lesions(200, seed=20_000)
    i = int(torch.nonzero(test.labels == 1).flatten()[args.index])
    x = test.volumes[i : i + 1]
    res = gradcam.GradCAM(net, layer=V.GRADCAM_LAYER)(x, target=lesions.CLASSES.index("lesion"))
    vol = Volume(data=x[0, 0], affine=torch.eye(4, dtype=torch.float64), source=f"lesion test volume {i}")
    m = res.maps[0, 0]
    z, y, xx = (int(v) for v in torch.nonzero(m == m.max())[0])
    peak = (xx, y, z)
    top = montage(vol, m, peak, window=(0.5, 1.0), px=192)
    mask = montage(vol, test.masks[i].float(), peak, window=(0.5, 1.0), px=192)
    fig = Image.new("RGB", (top.width, top.height + mask.height + 4), (255, 255, 255))
    fig.paste(top, (0, 0))
    fig.paste(mask, (0, top.height + 4))
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "volumes-lesion-gradcam.png")
    fig.save(path)
    d2 = float(
        torch.cdist(
            torch.tensor([[z, y, xx]], dtype=torch.float32), torch.nonzero(test.masks[i]).float()
        ).min()
    )
    print(
        f"{path}: volume {i}, radius {float(test.radius[i]):.2f}, contrast {float(test.contrast[i]):.0f} HU, "
        f"peak (x, y, z) = {peak}, distance to the lesion {d2:.2f} voxels, box {test.boxes[i].tolist()}"
    )


if __name__ == "__main__":
    main()
