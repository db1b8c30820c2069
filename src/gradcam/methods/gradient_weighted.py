"""Gradient-weighted members of the CAM family: Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM.

(Formerly ``gradcam.methods.gradients``; that path still works, deprecated.)

Notation: A^c (N, C, *spatial) the layer's activations, g^c = dy/dA^c (for each target y), sums over
"ij" run over all spatial positions (any number of spatial dimensions).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from .. import engine
from ..explanation import Explanation, normalize, upsample
from .base import LayerMethod


def _spatial(t: torch.Tensor, first: int) -> Tuple[int, ...]:
    return tuple(range(first, t.dim()))


class GradCAMPlusPlus(LayerMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), the closed form for an exponential output Y = exp(y).

    alpha_ij^c = g_ij^2 / (2 g_ij^2 + sum_ab A^c_ab g_ij^3)   (0 where the denominator is 0),
    w^c = sum_ij alpha_ij^c ReLU(g_ij^c),   L = ReLU( sum_c w^c A^c ),
    with g = dy/dA for the score y before softmax. This is the paper's Eq. 19 for Y = exp(y) with the
    positive factor exp(y) dropped (it cancels in alpha and only scales w), as pytorch-grad-cam uses it.
    """

    name = "gradcam++"

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        g = cap.gradient(i)
        a = cap.activations[i]
        g2 = g * g
        sum_a = a.sum(dim=_spatial(a, 2)).reshape(a.shape[0], 1, a.shape[1], *([1] * (a.dim() - 2)))
        denom = 2 * g2 + sum_a * g2 * g
        ok = denom != 0
        alpha = torch.where(ok, g2 / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(g))
        return (alpha * torch.relu(g)).sum(dim=_spatial(g, 3))


class XGradCAM(LayerMethod):
    """XGrad-CAM (Fu et al., BMVC 2020): w^c = sum_ij A^c_ij g^c_ij / sum_ij A^c_ij (0 where sum A^c = 0);
    L = ReLU( sum_c w^c A^c )."""

    name = "xgradcam"

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        g = cap.gradient(i)
        a = cap.activations[i]
        dims = _spatial(a, 2)
        num = (g * a.unsqueeze(1)).sum(dim=_spatial(g, 3))
        den = a.sum(dim=dims).unsqueeze(1)
        ok = den != 0
        return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


class _Elementwise(LayerMethod):
    """A method whose map is sum_c of element-wise terms T^c (N, K, C, *spatial); no channel weights."""

    def _terms(self, cap: engine.Capture, i: int) -> torch.Tensor:
        raise NotImplementedError

    def _channel_maps(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self._terms(cap, i), None

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return self._terms(cap, i).sum(dim=2), None


class HiResCAM(_Elementwise):
    """HiResCAM (Draelos & Carin 2020): L = ReLU( sum_c g^c * A^c ), element-wise, no spatial averaging.

    On a global-average-pooling + linear head g^c is constant over positions, so HiResCAM = Grad-CAM.
    """

    name = "hirescam"

    def _terms(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return cap.gradient(i) * cap.activations[i].unsqueeze(1)


class LayerCAM(_Elementwise):
    """LayerCAM (Jiang et al., TIP 2021): L = ReLU( sum_c ReLU(g^c) * A^c ), element-wise.

    Several layers are fused as in the paper (Eq. 9): each layer's map scaled to tanh(gamma * L / max L)
    with ``gamma`` = 2, upsampled to the input, then the element-wise maximum over layers, normalised.
    """

    name = "layercam"
    gamma = 2.0

    def _terms(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return torch.relu(cap.gradient(i)) * cap.activations[i].unsqueeze(1)

    def _fuse(self, per_layer: Dict[str, Explanation], size) -> torch.Tensor:
        scaled = []
        for e in per_layer.values():
            peak = e.raw.flatten(2).amax(-1).reshape(*e.raw.shape[:2], *([1] * (e.raw.dim() - 2)))
            r = e.raw / torch.where(peak > 0, peak, torch.ones_like(peak))
            scaled.append(upsample(torch.tanh(self.gamma * r), size, self.interpolation))
        return normalize(torch.stack(scaled).amax(0))
