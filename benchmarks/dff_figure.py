"""The Deep Feature Factorization figure of the peer-methods page: concepts shared by three real photos.

The photos: the package's demo photo (scikit-image's "Chelsea the cat") and scikit-image's "coffee" and
"astronaut" where scikit-image is installed (else the demo photo alone), each resized to 224 x 224 and
explained by the embedded EfficientNet-Lite0 at its default layer with K concepts factorised over the
batch; the figure is :meth:`ConceptExplanation.figure` (every pixel coloured by its strongest concept, a
legend with each concept's top-3 ImageNet classes through the model's classifier).

Run: ``python benchmarks/dff_figure.py [--concepts 6] [--out docs/figures/dff-concepts.png]`` (seconds).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from PIL import Image

import gradcam
from gradcam.io import demo_photo
from gradcam.methods import registry

HERE = os.path.dirname(os.path.abspath(__file__))


def photos() -> list:
    paths = [demo_photo()]
    try:
        import skimage

        data = os.path.join(os.path.dirname(skimage.__file__), "data")
        paths += [
            os.path.join(data, n)
            for n in ("coffee.png", "astronaut.png")
            if os.path.exists(os.path.join(data, n))
        ]
    except ImportError:
        pass
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concepts", type=int, default=6)
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(HERE), "docs", "figures", "dff-concepts.png")
    )
    args = ap.parse_args(argv)
    loaded = gradcam.load_model("efficientnet-lite0")
    imgs = [Image.open(p).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC) for p in photos()]
    rgb = torch.stack([torch.from_numpy(np.asarray(i).copy()).permute(2, 0, 1) for i in imgs])
    rgb = rgb.float() / 255
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    res = registry.get("dff")(loaded.model, layer=loaded.layer, concepts=args.concepts)((rgb - mean) / std)
    fig = res.figure(rgb, labels=loaded.labels, top=3)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    fig.save(args.out)
    for c, ids in enumerate(res.top_classes(3).tolist()):
        print(f"concept {c + 1}: " + ", ".join(loaded.labels[i].split(",")[0] for i in ids))
    print(f"written {args.out} ({fig.size[0]} x {fig.size[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
