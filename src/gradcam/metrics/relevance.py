"""Localisation measures of a map against a ground-truth mask: maps (..., H, W) and bool masks of the
same shape (or broadcastable) -> one value per map (...). A map with no mass gives 0, never NaN.

- ``relevance_mass_accuracy`` (Arras et al., Information Fusion 2022, "CLEVR-XAI"): the share of the
  relevance inside the mask, R_in / R_total = sum(m * 1_mask) / sum(m) (raw values, as Quantus).
- ``relevance_rank_accuracy`` (Arras et al. 2022): with K = |mask|, the share of the K highest-ranked
  pixels that lie in the mask, |top_K(m) n mask| / K (ties broken by position, first pixel first).
- ``energy_pointing`` (Wang et al., CVPRW 2020, "Score-CAM", Sec. 5.3): the energy-based pointing game,
  sum(m+ * 1_mask) / sum(m+) with m+ = max(m, 0).
- ``focus`` (Arias-Duart et al., FUZZ-IEEE 2022, "Focus! Rating XAI methods and finding biases"): on a
  mosaic whose tiles of the target class form ``masks``, the share of the positive relevance in those
  tiles, sum(m+ * 1_mask) / sum(m+) (as Quantus' ``Focus``; 0.5 is chance on a 2-of-4 mosaic).

TorchRay's pointing game (``pointing_game_torchray``) lives in :mod:`gradcam.metrics.pointing`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .pointing import pointing_game_torchray  # noqa: F401 - re-exported (it lived here)


def _check(maps: torch.Tensor, masks: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    if maps.dim() < 2:
        raise ValueError(f"maps must have shape (..., H, W); got {tuple(maps.shape)}.")
    masks = torch.as_tensor(masks, device=maps.device)
    if masks.dtype != torch.bool:
        raise TypeError(
            f"masks must be bool (True inside the ground truth); got {masks.dtype}. Use masks > 0."
        )
    try:
        masks = masks.expand_as(maps)
    except RuntimeError:
        raise ValueError(
            f"masks {tuple(masks.shape)} must have the maps' shape {tuple(maps.shape)} (or broadcast to it)."
        ) from None
    return maps.detach().double(), masks


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(
        den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(num)
    ).float()


def relevance_mass_accuracy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's relevance inside its mask, sum(m * 1_mask) / sum(m) (Arras et al. 2022)."""
    m, k = _check(maps, masks)
    return _ratio((m * k).flatten(-2).sum(-1), m.flatten(-2).sum(-1))


def relevance_rank_accuracy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of the K = |mask| top-ranked pixels of each map that fall inside the mask (Arras et al. 2022);
    0 for an empty mask."""
    m, k = _check(maps, masks)
    flat, kf = m.flatten(-2), k.flatten(-2)
    order = torch.sort(flat, dim=-1, descending=True, stable=True).indices
    size = kf.sum(-1, keepdim=True)
    rank = torch.arange(flat.shape[-1], device=flat.device)
    hits = (kf.gather(-1, order) & (rank < size)).sum(-1)
    return _ratio(hits.double(), size[..., 0].double())


def energy_pointing(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game (Wang et al. 2020): sum(m+ * 1_mask) / sum(m+), m+ = max(m, 0)."""
    m, k = _check(maps, masks)
    m = m.clamp_min(0)
    return _ratio((m * k).flatten(-2).sum(-1), m.flatten(-2).sum(-1))


def focus(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Focus on mosaics (Arias-Duart et al. 2022): the positive relevance in the target class's tiles
    (``masks``) over all positive relevance, sum(m+ * 1_mask) / sum(m+)."""
    return energy_pointing(maps, masks)


def union_masks(
    masks: torch.Tensor, classes: torch.Tensor, num_classes: Optional[int] = None
) -> torch.Tensor:
    """Per image and class, the union of the object masks of that class: masks (N, J, H, W) bool with
    classes (N, J) (-1 = padding) -> (N, num_classes, H, W)."""
    classes = torch.as_tensor(classes, device=masks.device).long()
    if masks.shape[:2] != classes.shape:
        raise ValueError(
            f"masks (N, J, H, W) need classes (N, J); got {tuple(masks.shape)} and {tuple(classes.shape)}."
        )
    c = int(num_classes if num_classes is not None else classes.max().item() + 1)
    onehot = (classes[..., None] == torch.arange(c, device=masks.device)) & (
        classes[..., None] >= 0
    )  # (N, J, C)
    return torch.einsum("njc,njhw->nchw", onehot.float(), masks.float()) > 0
