"""Grad-CAM (Selvaraju et al., ICCV 2017)."""

from __future__ import annotations

import torch

from .. import engine
from .base import LayerMethod


class GradCAM(LayerMethod):
    """Grad-CAM: alpha_k^c = (1 / Z) sum_ij dy^c / dA^k_ij;  L^c = ReLU( sum_k alpha_k^c A^k ).

    y^c is the class score before softmax (or any differentiable scalar given as a callable target).
    ``counterfactual=True`` uses -dy^c/dA: regions whose removal would raise y^c.
    """

    name = "gradcam"

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        g = cap.gradient(i)
        return g.mean(dim=tuple(range(3, g.dim())))  # every spatial axis: (h, w), or (d, h, w) for volumes
