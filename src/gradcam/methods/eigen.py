"""Eigen-CAM and Eigen-Grad-CAM (Muhammad & Yeasin, IJCNN 2020): the first principal component."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .. import engine
from .base import LayerMethod
from .contract import OPTIONS
from .smoothing import first_component


class EigenCAM(LayerMethod):
    """Eigen-CAM: L = ReLU( A_c v_1 ), the projection of the activations (positions x channels, centred
    over positions) on their first principal component v_1; the sign is fixed so that L correlates
    positively with sum_c A^c (see :func:`gradcam.methods.smoothing.first_component`).

    Needs no backward pass and does not depend on the target class: every target gets the same map.
    """

    name = "eigencam"
    needs_gradients = False
    supports = frozenset(OPTIONS) - {"counterfactual"}

    def _channel_maps(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        a = cap.activations[i].unsqueeze(1)
        return a.expand(a.shape[0], cap.targets.shape[1], *a.shape[2:]), None

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        m = first_component(cap.activations[i].unsqueeze(1))
        return m.expand(m.shape[0], cap.targets.shape[1], *m.shape[2:]).contiguous(), None


class EigenGradCAM(LayerMethod):
    """Eigen-Grad-CAM: L = ReLU( T_c v_1 ) for the class-specific terms T^c = dy/dA^c * A^c (positions x
    channels, centred), v_1 their first principal component, the sign such that L correlates positively
    with sum_c T^c (the HiResCAM map): it points at the target.
    """

    name = "eigengradcam"

    def _channel_maps(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return cap.gradient(i) * cap.activations[i].unsqueeze(1), None

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return first_component(self._channel_maps(cap, i)[0]), None
