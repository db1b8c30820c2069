"""Worked examples of the dense and non-class targets, and of a volume, on real photos (docs/guides/targets.md).

    python docs/examples/targets.py        # writes docs/figures/target_*.png

The real model is the embedded ImageNet EfficientNet-Lite0. A classifier becomes a segmenter and a sliding-
window detector by applying its linear head at every cell of its last feature map (the FCN trick), and an
embedding model by dropping the head; each is then explained with the matching ``gradcam.targets`` helper.
"""

from __future__ import annotations

import os

import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

import gradcam
from gradcam.image import overlay, overlay_slices
from gradcam.targets import detection, segmentation, similarity

OUT = os.path.join(os.path.dirname(__file__), "..", "figures")
S = 224


def tensor(img: Image.Image) -> torch.Tensor:
    """RGB -> (3, S, S) in this checkpoint's normalisation, (x - 0.5) / 0.5."""
    x = torch.frombuffer(
        bytearray(img.convert("RGB").resize((S, S), Image.BICUBIC).tobytes()), dtype=torch.uint8
    )
    return (x.view(S, S, 3).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


class DenseScores(nn.Module):
    """The classifier's head at every cell: (N, 1000, h, w) class scores (a segmenter's output)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        f = self.net.features(x)
        return torch.einsum("nchw,kc->nkhw", f, self.net._fc.weight) + self.net._fc.bias[:, None, None]


class SlidingWindows(DenseScores):
    """A DETR-style detector: one query per cell, its box the 5x5-cell window around it (normalised cx, cy,
    w, h), its logits the class scores pooled over that window plus a "no object" logit of 0."""

    def forward(self, x):
        s = F.avg_pool2d(super().forward(x), 5, stride=1, padding=2, count_include_pad=False)
        n, k, h, w = s.shape
        logits = torch.cat([s.flatten(2).transpose(1, 2), s.new_zeros(n, h * w, 1)], 2)
        cy, cx = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
        boxes = torch.stack([cx, cy, torch.full_like(cx, 5 / w), torch.full_like(cy, 5 / h)], -1).reshape(
            1, h * w, 4
        )
        return {"pred_logits": logits, "pred_boxes": boxes.expand(n, -1, -1)}


class Embedder(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.features(x).mean(dim=(2, 3))


def side_by_side(*images: Image.Image) -> Image.Image:
    out = Image.new(
        "RGB", (sum(i.width for i in images) + 6 * (len(images) - 1), max(i.height for i in images)), "white"
    )
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + 6
    return out


def main() -> None:
    torch.manual_seed(0)
    net = gradcam.load_model().model.eval()
    cat, cup = Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.coffee())
    scene = Image.new("RGB", (2 * S, S))
    scene.paste(cat.resize((S, S)), (0, 0))
    scene.paste(cup.resize((S, S)), (S, 0))
    x = torch.cat([tensor(cat), tensor(cup)], 2)[None]  # (1, 3, 224, 448): cat left, espresso right
    labels = gradcam.load_model().labels

    # Segmentation: the class covering most cells of the left half, its predicted region as the mask.
    seg = DenseScores(net)
    with torch.no_grad():
        dense = seg(x)
    c = int(dense[0, :, :, : dense.shape[-1] // 2].argmax(0).flatten().mode().values)
    res = gradcam.GradCAM(seg)(x, target=segmentation(c))
    region = (dense[0].argmax(0) == c).float()
    mask_img = overlay(
        scene, F.interpolate(region[None, None], size=(S, 2 * S))[0, 0], alpha=0.5, colormap="gray"
    )
    side_by_side(mask_img, overlay(scene, res.maps[0, 0])).save(os.path.join(OUT, "target_segmentation.png"))
    print(f"segmentation: class {c} ({labels[c]}), layer {res.layer}, {int(region.sum())} cells")

    # Detection: a box drawn around the cup (pixels, exclusive ends); the best-matching window's score.
    box = [S + 20, 30, 2 * S - 10, 200]
    det = SlidingWindows(net)
    res = gradcam.GradCAM(det)(x, target=detection([box], iou=0.3, image_size=(S, 2 * S)))
    drawn = scene.copy()
    ImageDraw.Draw(drawn).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(0, 255, 0), width=3)
    side_by_side(drawn, overlay(scene, res.maps[0, 0])).save(os.path.join(OUT, "target_detection.png"))
    print(f"detection: score {float(res.scores[0, 0]):.3f}, layer {res.layer}")

    # Similarity: the embedding of another photo of a cup (a crop of the coffee photo, flipped) as the concept.
    emb = Embedder(net)
    concept_img = cup.crop((100, 0, 500, 350)).transpose(Image.FLIP_LEFT_RIGHT)
    with torch.no_grad():
        concept = emb(tensor(concept_img)[None])[0]
    res = gradcam.GradCAM(emb)(x, target=similarity(concept))
    side_by_side(concept_img.resize((S, S)), overlay(scene, res.maps[0, 0])).save(
        os.path.join(OUT, "target_similarity.png")
    )
    print(f"similarity: cosine {float(res.scores[0, 0]):.3f}, layer {res.layer}")

    # A volume: a blob detector (hand-set 3-D convolutions) on a noisy volume with one bright blob.
    d = torch.arange(24.0)
    zz, yy, xx = torch.meshgrid(d, d, d, indexing="ij")
    vol = torch.exp(-((zz - 15) ** 2 + (yy - 8) ** 2 + (xx - 14) ** 2) / 12) + 0.15 * torch.randn(24, 24, 24)
    blob = nn.Sequential(
        nn.Conv3d(1, 2, 5, padding=2),
        nn.ReLU(),
        nn.Conv3d(2, 2, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(2, 2),
    )
    with torch.no_grad():
        for p in blob.parameters():
            p.zero_()
        blob[0].weight[0] = 1 / 125
        blob[0].weight[1] = -1 / 125
        blob[0].bias.fill_(-0.1)
        blob[2].weight[:, :, 1, 1, 1] = torch.eye(2)
        blob[6].weight.copy_(torch.eye(2))
    res = gradcam.GradCAM(blob)(vol[None, None], target=0)
    overlay_slices(vol, res.maps[0, 0], slices=[5, 10, 15, 20]).resize((4 * 96 + 12, 96), Image.NEAREST).save(
        os.path.join(OUT, "target_volume.png")
    )
    peak = torch.nonzero(res.maps[0, 0] == res.maps[0, 0].max())[0].tolist()
    print(f"volume: layer {res.layer}, raw {tuple(res.raw.shape)}, peak (d, h, w) = {peak}")


if __name__ == "__main__":
    main()
