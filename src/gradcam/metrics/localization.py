"""Boxes from maps and weakly-supervised localization (Zhou et al. CVPR 2016; Selvaraju et al. Sec. 4.1).

A map is binarised at a fraction of its maximum (15% in the Grad-CAM paper), the largest 8-connected
segment is kept and its bounding box is the predicted box. ILSVRC localization counts a prediction as
right when its class is right and its box overlaps a ground-truth box of that class with IoU >= 0.5.

Boxes are ``(x0, y0, x1, y1)`` in pixel-edge coordinates with ``x1``/``y1`` exclusive, as
``torchvision.ops`` and COCO's corners: the box covers pixels ``x0 <= x < x1``, ``y0 <= y < y1`` and its
area is ``(x1 - x0) * (y1 - y0)``. The one convention of the whole package; an empty box is ``(0, 0, 0, 0)``.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from ..regions import PAPER_BOX_THRESHOLD, connected_components, map_boxes

__all__ = ["box_from_map", "connected_components", "iou", "localization_correct", "localization_error"]


def box_from_map(
    maps: torch.Tensor, threshold: float = PAPER_BOX_THRESHOLD, rule: str = "largest"
) -> torch.Tensor:
    """Bounding box of the largest segment of each map above ``threshold * max`` (the evaluation protocol).

    maps (..., H, W) -> boxes (..., 4) int64 ``(x0, y0, x1, y1)``, exclusive ends. Foreground: m >= threshold * max(m)
    and m > 0; segments are 8-connected; the largest wins (equal sizes: the one holding the maximum).
    A map with no positive value (flat zero) gives the empty box (0, 0, 0, 0); a constant positive map
    gives the whole image. The default threshold is the Grad-CAM paper's 15%
    (:data:`gradcam.regions.PAPER_BOX_THRESHOLD`, Table 1), on purpose: the user-facing boxes default to
    :data:`gradcam.regions.BOX_THRESHOLD`. ``rule``: see :func:`gradcam.regions.map_boxes`.
    """
    if maps.dim() < 2:
        raise ValueError(f"maps must have shape (..., H, W); got {tuple(maps.shape)}.")
    return map_boxes(maps, threshold, rule, dims=2)


def _as_boxes(b: Union[torch.Tensor, Sequence]) -> torch.Tensor:
    t = torch.as_tensor(b)
    if t.shape[-1:] != (4,):
        raise ValueError(f"boxes must have shape (..., 4) as (x0, y0, x1, y1); got {tuple(t.shape)}.")
    return t.float()


def iou(a: Union[torch.Tensor, Sequence], b: Union[torch.Tensor, Sequence]) -> torch.Tensor:
    """Intersection over union of boxes (..., 4) ``(x0, y0, x1, y1)`` (exclusive ends), broadcasting.

    IoU = |A n B| / |A u B| with |A| = (x1 - x0) * (y1 - y0) and
    |A n B| = max(0, min(ax1, bx1) - max(ax0, bx0)) * max(0, min(ay1, by1) - max(ay0, by0));
    0 where the union is empty (two empty boxes), never NaN.
    """
    a, b = _as_boxes(a), _as_boxes(b)
    ih = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    iw = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = ih * iw  # (axis 0 and 2 pair, 1 and 3 pair: the formula is the same for either axis order)
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def localization_correct(
    pred_boxes: torch.Tensor,
    pred_classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    iou_threshold: float = 0.5,
) -> torch.Tensor:
    """Which predictions localize correctly (ILSVRC rule).

    pred_boxes (N, K, 4), pred_classes (N, K) -> bool (N, K): prediction k of image n is right when
    some ground-truth object g has gt_classes[n, g] == pred_classes[n, k] and
    IoU(pred_boxes[n, k], gt_boxes[n, g]) >= ``iou_threshold`` (an IoU of exactly 0.5 is a hit). Boxes
    are ``(x0, y0, x1, y1)``, exclusive ends. gt_boxes (N, G, 4) and gt_classes
    (N, G) may be padded with class -1.
    """
    if pred_boxes.shape[:2] != pred_classes.shape or gt_boxes.shape[:2] != gt_classes.shape:
        raise ValueError(
            "Shapes do not match: pred_boxes (N, K, 4) with pred_classes (N, K), gt_boxes (N, G, 4) with "
            f"gt_classes (N, G); got {tuple(pred_boxes.shape)}, {tuple(pred_classes.shape)}, "
            f"{tuple(gt_boxes.shape)}, {tuple(gt_classes.shape)}."
        )
    overlap = iou(pred_boxes.unsqueeze(2), gt_boxes.unsqueeze(1))  # (N, K, G)
    same = pred_classes.unsqueeze(2) == gt_classes.unsqueeze(1)
    return ((overlap >= iou_threshold) & same & (gt_classes.unsqueeze(1) >= 0)).any(2)


def localization_error(
    pred_boxes: torch.Tensor,
    pred_classes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_classes: torch.Tensor,
    top: int = 1,
    iou_threshold: float = 0.5,
) -> float:
    """Top-``top`` localization error: the share of images none of whose first ``top`` predictions is
    right by :func:`localization_correct` (predictions ordered best first)."""
    if top < 1 or top > pred_classes.shape[1]:
        raise ValueError(f"top must be in 1..{pred_classes.shape[1]} (the predictions given); got {top}.")
    ok = localization_correct(pred_boxes[:, :top], pred_classes[:, :top], gt_boxes, gt_classes, iou_threshold)
    return float(1 - ok.any(1).float().mean())
