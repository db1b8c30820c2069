"""Shapley-CAM (Cai et al., ICLR 2025, "CAMs as Shapley value-based explainers"): Grad-CAM's weights with
the second-order term of a Taylor expansion of the score around the activation."""

from __future__ import annotations

import torch

from .. import engine
from .base import LayerMethod
from .contract import OPTIONS


class ShapleyCAM(LayerMethod):
    """Shapley-CAM: w^c = mean_ij ( g^c_ij - 1/2 (H A)^c_ij ),  L = ReLU( sum_c w^c A^c ).

    g = dy/dA and H A = d/dA (g . A) the Hessian of the score w.r.t. the layer's activation applied to the
    activation (a Hessian-vector product: one more backward per target). Cai et al. derive it as the
    second-order approximation of each position's Shapley value, phi = A (g - 1/2 H A); averaging over the
    positions gives the channel weight, as pytorch-grad-cam 1.5.7's ``ShapleyCAM``. Where the network is
    piecewise linear after the layer (ReLU, max-pooling, linear heads, the logit as score) H A = 0 and
    Shapley-CAM equals Grad-CAM; it differs behind smooth activations (SiLU, GELU, Tanh), attention or a
    softmax in the score. The gradients come from the engine with ``create_graph=True`` w.r.t. the tapped
    activation only (the parameters never require grad).
    """

    name = "shapleycam"
    supports = frozenset(OPTIONS)
    supports_differentiable = False

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        return super()._capture(x, target, top_k, counterfactual, hessian=True, **kw)

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        g = cap.gradient(i)
        hvp = cap.hessian_products[i]
        if hvp is None:
            hvp = torch.zeros_like(g)
        return (g - 0.5 * hvp).flatten(3).mean(-1)
