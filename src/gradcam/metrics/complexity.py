"""Complexity of a map, from the map alone: ``sparseness`` (Gini index) and ``complexity`` (entropy).

Both follow Quantus (Hedström et al. 2023) and take maps (..., H, W), returning one value per map (...).
Values are taken as absolute values (Quantus' ``abs=True`` default for both); a flat zero map gives 0.

- Sparseness (Chalasani et al., ICML 2020, "Concise explanations of neural networks using adversarial
  training"): the Gini index of the map's values, sorted ascending a_1 <= ... <= a_n,
  G = sum_i (2 i - n - 1) a_i / (n sum_i a_i), in [0, 1 - 1/n]: 0 for a uniform map, (n - 1)/n for a map
  with all its mass on one pixel. Higher = sparser.
- Complexity (Bhatt et al., IJCAI 2020, "Evaluating and aggregating feature-based model explanations"):
  the Shannon entropy (natural log) of the map normalised to sum 1, p = |m| / sum |m|,
  H = -sum_i p_i log p_i (0 log 0 = 0), in [0, log n]. Lower = simpler.
"""

from __future__ import annotations

import torch


def _flat_abs(maps: torch.Tensor) -> torch.Tensor:
    _check(maps)
    return maps.detach().flatten(-2).abs().double()


def _check(maps: torch.Tensor) -> None:
    if maps.dim() < 2:
        raise ValueError(f"maps must have shape (..., H, W); got {tuple(maps.shape)}.")


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of each map (..., H, W) -> (...): sum_i (2i - n - 1) a_i / (n sum a) over the sorted
    absolute values a_1 <= ... <= a_n (Chalasani et al. 2020, as Quantus' ``Sparseness``); 0 for a flat map."""
    _check(maps)
    a = torch.sort(maps.detach().flatten(-2).abs().float(), dim=-1).values.double()  # sort in float32: faster
    n = a.shape[-1]
    i = torch.arange(1, n + 1, dtype=a.dtype, device=a.device)
    total = a.sum(-1)
    g = ((2 * i - n - 1) * a).sum(-1) / (n * total.clamp_min(1e-300))
    return torch.where(total > 0, g, torch.zeros_like(g)).float()


def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy of each map (..., H, W) normalised to sum 1 -> (...): -sum p log p with p = |m| / sum |m|
    (Bhatt et al. 2020, as Quantus' ``Complexity``, natural log); 0 for a flat zero map."""
    a = _flat_abs(maps)
    total = a.sum(-1, keepdim=True)
    p = a / total.clamp_min(1e-300)
    h = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)
    return torch.where(total[..., 0] > 0, h, torch.zeros_like(h)).float()
