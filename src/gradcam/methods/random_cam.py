"""RandomCAM: the seeded baseline every comparison table carries."""

from __future__ import annotations

import torch
from torch import nn

from .. import engine
from .base import LayerMethod
from .contract import OPTIONS


class RandomCAM(LayerMethod):
    """RandomCAM: L = ReLU( sum_c w^c A^c ) with w^c ~ U(-1, 1), drawn for every image and target.

    What a map built from the layer's own activations scores by chance (pytorch-grad-cam's RandomCAM).
    Deterministic: each call draws from a generator seeded with ``seed`` (the same input gives the same
    maps; another ``seed`` gives others). Needs no backward pass.
    """

    name = "random"
    needs_gradients = False
    supports = frozenset(OPTIONS) - {"counterfactual"}

    def __init__(self, model: nn.Module, layer="auto", *, seed: int = 0, **kw):
        super().__init__(model, layer, **kw)
        self.seed = int(seed)

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        a = cap.activations[i]
        n, k = cap.targets.shape
        gen = torch.Generator().manual_seed(self.seed + 7919 * i)
        return (torch.rand(n, k, a.shape[1], generator=gen, dtype=torch.float64) * 2 - 1).to(
            a.device, a.dtype
        )
