"""Two baselines that every honest table needs, as methods with the method contract.

- ``random-map``: a smooth random map (uniform noise on a coarse ``grid`` x ``grid`` lattice, upsampled
  bilinearly), different for every image and target, seeded; what any measure gives by chance.
- ``gaussian``: a centred isotropic Gaussian, exp(-d^2 / (2 (sigma * min(H, W))^2)), the same for every
  class: the centre bias of photographs, with no class information at all.

Both take volumes (N, C, D, H, W) too: a ``grid``³ lattice upsampled trilinearly, and a Gaussian centred in
the volume with s = sigma * min(D, H, W).

Both still run the model once (no backward) to resolve the targets, so their results carry the same
``targets`` and ``scores`` as any other method's.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize, upsample
from ..targets import Target
from .contract import CallOptions, Method


class _Baseline(Method):
    """A map that does not look at the model's reasoning; the model runs once (no backward) for the targets."""

    name = "baseline"
    needs_gradients = False
    supports = frozenset({"forward_kwargs"})
    refusals = {
        "counterfactual": "a baseline map does not depend on the score, so there is nothing to negate"
    }

    def __init__(
        self,
        model: nn.Module,
        layer=None,
        *,
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        self.eval_mode = eval_mode

    def _maps(self, n: int, k: int, size: Tuple[int, ...], device) -> torch.Tensor:
        """(N, K, *size) maps in [0, 1]; ``size`` is (H, W) for images, (D, H, W) for volumes."""
        raise NotImplementedError

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        cap = engine.capture(
            self.model,
            x,
            [],
            target,
            top_k,
            gradients=False,
            eval_mode=self.eval_mode,
            forward_kwargs=opts.forward_kwargs or None,
        )
        n, k = cap.targets.shape
        maps = self._maps(n, k, tuple(x.shape[2:]) if x.dim() == 5 else tuple(x.shape[-2:]), x.device)
        return Explanation(
            maps=maps,
            raw=maps,
            weights=None,
            targets=cap.targets,
            scores=cap.scores,
            layer="",
            method=self.name,
            output=cap.output,
        )


class RandomMap(_Baseline):
    """Smooth uniform noise: U(0, 1) on a ``grid`` x ``grid`` lattice, bilinearly upsampled, normalised.

    Deterministic: the ``seed`` and a call counter seed a private generator.
    """

    name = "random-map"

    def __init__(self, model: nn.Module, layer=None, *, grid: int = 7, seed: int = 0, **kw):
        super().__init__(model, layer, **kw)
        self.grid = grid
        self.gen = torch.Generator().manual_seed(seed)

    def _maps(self, n, k, size, device):
        coarse = torch.rand(n, k, *(self.grid,) * len(size), generator=self.gen).to(device)
        return normalize(upsample(coarse, size, "bilinear"), dims=len(size))


class CentredGaussian(_Baseline):
    """exp(-((y - cy)^2 + (x - cx)^2) / (2 s^2)) with s = ``sigma`` * min(H, W), for every target (volumes:
    (z - cz)^2 added, s = ``sigma`` * min(D, H, W))."""

    name = "gaussian"

    def __init__(self, model: nn.Module, layer=None, *, sigma: float = 0.25, **kw):
        super().__init__(model, layer, **kw)
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (a fraction of the image size); got {sigma}.")
        self.sigma = sigma

    def _maps(self, n, k, size, device):
        d2 = torch.zeros(size, device=device)
        for axis, length in enumerate(size):
            shape = [1] * len(size)
            shape[axis] = length
            c = torch.arange(length, device=device, dtype=torch.float32) - (length - 1) / 2
            d2 = d2 + (c**2).view(shape)
        s = self.sigma * min(size)
        g = torch.exp(-d2 / (2 * s * s))
        return normalize(g.expand(n, k, *size).clone(), dims=len(size))
