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
import torch.nn.functional as F


def _run_max(lab: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Max of ``lab`` over each horizontal run of foreground pixels (B, H, W), both directions at once:
    a segmented cumulative max, keyed by run index so that one run never leaks into the next."""
    big = lab.shape[-1] * lab.shape[-2] + 1
    dtype = torch.int32 if big * (lab.shape[-1] // 2 + 2) < 2**31 else torch.int64

    def forward(lab, fg):
        start = fg & ~F.pad(fg[..., :-1], (1, 0), value=False)
        run = start.cumsum(-1, dtype=dtype) * big
        return (torch.cummax(run + lab.to(dtype), -1).values - run).to(lab.dtype)

    fwd = forward(lab, fg)
    bwd = forward(lab.flip(-1), fg.flip(-1)).flip(-1)
    return torch.maximum(fwd, bwd) * fg


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Label the 8-connected segments of bool masks (..., H, W).

    Returns int64 labels of the same shape: 0 on the background, and on each segment the (1-based)
    largest flat pixel index inside it. Computed by max-propagation, batched over all masks: a
    segmented max along every row run and every column run, a 3 x 3 max (diagonal neighbours) and
    pointer jumping (a label L names pixel L - 1, which lies in the same segment), repeated until no
    label changes (a few rounds for compact segments; maps that have converged drop out).
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor; got {mask.dtype}.")
    if mask.dim() < 2:
        raise ValueError(f"mask must have shape (..., H, W); got {tuple(mask.shape)}.")
    h, w = mask.shape[-2:]
    if h * w >= 2**24:
        raise ValueError(f"maps of {h}x{w} pixels are too large for exact float labels; downsample them first.")
    fg = mask.reshape(-1, h, w)
    ids = torch.arange(1, h * w + 1, dtype=torch.float32, device=mask.device).view(1, h, w)
    lab = torch.where(fg, ids, torch.zeros((), device=mask.device))
    work, wfg = lab, fg
    todo = torch.arange(fg.shape[0], device=mask.device)  # maps not yet converged
    while todo.numel():
        new = _run_max(work, wfg)
        new = _run_max(new.transpose(1, 2), wfg.transpose(1, 2)).transpose(1, 2)
        new = F.max_pool2d(new.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * wfg
        flat = new.flatten(1)
        for _ in range(2):  # pointer jumping: take the label now held by the pixel a label names
            flat = torch.maximum(flat, flat.gather(1, (flat.long() - 1).clamp_min_(0)) * (flat > 0))
        new = flat.view_as(new)
        changed = (new != work).flatten(1).any(1)
        lab[todo[~changed]] = new[~changed]
        todo, work, wfg = todo[changed], new[changed], wfg[changed]
    return lab.long().reshape(mask.shape)


def box_from_map(maps: torch.Tensor, threshold: float = 0.15) -> torch.Tensor:
    """Bounding box of the largest segment of each map above ``threshold * max``.

    maps (..., H, W) -> boxes (..., 4) int64 ``(x0, y0, x1, y1)``, exclusive ends. Foreground: m >= threshold * max(m)
    and m > 0; segments are 8-connected; the largest wins (equal sizes: the one holding the maximum).
    A map with no positive value (flat zero) gives the empty box (0, 0, 0, 0); a constant positive map
    gives the whole image.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1]; got {threshold}.")
    if maps.dim() < 2:
        raise ValueError(f"maps must have shape (..., H, W); got {tuple(maps.shape)}.")
    h, w = maps.shape[-2:]
    m = maps.detach().reshape(-1, h, w).float()
    mx = m.flatten(1).amax(1).view(-1, 1, 1)
    fg = (m >= threshold * mx) & (m > 0)
    labels = connected_components(fg).flatten(1)
    b = m.shape[0]
    counts = torch.zeros(b, h * w + 1, device=m.device).scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float))
    counts[:, 0] = 0
    peak_label = labels.gather(1, m.flatten(1).argmax(1, keepdim=True))
    bonus = torch.zeros_like(counts).scatter_(1, peak_label, 0.5)  # tie-break toward the maximum's segment
    best = (counts + bonus * (counts > 0)).argmax(1)
    sel = (labels == best.view(-1, 1)) & (labels > 0)
    sel = sel.view(b, h, w)
    rows, cols = sel.any(2), sel.any(1)
    y0 = rows.float().argmax(1)
    y1 = h - rows.flip(1).float().argmax(1)
    x0 = cols.float().argmax(1)
    x1 = w - cols.flip(1).float().argmax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1)
    boxes = torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))
    return boxes.reshape(*maps.shape[:-2], 4)


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
