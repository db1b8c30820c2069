"""Two baselines that every honest table needs, as methods with the registry's interface.

- ``random-map``: a smooth random map (uniform noise on a coarse ``grid`` x ``grid`` lattice, upsampled
  bilinearly), different for every image and target, seeded; what any measure gives by chance.
- ``gaussian``: a centred isotropic Gaussian, exp(-d^2 / (2 (sigma * min(H, W))^2)), the same for every
  class: the centre bias of photographs, with no class information at all.

Both still run the model once (no backward) to resolve the targets, so their results carry the same
``targets`` and ``scores`` as any other method's.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize, upsample
from ..methods import registry


class _Baseline:
    name = "baseline"

    def __init__(self, model: nn.Module, layer=None, **kw):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        self.model = model

    def _maps(self, n: int, k: int, h: int, w: int, device) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, target=None, top_k: Optional[int] = None, **kw) -> Explanation:
        cap = engine.capture(self.model, x, [], target, top_k, gradients=False)
        n, k = cap.targets.shape
        maps = self._maps(n, k, x.shape[-2], x.shape[-1], x.device)
        return Explanation(
            maps=maps, raw=maps, weights=None, targets=cap.targets, scores=cap.scores, layer="",
            method=self.name, output=cap.output,
        )


class RandomMap(_Baseline):
    """Smooth uniform noise: U(0, 1) on a ``grid`` x ``grid`` lattice, bilinearly upsampled, normalised.

    Deterministic: the ``seed`` and a call counter seed a private generator.
    """

    name = "random-map"

    def __init__(self, model: nn.Module, layer=None, *, grid: int = 7, seed: int = 0, **kw):
        super().__init__(model, layer)
        self.grid = grid
        self.gen = torch.Generator().manual_seed(seed)

    def _maps(self, n, k, h, w, device):
        coarse = torch.rand(n, k, self.grid, self.grid, generator=self.gen).to(device)
        return normalize(upsample(coarse, (h, w), "bilinear"))


class CentredGaussian(_Baseline):
    """exp(-((y - cy)^2 + (x - cx)^2) / (2 s^2)) with s = ``sigma`` * min(H, W), for every target."""

    name = "gaussian"

    def __init__(self, model: nn.Module, layer=None, *, sigma: float = 0.25, **kw):
        super().__init__(model, layer)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (a fraction of the image size); got {sigma}.")
        self.sigma = sigma

    def _maps(self, n, k, h, w, device):
        ys = torch.arange(h, device=device, dtype=torch.float32).view(-1, 1) - (h - 1) / 2
        xs = torch.arange(w, device=device, dtype=torch.float32).view(1, -1) - (w - 1) / 2
        s = self.sigma * min(h, w)
        g = torch.exp(-(ys**2 + xs**2) / (2 * s * s))
        return normalize(g.expand(n, k, h, w).clone())


registry.register("random-map", RandomMap)  # "random" is RandomCAM (gradcam.methods.random_cam)
registry.register("gaussian", CentredGaussian)
