"""CAM (Zhou et al., CVPR 2016), for networks ending in global average pooling + a linear layer."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

from .. import engine
from ..layers import LayerSpec, resolve_layers
from .base import LayerMethod
from .contract import OPTIONS


class CAM(LayerMethod):
    """CAM: M_c = sum_k w_k^c A^k, with w^c the row of the final linear layer for class c.

    Needs no backward pass. On a GAP + linear network dy^c/dA^k_ij = w_k^c / Z, so Grad-CAM's
    alpha_k^c = w_k^c / Z: Grad-CAM equals CAM up to the positive constant 1/Z (Selvaraju et al., Sec. 3.1).
    The map is ReLU'd like Grad-CAM's before normalisation. ``fc="auto"`` takes the model's last
    ``nn.Linear`` whose ``in_features`` equals the layer's channel count.
    """

    name = "cam"
    needs_gradients = False
    supports = frozenset(OPTIONS) - {"counterfactual"}
    refusals = {
        "counterfactual": "CAM weights channels by the classifier's rows and needs no gradients, so there "
        "is nothing to negate. Use GradCAM(...)(x, counterfactual=True) for counterfactual maps"
    }

    def __init__(self, model: nn.Module, layer: LayerSpec = "auto", fc: Union[str, nn.Module] = "auto", **kw):
        super().__init__(model, layer, **kw)
        self._fc_spec = fc
        self._fc: Optional[nn.Linear] = None

    def _linear(self, channels: int) -> nn.Linear:
        if self._fc is not None:
            return self._fc
        fc: nn.Module
        if isinstance(self._fc_spec, str) and self._fc_spec == "auto":
            linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError(
                    "CAM needs a final nn.Linear after global average pooling; this model has none."
                )
            fc = linears[-1]
        else:
            fc = (
                self._fc_spec
                if isinstance(self._fc_spec, nn.Module)
                else resolve_layers(self.model, self._fc_spec)[0].module
            )
        if not isinstance(fc, nn.Linear):
            raise TypeError(
                f"fc must be an nn.Linear (the classifier after global average pooling); got {type(fc).__name__}."
            )
        if fc.in_features != channels:
            raise ValueError(
                f"CAM needs global average pooling of the layer straight into the linear layer, but the layer has "
                f"{channels} channels and the linear layer takes {fc.in_features} features. Use GradCAM for "
                "networks with other heads, or pass layer=/fc= that fit together."
            )
        self._fc = fc
        return fc

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        a = cap.activations[i]
        fc = self._linear(a.shape[1])
        ids = cap.targets
        if bool((ids < 0).any()):
            raise ValueError("CAM explains classes; a callable target has no linear-layer row. Use GradCAM.")
        return fc.weight.detach()[ids]
