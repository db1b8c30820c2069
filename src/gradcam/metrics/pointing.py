"""The pointing game (Zhang et al., ECCV 2016, "Top-down neural attention by excitation backprop") and
the energy of a map inside the ground truth.

A hit is counted when the map's maximum lies within the ground-truth region of the cued class, with a
tolerance of 15 pixels (at ImageNet resolution): hit = min over ground-truth pixels p of
|peak - p| <= tolerance. Accuracy = hits / (hits + misses). A flat map has no maximum: it is a miss.
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

from ..regions import peaks as _peaks


def boxes_to_masks(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bool masks (..., H, W) that are True inside boxes (..., 4) ``(x0, y0, x1, y1)`` (exclusive ends):
    pixel (y, x) is inside when x0 <= x < x1 and y0 <= y < y1."""
    h, w = size
    b = torch.as_tensor(boxes)
    ys = torch.arange(h, device=b.device).view(h, 1)
    xs = torch.arange(w, device=b.device).view(1, w)
    b = b[..., None, None]
    return (xs >= b[..., 0, :, :]) & (xs < b[..., 2, :, :]) & (ys >= b[..., 1, :, :]) & (ys < b[..., 3, :, :])


def _gt_masks(gt: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    if gt.dtype == torch.bool and gt.shape[-2:] == maps.shape[-2:]:
        return gt.expand_as(maps) if gt.shape != maps.shape else gt
    if gt.shape[-1:] == (4,) and not gt.dtype.is_floating_point and gt.dtype != torch.bool:
        return boxes_to_masks(gt, (maps.shape[-2], maps.shape[-1])).expand_as(maps)
    raise ValueError(
        f"gt must be bool masks shaped like the maps {tuple(maps.shape)} or integer boxes (..., 4) "
        f"(x0, y0, x1, y1); got {gt.dtype} {tuple(gt.shape)}."
    )


def peaks(maps: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(xy, valid)``: (..., 2) integer ``(x, y)`` of each map's (first) maximum (the library's one peak
    convention, :func:`gradcam.regions.peaks`) and (...) whether the map is not flat; maps (..., H, W)."""
    flat = maps.flatten(-2)
    return _peaks(maps, dims=2), flat.amax(-1) > flat.amin(-1)


def distance_to_masks(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Euclidean distance (pixels) from each map's peak to the nearest True pixel of ``masks``.

    maps (..., H, W), masks broadcastable to (..., J, H, W) with the map's peak broadcast over J;
    +inf for an empty mask or a flat map.
    """
    h, w = maps.shape[-2:]
    xy, valid = peaks(maps)
    px, py = xy[..., 0], xy[..., 1]
    ys = torch.arange(h, device=maps.device, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, device=maps.device, dtype=torch.float32).view(1, w)
    extra = masks.dim() - maps.dim()
    shape = py.shape + (1,) * extra + (1, 1)
    d2 = (ys - py.view(shape).float()) ** 2 + (xs - px.view(shape).float()) ** 2
    inf = torch.tensor(float("inf"), device=maps.device)
    d = torch.where(masks, d2, inf).flatten(-2).amin(-1).sqrt()
    return torch.where(valid.view(py.shape + (1,) * extra), d, inf)


def pointing_hits(maps: torch.Tensor, gt: torch.Tensor, tolerance: float = 15.0) -> torch.Tensor:
    """Bool (...) hits: the peak of each map (..., H, W) lies within ``tolerance`` pixels of ``gt``.

    ``gt`` is either bool masks shaped like (or broadcastable to) the maps, or integer boxes (..., 4).
    """
    if tolerance < 0:
        raise ValueError(f"tolerance is a distance in pixels, >= 0; got {tolerance}.")
    masks = _gt_masks(gt, maps)
    return distance_to_masks(maps, masks) <= tolerance


def pointing_game(maps: torch.Tensor, gt: torch.Tensor, tolerance: float = 15.0, classes=None) -> float:
    """Pointing-game accuracy hits / (hits + misses) over all maps (..., H, W); see :func:`pointing_hits`.
    With ``classes`` (one per map), TorchRay's protocol: the mean over classes of the per-class accuracy
    (:func:`pointing_game_torchray`)."""
    if classes is not None:
        return pointing_game_torchray(maps, gt, classes, tolerance)[0]
    hits = pointing_hits(maps, gt, tolerance)
    if hits.numel() == 0:
        raise ValueError("pointing_game needs at least one map.")
    return float(hits.float().mean())


def energy_in_box(maps: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass inside the ground truth: sum(m * 1_gt) / sum(m), (...) in [0, 1].

    Maps should be non-negative (every method's ``maps`` are). A map with no mass gives 0, never NaN.
    """
    masks = _gt_masks(gt, maps)
    m = maps.clamp_min(0)
    total = m.flatten(-2).sum(-1)
    inside = (m * masks).flatten(-2).sum(-1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def pointing_game_torchray(
    maps: torch.Tensor,
    masks: torch.Tensor,
    classes: Union[torch.Tensor, Sequence[int]],
    tolerance: float = 15.0,
) -> Tuple[float, torch.Tensor]:
    """TorchRay's pointing game: maps (M, H, W) of M (image, class) pairs, ``masks`` (M, H, W) the union of
    that class's boxes in the image, ``classes`` (M,) the class of each pair. A hit when the peak is within
    ``tolerance`` px of the mask (flat map: miss). Returns (mean over classes of the per-class accuracy,
    per-class accuracies (C,) with NaN for classes never asked)."""
    classes = torch.as_tensor(classes, device=maps.device).long().reshape(-1)
    if maps.dim() != 3 or classes.numel() != maps.shape[0]:
        raise ValueError(
            f"maps must be (M, H, W) with one class per map; got {tuple(maps.shape)} and {classes.numel()} classes."
        )
    hits = pointing_hits(maps, masks, tolerance).double()
    c = int(classes.max().item()) + 1
    n = torch.zeros(c, dtype=torch.float64).index_add_(0, classes, torch.ones_like(hits))
    h = torch.zeros(c, dtype=torch.float64).index_add_(0, classes, hits)
    per_class = torch.where(n > 0, h / n.clamp_min(1), torch.full_like(n, float("nan")))
    return float(per_class[n > 0].mean()), per_class.float()
