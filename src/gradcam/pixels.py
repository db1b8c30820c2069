"""Pixel-space results (gradients, guided backpropagation, Guided Grad-CAM) and how to look at them.

A pixel-space method gives one attribution per input channel and pixel, ``pixels`` (N, K, C, H, W).
Two views of it:

- :func:`to_image`: a displayable RGB image in [0, 1], as in the Grad-CAM paper's figures (zero
  attribution is mid-grey, positive and negative evidence brighter and darker per colour channel);
- :func:`saliency`: one value per pixel (N, K, H, W), e.g. max_c |g_c| (Simonyan et al., 2014), which is
  what ``.maps`` holds (normalised to [0, 1]) so that pixel-space and CAM methods are used alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .explanation import Explanation, normalize

REDUCTIONS = ("abs-max", "abs-sum", "l2", "positive")
IMAGE_MODES = ("std", "symmetric")


def _check_pixels(pixels: torch.Tensor) -> None:
    if not isinstance(pixels, torch.Tensor) or pixels.dim() not in (5, 6):
        shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
        raise ValueError(
            f"Pixel-space results have shape (N, K, C, H, W); got {shape}. (Volumes: (N, K, C, D, H, W).)"
        )


def saliency(pixels: torch.Tensor, reduce: str = "abs-max") -> torch.Tensor:
    """One value per pixel, (N, K, H, W), from pixel-space attributions g (N, K, C, H, W).

    ``reduce``: ``"abs-max"`` s = max_c |g_c| (Simonyan et al.); ``"abs-sum"`` s = sum_c |g_c|;
    ``"l2"`` s = sqrt(sum_c g_c^2); ``"positive"`` s = sum_c max(g_c, 0) (positive evidence only).
    Not normalised; see :func:`gradcam.explanation.normalize`.
    """
    _check_pixels(pixels)
    if reduce == "abs-max":
        return pixels.abs().amax(dim=2)
    if reduce == "abs-sum":
        return pixels.abs().sum(dim=2)
    if reduce == "l2":
        return pixels.square().sum(dim=2).sqrt()
    if reduce == "positive":
        return pixels.clamp_min(0).sum(dim=2)
    raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}.")


def to_image(pixels: torch.Tensor, mode: str = "std", scale: float = 0.1, eps: float = 1e-12) -> torch.Tensor:
    """A displayable image (N, K, C, H, W) in [0, 1] from pixel-space attributions g (N, K, C, H, W).

    ``mode="std"`` (the deprocessing of the guided-backpropagation reference code, used for the
    paper's figures): img = clip(0.5 + scale * (g - mean g) / std g, 0, 1), statistics per (n, k) over
    C, H, W. ``mode="symmetric"``: img = 0.5 + 0.5 * g / max|g|, so that zero is exactly mid-grey and
    nothing is clipped. An all-zero attribution gives a flat grey image (never NaN). For display use
    ``img[n, k].permute(1, 2, 0)`` (H, W, C).
    """
    _check_pixels(pixels)
    flat = pixels.flatten(2).float()
    if mode == "std":
        mean = flat.mean(-1, keepdim=True)
        std = flat.std(-1, correction=0, keepdim=True)
        img = 0.5 + scale * (flat - mean) / (std + eps)
    elif mode == "symmetric":
        peak = flat.abs().amax(-1, keepdim=True)
        img = 0.5 + 0.5 * flat / torch.where(peak > 0, peak, torch.ones_like(peak))
    else:
        raise ValueError(f"mode must be one of {', '.join(IMAGE_MODES)}; got {mode!r}.")
    return img.clamp(0, 1).reshape(pixels.shape)


@dataclass(repr=False)
class PixelExplanation(Explanation):
    """An :class:`~gradcam.explanation.Explanation` whose evidence lives in pixel space.

    - ``pixels`` (N, K, C, H, W): the attribution per input channel and pixel (dy/dx, guided dy/dx,
      or guided dy/dx times the upsampled Grad-CAM map);
    - ``maps`` (N, K, H, W): ``normalize(saliency(pixels, reduce))``, in [0, 1];
    - ``raw``: the saliency before normalisation (N, K, H, W); for Guided Grad-CAM the Grad-CAM map at
      the layer's resolution (N, K, h, w), with ``weights`` its channel weights and ``cam`` the whole
      Grad-CAM :class:`Explanation`;
    - ``layer``: ``"input"`` for methods without a layer.
    """

    pixels: Optional[torch.Tensor] = None
    reduce: str = "abs-max"
    cam: Optional[Explanation] = None

    def image(self, mode: str = "std") -> torch.Tensor:
        """The attributions as displayable images (N, K, C, H, W) in [0, 1]; see :func:`to_image`."""
        return to_image(self._pixels(), mode)

    def saliency(self, reduce: Optional[str] = None) -> torch.Tensor:
        """A single-channel map (N, K, H, W) in [0, 1]: normalize(saliency(pixels, reduce))."""
        return normalize(saliency(self._pixels(), reduce or self.reduce))

    def _pixels(self) -> torch.Tensor:
        if self.pixels is None:
            raise ValueError("This PixelExplanation has no pixels (it was built without attributions).")
        return self.pixels

    def __repr__(self) -> str:
        shape = ", ".join(str(int(s)) for s in self._pixels().shape)
        return (
            f"PixelExplanation(method={self.method!r}, layer={self.layer!r}, pixels=({shape}), "
            f"targets={self.targets.tolist() if self.targets.numel() <= 10 else '...'})"
        )

    def _repr_html_(self) -> str:
        """Jupyter display: the attributions as images (:func:`to_image`) with class ids and scores."""
        from .display import explanation_html

        return explanation_html(self, pixels=True)


def pixel_explanation(
    pixels: torch.Tensor,
    cap,
    method: str,
    reduce: str = "abs-max",
    counterfactual: bool = False,
) -> PixelExplanation:
    """Wrap pixel-space attributions (N, K, C, H, W) of an engine capture as a :class:`PixelExplanation`."""
    raw = saliency(pixels, reduce)
    return PixelExplanation(
        maps=normalize(raw),
        raw=raw,
        weights=None,
        targets=cap.targets,
        scores=cap.scores,
        layer="input",
        method=method,
        interpolation="nearest",
        counterfactual=counterfactual,
        output=cap.output,
        pixels=pixels,
        reduce=reduce,
    )
