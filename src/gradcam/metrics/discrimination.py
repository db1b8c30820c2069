"""Class discrimination: in an image holding objects of several classes, does each class's map point at
its own object? The automated analogue of the Grad-CAM paper's human study (Sec. 5.1: "which of the
two object categories is depicted?").

For image n and class k (object k, mask ``masks[n, k]``):
- peak right: the peak of map k is nearer to object k than to any other object of the image and within
  ``tolerance`` pixels of it (with disjoint objects and tolerance 0: the peak lies on object k);
- mass right: the map's mass on object k exceeds its mass on every other object,
  sum(m_k * M_k) > max_{j != k} sum(m_k * M_j).
Flat maps are wrong on both counts.
"""

from __future__ import annotations

from typing import Dict

import torch

from .pointing import distance_to_masks


def class_discrimination(
    maps: torch.Tensor, masks: torch.Tensor, tolerance: float = 0.0
) -> Dict[str, torch.Tensor]:
    """Per-map results for maps (N, K, H, W) of the K objects' classes and their masks (N, K, H, W).

    Returns ``{"peak": bool (N, K), "mass": bool (N, K)}``; the share of True is the reported score.
    Objects whose mask is empty (padding) are False in both.
    """
    if maps.shape != masks.shape or maps.dim() != 4:
        raise ValueError(
            f"maps and masks must both be (N, K, H, W); got {tuple(maps.shape)} and {tuple(masks.shape)}."
        )
    if masks.dtype != torch.bool:
        raise TypeError(f"masks must be bool; got {masks.dtype}.")
    k = maps.shape[1]
    if k < 2:
        raise ValueError("Class discrimination needs at least two objects (K >= 2) per image.")
    present = masks.flatten(-2).any(-1)  # (N, K)
    dist = distance_to_masks(maps, masks.unsqueeze(1).expand(-1, k, -1, -1, -1))  # (N, K, J)
    own = dist.diagonal(dim1=1, dim2=2)
    eye = torch.eye(k, dtype=torch.bool, device=maps.device)
    others = torch.where(eye, torch.full_like(dist, float("inf")), dist).amin(-1)
    peak = (own <= tolerance) & (own < others) & present
    m = maps.clamp_min(0)
    mass = torch.einsum("nkhw,njhw->nkj", m.float(), masks.float())
    own_mass = mass.diagonal(dim1=1, dim2=2)
    other_mass = torch.where(eye, torch.full_like(mass, -1.0), mass).amax(-1)
    mass_ok = (own_mass > other_mass) & present
    return {"peak": peak, "mass": mass_ok}
