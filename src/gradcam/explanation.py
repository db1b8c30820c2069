"""The result type shared by every method, and the map post-processing (upsample, normalise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area")


def normalize(maps: torch.Tensor, eps: float = 1e-6, dims: int = 2) -> torch.Tensor:
    """Min-max normalise each map over its last ``dims`` dimensions (3 for volumes) to [0, 1].

    m' = (m - min m) / (max m - min m); a flat map (range <= eps * max|m|, or exactly 0) becomes all
    zeros, never NaN.
    """
    flat = maps.flatten(-dims)
    lo = flat.amin(-1, keepdim=True)
    hi = flat.amax(-1, keepdim=True)
    rng = hi - lo
    ok = (rng > eps * torch.maximum(hi.abs(), lo.abs())) & (rng > 0) & torch.isfinite(rng)
    # (m - lo) / range where the map varies (each value <= 1, finite), then zeros where it is flat.
    out = (flat - lo).div_(torch.where(ok, rng, torch.ones_like(rng))).masked_fill_(~ok, 0.0)
    return out.reshape(maps.shape)


def upsample(maps: torch.Tensor, size: Tuple[int, ...], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize (N, K, h, w) maps to ``size`` with ``interpolation`` (bilinear, nearest, bicubic, area).

    Bicubic can overshoot below zero; results are clamped at 0 so that a ReLU'd map stays non-negative.
    Volumes (N, K, d, h, w) with a 3-D ``size``: "bilinear" means trilinear (also "nearest", "area").
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")
    if maps.dim() == 5:
        from .volumes import upsample_volume

        return upsample_volume(maps, size, interpolation)
    n, k, h, w = maps.shape
    flat = maps.reshape(n * k, 1, h, w)
    if (h, w) == tuple(size):
        out = flat
    else:
        kwargs = {"align_corners": False} if interpolation in ("bilinear", "bicubic") else {}
        out = F.interpolate(flat, size=tuple(size), mode=interpolation, **kwargs)
        if interpolation == "bicubic":
            out = out.clamp_min(0)
    return out.reshape(n, k, *out.shape[-2:])


@dataclass
class Explanation:
    """An explanation of a batch: K maps per image.

    - ``maps`` (N, K, H, W): at the input's resolution, each min-max normalised to [0, 1];
    - ``raw`` (N, K, h, w): at the layer's resolution, after the ReLU, before normalisation;
    - ``weights`` (N, K, C): the channel weights alpha_k^c (``None`` for methods without them);
    - ``targets`` (N, K): class ids (-1 where the target was a callable); ``scores`` (N, K): y^c;
    - ``layer``: the dotted name of the layer used (several layers: names joined by ``+``);
    - ``output``: the model's output for the batch (detached), e.g. for probabilities;
    - ``per_layer``: with several layers, each layer's own :class:`Explanation`.
    """

    maps: torch.Tensor
    raw: torch.Tensor
    weights: Optional[torch.Tensor]
    targets: torch.Tensor
    scores: torch.Tensor
    layer: str
    method: str = "gradcam"
    interpolation: str = "bilinear"
    counterfactual: bool = False
    output: Any = None
    per_layer: Dict[str, Explanation] = field(default_factory=dict)

    def probabilities(self) -> torch.Tensor:
        """Softmax of the model's class scores (N, num_classes); needs a tensor-of-logits output."""
        from .targets import logits_of

        return logits_of(self.output).float().softmax(dim=1)

    @property
    def spatial_dims(self) -> int:
        """2 for image maps (N, K, H, W), 3 for volume maps (N, K, D, H, W)."""
        return self.maps.dim() - 2

    def peaks(self) -> torch.Tensor:
        """(N, K, 2) integer ``(x, y)`` of each map's maximum (the first in row-major order); for volumes
        (N, K, 3) ``(x, y, z)``. The convention of every peak the library returns (:mod:`gradcam.regions`)."""
        from .regions import peaks

        return peaks(self.maps, dims=self.spatial_dims)

    def boxes(self, threshold: Optional[float] = None, rule: str = "largest") -> torch.Tensor:
        """(N, K, 4) integer boxes ``(x0, y0, x1, y1)`` (exclusive ends) around each map's evidence; for volumes
        (N, K, 6) ``(x0, y0, z0, x1, y1, z1)``. A flat map's box is all zeros.

        Foreground: m >= ``threshold`` * max(m) (default :data:`gradcam.regions.BOX_THRESHOLD`, 0.45, as
        ``gradcam explain``); ``rule``: ``"largest"`` segment (the Grad-CAM paper's), the segment holding
        the ``"peak"``, or ``"all"`` segments (see :func:`gradcam.regions.map_boxes`). In the maps' pixels.
        """
        from .regions import BOX_THRESHOLD, map_boxes

        t = BOX_THRESHOLD if threshold is None else threshold
        return map_boxes(self.maps.detach().float().cpu(), t, rule, dims=self.spatial_dims)

    def overlay(self, image: Any, n: int = 0, k: int = 0, alpha: float = 0.5, colormap: str = "jet") -> Any:
        """Map ``k`` of image ``n`` blended on ``image`` (a PIL image, path or array; see :func:`gradcam.overlay`).

        For volumes ``image`` is the input volume (D, H, W) or (C, D, H, W) and the result shows slices
        side by side (:func:`gradcam.image.overlay_slices`, always including the slice through the peak).
        """
        from .image import overlay, overlay_slices

        m = self.maps[n, k].detach().float().cpu()
        if self.spatial_dims == 3:
            return overlay_slices(image, m, alpha=alpha, colormap=colormap)
        return overlay(image, m, alpha=alpha, colormap=colormap)

    def __repr__(self) -> str:
        shape = ", ".join(str(int(s)) for s in self.maps.shape)
        return (
            f"{type(self).__name__}(method={self.method!r}, layer={self.layer!r}, maps=({shape}), "
            f"targets={self.targets.tolist() if self.targets.numel() <= 10 else '...'})"
        )

    def _repr_html_(self) -> str:
        """Jupyter display: the maps in a small grid with class ids and scores."""
        from .display import explanation_html

        return explanation_html(self)
