"""One picture of a batch's explanations for loggers: a row per image, the image then one overlay per class.

Used by the Lightning callback and :func:`gradcam.integrations.tensorboard.log_explanations`. Everything is
tensor arithmetic on the whole batch (colour lookup and blend); only the short captions are drawn per tile.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..explanation import Explanation
from ..image import colorize, resize_map

ImagesLike = Union[torch.Tensor, Sequence[Image.Image]]
CAPTION_HEIGHT = 14  # pixels of the caption strip under each tile
MIN_TILE = 96  # smaller images are enlarged by an integer factor to at least this many pixels a side


def display_images(
    images: ImagesLike, mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None
) -> torch.Tensor:
    """The images to show, (N, 3, H, W) float in [0, 1].

    ``images``: PIL images (all one size), or a (N, C, H, W) tensor with C in (1, 3): with ``mean``/``std``
    it is un-normalised, x * std + mean; otherwise a batch already in [0, 1] is kept and any other is
    min-max scaled per image, (x - min) / (max - min) (a flat image becomes zeros).
    """
    if not isinstance(images, torch.Tensor):
        arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0 for im in images]
        if len({a.shape for a in arrays}) > 1:
            raise ValueError("display_images: the PIL images must all have one size; resize them first.")
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    x = images.detach().float().cpu()
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be a (N, C, H, W) tensor with C = 1 or 3; got shape {tuple(x.shape)}.")
    if mean is not None or std is not None:
        m = torch.tensor(mean if mean is not None else [0.0] * x.shape[1]).view(1, -1, 1, 1)
        s = torch.tensor(std if std is not None else [1.0] * x.shape[1]).view(1, -1, 1, 1)
        x = x * s + m
    elif x.numel() and (x.min() < 0 or x.max() > 1):
        lo = x.flatten(1).amin(1).view(-1, 1, 1, 1)
        rng = x.flatten(1).amax(1).view(-1, 1, 1, 1) - lo
        x = torch.where(rng > 0, (x - lo) / rng.clamp_min(1e-12), torch.zeros_like(x))
    return x.clamp(0, 1).expand(-1, 3, -1, -1)


def tile_captions(result: Explanation, labels: Optional[Sequence[str]] = None) -> List[List[str]]:
    """Per image, per explained class: ``"name p=0.87"`` (softmax probability; the logit when no probabilities)."""
    targets = result.targets.tolist()
    try:
        probs = (
            result.probabilities().gather(1, result.targets.clamp_min(0).to(result.output.device)).tolist()
        )
        fmt = "p={:.2f}"
    except Exception:  # noqa: BLE001 - an output that is not a tensor of logits: show the score y^c instead
        probs, fmt = result.scores.float().tolist(), "y={:.2f}"
    return [[f"{_name(c, labels)} {fmt.format(p)}" for c, p in zip(ts, ps)] for ts, ps in zip(targets, probs)]


def caption_text(result: Explanation, labels: Optional[Sequence[str]] = None) -> str:
    """A one-line-per-image text caption: the classes, probabilities and scores y^c, and the layer."""
    caps = tile_captions(result, labels)
    scores = result.scores.float().tolist()
    lines = [
        f"image {i}: " + "; ".join(f"{c} (y={s:.3f})" for c, s in zip(cs, ss))
        for i, (cs, ss) in enumerate(zip(caps, scores))
    ]
    return f"{result.method} at {result.layer}\n" + "\n".join(lines)


def _name(c: int, labels: Optional[Sequence[str]]) -> str:
    if c < 0:
        return "custom"
    return str(labels[c]) if labels is not None and c < len(labels) else f"class {c}"


def explanation_grid(
    images: ImagesLike,
    result: Explanation,
    labels: Optional[Sequence[str]] = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    captions: bool = True,
    scale: Optional[int] = None,
) -> Image.Image:
    """A grid: row n = [image n, overlay of class 1, ..., overlay of class K], each overlay
    (1 - alpha) * image + alpha * cmap(map), with the class name and probability under each overlay.

    ``result``: the :class:`~gradcam.Explanation` of ``images`` (the model's input batch); ``images`` as in
    :func:`display_images`; ``labels``: class names (default ``class <id>``). ``scale``: each image is
    enlarged ``scale`` times (pixels repeated; the maps resized bilinearly); default ceil(MIN_TILE / min(h, w))
    so that small inputs (MNIST, CIFAR) give tiles of at least :data:`MIN_TILE` pixels with readable captions.
    """
    x = display_images(images, mean, std)
    maps = result.maps.detach().float().cpu()
    n, k = maps.shape[:2]
    if x.shape[0] != n:
        raise ValueError(
            f"{x.shape[0]} images but the explanation has {n}; pass the batch that was explained."
        )
    if scale is None:
        scale = max(1, -(-MIN_TILE // min(x.shape[-2:])))
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int (or None: automatic); got {scale!r}.")
    if scale > 1:
        x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    h, w = x.shape[-2:]
    heat = colorize(resize_map(maps, (h, w)), colormap).permute(0, 1, 4, 2, 3)  # (N, K, 3, H, W)
    tiles = torch.cat(
        [x.unsqueeze(1), (1 - alpha) * x.unsqueeze(1) + alpha * heat], dim=1
    )  # (N, K+1, 3, H, W)
    cap = CAPTION_HEIGHT if captions else 0
    grid = torch.ones(n, k + 1, 3, h + cap, w)
    grid[:, :, :, :h] = tiles
    arr = (grid.permute(0, 3, 1, 4, 2).reshape(n * (h + cap), (k + 1) * w, 3) * 255).round().to(torch.uint8)
    img = Image.fromarray(arr.numpy(), "RGB")
    if captions:
        _draw_captions(img, tile_captions(result, labels), (w, h), cap)
    return img


def _draw_captions(img: Image.Image, caps: List[List[str]], tile: Tuple[int, int], cap: int) -> None:
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    w, h = tile
    for i, row in enumerate(caps):
        y = i * (h + cap) + h + 1
        for j, text in enumerate(row):
            draw.text(((j + 1) * w + 2, y), text[: max(4, w // 6)], fill=(0, 0, 0), font=font)
