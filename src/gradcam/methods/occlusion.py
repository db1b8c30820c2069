"""Occlusion sensitivity (Zeiler & Fergus, 2014): how much the score drops when a window is covered.

The reference for faithfulness in Selvaraju et al. (Sec. 4.2): a map is faithful when it ranks regions
like occlusion does. Every window position is one image in a batched forward pass (no gradients).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize
from ..targets import Target
from .contract import CallOptions, Method
from .scoring import base_scores, batch_scores

Size = Union[int, Tuple[int, int]]
Fill = Union[str, float, Sequence[float], torch.Tensor]


def _pair(v: Size, name: str) -> Tuple[int, int]:
    t = (
        (v, v)
        if isinstance(v, int) and not isinstance(v, bool)
        else tuple(v)
        if isinstance(v, (tuple, list))
        else None
    )
    if (
        t is None
        or len(t) != 2
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in t)
    ):
        raise ValueError(
            f"{name} must be a positive int or a pair (height, width) of positive ints; got {v!r}."
        )
    return t


def window_positions(size: int, window: int, stride: int) -> torch.Tensor:
    """Start offsets 0, s, 2s, ... of a window sliding over ``size`` pixels; the last window ends at the border.

    When (size - window) is not a multiple of the stride, a final window at size - window is added so
    that every pixel is covered.
    """
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return torch.tensor(starts, dtype=torch.long)


def _cover(starts: torch.Tensor, window: int, size: int, device) -> torch.Tensor:
    """(P, size) bool: position p covers pixel i."""
    i = torch.arange(size, device=device)
    s = starts.to(device).unsqueeze(1)
    return (i >= s) & (i < s + window)


class Occlusion(Method):
    """Occlusion maps: drop_p = y(x) - y(x with window p filled), for every window position p.

    ``raw`` (N, K, gh, gw): the signed score drop per window position (the window grid); ``maps``
    (N, K, H, W): each pixel's mean drop over the windows that cover it, ReLU'd and min-max normalised
    (regions whose occlusion lowers the score). ``counterfactual=True`` uses the score rise instead
    (raw = -drop). ``fill``: ``"mean"`` (each image's mean colour, the default), a number, or one value
    per channel. Default window 64 px, stride 32 (a quarter and an eighth of the CLI's 256 px short
    side): on real-photo mosaics at that scale the peak lands on the right photo for 32/32 class maps,
    with 49 forwards per 256 x 256 image (window 32: 30/32, 225 forwards; docs/results/occlusion_defaults.md).
    ``batch_size``: at most this many occluded images per forward pass, and at most
    ``max_batch_pixels`` input pixels per pass (default 2^20: 10 images of 256 x 384), so memory does not
    grow with the photo: the windows are processed in chunks. ``window``/``stride`` in pixels
    (``stride`` defaults to half the window). ``progress(done, total)``, when given, is called after every
    chunk with the number of occluded images scored so far. Callable targets must score each row of a
    batch on its own (they are called on batches of occluded images).
    """

    name = "occlusion"
    needs_gradients = False
    supports = frozenset({"counterfactual"})

    def __init__(
        self,
        model: nn.Module,
        window: Size = 64,
        stride: Optional[Size] = None,
        *,
        fill: Fill = "mean",
        batch_size: int = 64,
        eval_mode: bool = True,
        max_batch_pixels: int = 1 << 20,
        progress: Optional[Callable[[int, int], None]] = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        self.window = _pair(window, "window")
        self.stride = (
            _pair(stride, "stride") if stride is not None else tuple(max(1, w // 2) for w in self.window)
        )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(
                f"batch_size must be a positive int (occluded images per forward pass); got {batch_size!r}."
            )
        if isinstance(fill, str) and fill != "mean":
            raise ValueError(f"fill must be 'mean', a number, or one value per channel; got {fill!r}.")
        self.fill = fill
        self.batch_size = batch_size
        self.eval_mode = eval_mode
        self.max_batch_pixels = max_batch_pixels
        self.progress = progress

    def _fill(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if isinstance(self.fill, str):
            return x.mean(dim=(2, 3), keepdim=True)
        f = torch.as_tensor(self.fill, dtype=x.dtype, device=x.device)
        if f.dim() == 0:
            return f.reshape(1, 1, 1, 1).expand(n, c, 1, 1)
        if f.dim() != 1 or f.shape[0] != c:
            raise ValueError(
                f"fill has {f.numel()} values but the input has {c} channels; give one per channel."
            )
        return f.reshape(1, c, 1, 1).expand(n, c, 1, 1)

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        counterfactual = opts.counterfactual
        self._images_only(x)
        engine.check_input(self.model, x)
        n, c, h, w = x.shape
        (wh, ww), (sh, sw) = self.window, self.stride
        if wh > h or ww > w:
            raise ValueError(
                f"The occlusion window {wh}x{ww} is larger than the image {h}x{w}; use window <= image size."
            )
        ys, xs = window_positions(h, wh, sh), window_positions(w, ww, sw)
        ry, rx = _cover(ys, wh, h, x.device), _cover(xs, ww, w, x.device)
        gh, gw = ry.shape[0], rx.shape[0]
        positions = gh * gw
        x = x.detach()
        fill = self._fill(x)
        with engine.frozen(self.model, self.eval_mode) as model, torch.no_grad():
            output = engine.run_forward(model, x)
            base, ids = base_scores(output, target, top_k, n)
            drops = []
            total = n * positions
            chunk = max(1, min(self.batch_size, self.max_batch_pixels // (h * w)))
            for start in range(0, total, chunk):
                f = torch.arange(start, min(start + chunk, total), device=x.device)
                img, pos = f // positions, f % positions
                cover = ry[pos // gw].unsqueeze(-1) & rx[pos % gw].unsqueeze(-2)
                occluded = torch.where(cover.unsqueeze(1), fill[img], x[img])
                s = batch_scores(engine.run_forward(model, occluded), target, ids[img], f.shape[0])
                drops.append(base[img] - s)
                if self.progress is not None:
                    self.progress(int(f[-1]) + 1, total)
        drop = torch.cat(drops).reshape(n, positions, -1).permute(0, 2, 1).reshape(n, -1, gh, gw)
        if counterfactual:
            drop = -drop
        # Mean drop over the windows covering each pixel: (Ry^T D Rx) / (Ry^T 1 Rx).
        ryf, rxf = ry.to(drop.dtype), rx.to(drop.dtype)
        summed = torch.einsum("ih,nkij,jw->nkhw", ryf, drop, rxf)
        count = torch.outer(ryf.sum(0), rxf.sum(0))
        maps = normalize((summed / count).clamp_min(0))
        return Explanation(
            maps=maps,
            raw=drop,
            weights=None,
            targets=ids,
            scores=base.detach(),
            layer="input",
            method=self.name,
            interpolation="nearest",
            counterfactual=counterfactual,
            output=output,
        )
