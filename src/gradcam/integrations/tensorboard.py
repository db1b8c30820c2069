"""Explanations into TensorBoard from a plain training loop: :func:`log_explanations`.

Works with ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package, extra
``lightning``), any writer with ``add_image(tag, img, step, dataformats=...)`` and ``add_text``, or a Lightning
``TensorBoardLogger`` (its ``experiment``).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Union

import numpy as np

from ..explanation import Explanation
from .grid import ImagesLike, caption_text, explanation_grid


def log_explanations(
    writer: Any,
    tag: str,
    result: Union[Explanation, Sequence[Any]],
    images: Optional[ImagesLike],
    step: int,
    *,
    labels: Optional[Sequence[str]] = None,
    alpha: float = 0.5,
    colormap: str = "jet",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    scale: Optional[int] = None,
) -> np.ndarray:
    """Log one grid of explanations at ``step``: ``writer.add_image(tag, grid)`` and the caption as
    ``writer.add_text(tag + "/caption", ...)``; returns the grid as an (H, W, 3) uint8 array.

    ``result``: the :class:`~gradcam.Explanation` of the batch ``images`` ((N, C, H, W) model input, with
    ``mean``/``std`` to undo its normalisation; or PIL images), or a list of ``gradcam.explain`` results
    (``ImageResult``; then ``images`` may be ``None``: each result's photo is shown, one grid row each).
    Each row: the image, then overlay_k = (1 - alpha) * image + alpha * cmap(map_k) per explained class;
    ``scale`` enlarges small images (default: tiles of at least 96 px).
    """
    if not hasattr(writer, "add_image") and hasattr(writer, "experiment"):
        writer = writer.experiment  # a Lightning TensorBoardLogger: its SummaryWriter
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"tag must be a non-empty string; got {tag!r}.")
    if isinstance(result, Explanation):
        if images is None:
            raise ValueError("images is required with an Explanation: pass the batch that was explained.")
        grid = np.asarray(explanation_grid(images, result, labels, alpha, colormap, mean, std, scale=scale))
        caption = caption_text(result, labels)
    else:
        grid, caption = _results_grid(list(result), alpha, colormap)
    writer.add_image(tag, grid, step, dataformats="HWC")
    if hasattr(writer, "add_text"):
        writer.add_text(f"{tag}/caption", caption.replace("\n", "  \n"), step)
    return grid


def _results_grid(results: List[Any], alpha: float, colormap: str):
    """Rows of [photo, overlays...] for ``gradcam.explain`` results, each photo resized to the first's height."""
    if not results:
        raise ValueError("result is an empty list; pass gradcam.explain results or an Explanation.")
    height = min(256, results[0].image.size[1])
    rows, lines = [], []
    for i, r in enumerate(results):
        w, h = r.image.size
        size = (max(1, round(w * height / h)), height)
        tiles = [r.image.resize(size)] + [
            r.overlay(k, alpha=alpha, colormap=colormap).resize(size) for k in range(len(r.class_ids))
        ]
        rows.append(np.concatenate([np.asarray(t) for t in tiles], axis=1))
        lines.append(
            f"image {i}: " + "; ".join(f"{c} (p={p:.3f})" for c, p in zip(r.classes, r.probabilities))
        )
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    grid = np.concatenate(rows, axis=0)
    return grid, f"{results[0].method} at {results[0].layer}\n" + "\n".join(lines)
