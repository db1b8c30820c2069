"""Rich display in Jupyter: ``_repr_html_`` of :class:`~gradcam.explanation.Explanation`,
:class:`~gradcam.pixels.PixelExplanation` and :class:`~gradcam.api.ImageResult`.

Each shows a small grid of PNG images (data URIs) with captions: the maps (colour-mapped) of an
``Explanation``, the pixel-space attributions (:func:`gradcam.pixels.to_image`) of a ``PixelExplanation``,
the overlays and the top-5 predictions of an ``ImageResult``. At most ``MAX_IMAGES`` images and ``MAX_MAPS``
maps per image are shown, each at most ``MAX_SIDE`` pixels per side; of a volume's map, the slice through
its peak. Captions are escaped. It sits below the result types (it needs only :mod:`gradcam.image`).
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import List, Tuple

import torch
from PIL import Image

MAX_IMAGES = 8
MAX_MAPS = 6
MAX_SIDE = 224
STYLE = (
    "display:inline-block;margin:2px 6px 6px 0;vertical-align:top;font:11px sans-serif;"
    "max-width:{w}px;word-wrap:break-word"
)


def png_data_uri(img: Image.Image) -> str:
    """``data:image/png;base64,...`` of a PIL image."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _small(img: Image.Image) -> Image.Image:
    if max(img.size) <= MAX_SIDE:
        return img
    img = img.copy()
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)
    return img


def rgb_image(t: torch.Tensor) -> Image.Image:
    """A PIL RGB image from a (H, W, 3) tensor in [0, 1] (rounded to 8 bits)."""
    a = t.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).contiguous().numpy()
    return Image.fromarray(a, "RGB")


def _grid(figures: List[Tuple[Image.Image, str]], head: str = "") -> str:
    parts = [f'<div class="gradcam-repr">{head}']
    for img, caption in figures:
        img = _small(img)
        parts.append(
            f'<figure style="{STYLE.format(w=img.size[0])}"><img src="{png_data_uri(img)}" '
            f'width="{img.size[0]}" height="{img.size[1]}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return "".join(parts)


def explanation_html(exp, pixels: bool = False) -> str:
    """The first images' maps (``jet``; or with ``pixels`` the attribution images) with class id and score."""
    from .image import colorize

    n, k = exp.maps.shape[:2]
    ni, nk = min(n, MAX_IMAGES), min(k, MAX_MAPS)
    maps = exp.maps[:ni, :nk].detach().cpu()
    where = [[""] * nk for _ in range(ni)]
    if maps.dim() == 5:  # volumes: the slice (along D) through each map's peak
        z = exp.peaks()[:ni, :nk, 2]
        maps = maps.gather(2, z.view(ni, nk, 1, 1, 1).expand(-1, -1, 1, *maps.shape[-2:])).squeeze(2)
        where = [[f" · slice z = {int(v)}" for v in row] for row in z.tolist()]
    pixels = pixels and exp.maps.dim() == 4  # a volume's attributions are shown as its map's peak slice
    shown = exp.image()[:ni, :nk].permute(0, 1, 3, 4, 2) if pixels else colorize(maps)
    targets, scores = exp.targets.tolist(), exp.scores.detach().float().tolist()
    figures = [
        (rgb_image(shown[i, j]), f"image {i} · class {targets[i][j]} · score {scores[i][j]:.4g}{where[i][j]}")
        for i in range(ni)
        for j in range(nk)
    ]
    more = "" if (ni, nk) == (n, k) else f" (showing {ni} of {n} images, {nk} of {k} maps)"
    head = (
        f"<div><b>{escape(type(exp).__name__)}</b> {escape(exp.method)} at {escape(str(exp.layer))}: "
        f"{n} image(s) × {k} map(s){escape(more)}</div>"
    )
    return _grid(figures, head)


def image_result_html(res) -> str:
    """The overlays of an :class:`~gradcam.api.ImageResult` with class, probability, and its top-5 predictions."""
    k = min(len(res.classes), MAX_MAPS)
    figures = [
        (res.overlay(j), f"{res.classes[j]} ({res.class_ids[j]}) · p = {res.probabilities[j]:.1%}")
        for j in range(k)
    ]
    preds = "".join(f"<li>{escape(str(c))} ({i}): {p:.1%}</li>" for c, i, p in res.predictions)
    w, h = res.size
    head = (
        f"<div><b>{escape(str(res.source or 'image'))}</b> ({w}×{h}) · {escape(res.method)} at "
        f'{escape(str(res.layer))} · {escape(res.model)}<ol style="margin:2px 0">{preds}</ol></div>'
    )
    return _grid(figures, head)
