"""Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``): rectify each channel's term first."""

from __future__ import annotations

import torch

from .. import engine
from .gradient_weighted import _Elementwise


class GradCAMElementWise(_Elementwise):
    """Element-wise Grad-CAM: L = ReLU( sum_c ReLU(g^c * A^c) ), with g^c = dy/dA^c.

    Unlike HiResCAM (sum_c g^c A^c, then ReLU) a channel whose term is negative at a position cannot cancel
    another's positive evidence there. On a signed layer the two differ; after a ReLU with all-positive
    gradients they agree.
    """

    name = "gradcam-elementwise"

    def _terms(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return torch.relu(cap.gradient(i) * cap.activations[i].unsqueeze(1))
