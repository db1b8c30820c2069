"""Faithfulness: does the model's output follow what the map says matters?

- Deletion / insertion (Petsiuk et al., BMVC 2018, "RISE"): pixels are removed from the image (set
  to a baseline) or added to a blurred copy in the order of the map, most important first, in ``steps``
  equal steps; the class probability is recorded after each step and the area under the curve
  (trapezoid over the removed fraction in [0, 1]) is reported. Good maps: low deletion AUC, high
  insertion AUC. The steps of all images go through the model in batches of ``max_batch`` inputs.
- Average drop / increase in confidence (Chattopadhay et al., WACV 2018, "Grad-CAM++"): the image
  is masked by the map, E = b + m * (x - b); drop = mean(max(0, Y - O) / Y), increase = mean(O > Y),
  with Y the class probability on x and O on E.
- Rank correlation with occlusion maps (Selvaraju et al., Sec. 5.2): Spearman's rho between a map and
  the occlusion map of the same class, averaged over images.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import check_input, frozen
from ..targets import logits_of


def gaussian_blur(x: torch.Tensor, sigma: float = 5.0, kernel_size: int = 11) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) images (reflect padding); RISE's insertion start uses
    kernel 11, sigma 5."""
    if kernel_size % 2 != 1 or sigma <= 0:
        raise ValueError(f"kernel_size must be odd and sigma > 0; got {kernel_size}, {sigma}.")
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    pad_mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=pad_mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=pad_mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _check(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target
) -> Tuple[torch.Tensor, torch.Tensor]:
    check_input(model, x)
    n = x.shape[0]
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.shape != (n, *x.shape[-2:]):
        raise ValueError(
            f"maps must have shape (N, H, W) = {(n, *x.shape[-2:])} (one map per image, at the input's size); "
            f"got {tuple(maps.shape)}. Pick one target per image, e.g. explanation.maps[:, 0]."
        )
    t = torch.as_tensor(target, device=x.device).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be one class id, or one per image ({n}); got {t.numel()}.")
    return maps, t


MAX_BATCH = 64
"""The default ``max_batch`` of the metrics that run the model: inputs per forward pass. Every perturbed input
of every image goes into one stream, cut into forwards of exactly ``max_batch`` inputs (the last one
shorter), built only when their forward runs: memory is about ``max_batch`` inputs and their activations.
On a GPU raise it to the device's throughput (e.g. 256 at 224 x 224); results do not depend on it."""


def check_max_batch(max_batch: int, batch_size: Optional[int] = None) -> int:
    """``max_batch`` as a positive int; ``batch_size`` (its old name) replaces it with a DeprecationWarning."""
    if batch_size is not None:
        warnings.warn(
            "batch_size is renamed max_batch (inputs per forward pass) in the metrics; the old name will be removed.",
            DeprecationWarning,
            stacklevel=3,
        )
        max_batch = batch_size
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(
            f"max_batch must be a positive number of inputs per forward pass; got {max_batch!r}."
        )
    return max_batch


Make = Callable[[torch.Tensor], torch.Tensor]
Score = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def stream(model: nn.Module, total: int, make: Make, score: Score, max_batch: int, device) -> torch.Tensor:
    """``score(logits, f)`` of the inputs ``make(f)`` for the flat indices f = 0..total-1 (image-major: f = i R + r
    for image i and perturbation r), in forwards of ``max_batch`` inputs: (total, ...)."""
    out = []
    for s in range(0, total, max_batch):
        f = torch.arange(s, min(s + max_batch, total), device=device)
        out.append(score(logits_of(model(make(f))), f))
    return torch.cat(out)


def _probability_of(target: torch.Tensor) -> Score:
    """The score ``softmax(logits)[target[f]]`` of the rows f."""
    return lambda logits, f: logits.softmax(1).gather(1, target[f, None])[:, 0]


def _probabilities(
    model: nn.Module, images: torch.Tensor, target: torch.Tensor, max_batch: int
) -> torch.Tensor:
    return stream(
        model, images.shape[0], lambda f: images[f], _probability_of(target), max_batch, images.device
    )


def pixel_order(maps: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel (N, H, W) in the order of its map value, highest first (ties by position)."""
    flat = maps.flatten(1)
    idx = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(idx)
    rank.scatter_(1, idx, torch.arange(flat.shape[1], device=maps.device).expand_as(idx))
    return rank.view_as(maps)


def perturbation_curve(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    mode: str = "deletion",
    steps: int = 16,
    baseline: Optional[torch.Tensor] = None,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Class probability after each of ``steps`` deletion or insertion steps: (N, steps + 1).

    Step s changes the ceil(s * HW / steps) top-ranked pixels (all channels). Deletion goes from x to
    ``baseline`` (default zeros); insertion goes from ``baseline`` (default: x blurred, sigma 5) to x.
    The N (steps + 1) inputs go ``max_batch`` per forward pass (see :data:`MAX_BATCH`; ``batch_size``: its
    old name). The model runs in eval mode and is restored afterwards.
    """
    max_batch = check_max_batch(max_batch, batch_size)
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion'; got {mode!r}.")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}.")
    maps, t = _check(model, x, maps, target)
    n, c, h, w = x.shape
    if baseline is None:
        baseline = torch.zeros_like(x) if mode == "deletion" else gaussian_blur(x)
    baseline = baseline.expand_as(x)
    src, dst = (x, baseline) if mode == "deletion" else (baseline, x)
    rank = pixel_order(maps)  # (N, H, W)
    counts = torch.tensor([math.ceil(s * h * w / steps) for s in range(steps + 1)], device=x.device)
    r = steps + 1

    def make(f: torch.Tensor) -> torch.Tensor:  # input f = image i, step s (f = i r + s)
        i = f // r
        changed = rank[i] < counts[f % r].view(-1, 1, 1)  # (B, H, W)
        return torch.where(changed[:, None], dst[i], src[i])

    with frozen(model) as model:
        probs = stream(model, n * r, make, _probability_of(t.repeat_interleave(r)), max_batch, x.device)
    return probs.view(n, r)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under curves (..., S + 1) sampled at S + 1 equally spaced points of [0, 1] (trapezoid rule)."""
    s = curve.shape[-1] - 1
    if s < 1:
        raise ValueError("A curve needs at least two points.")
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / (2 * s)


def deletion(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target, steps: int = 16, **kw
) -> torch.Tensor:
    """Deletion AUC per image (N,): area under the probability curve as top-ranked pixels are removed
    (lower is better). Keywords as :func:`perturbation_curve`."""
    return auc(perturbation_curve(model, x, maps, target, "deletion", steps, **kw))


def insertion(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, target, steps: int = 16, **kw
) -> torch.Tensor:
    """Insertion AUC per image (N,): area under the probability curve as top-ranked pixels are put back
    into a blurred image (higher is better). Keywords as :func:`perturbation_curve`."""
    return auc(perturbation_curve(model, x, maps, target, "insertion", steps, **kw))


def average_drop_increase(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    baseline: Optional[torch.Tensor] = None,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-image drop max(0, Y - O) / Y and increase 1[O > Y] (N,) (Chattopadhay et al.); their means
    are the "average drop" and "increase in confidence" (often reported x 100).

    O is the probability on E = b + m * (x - b) with maps m in [0, 1] and baseline b (default zeros).
    ``max_batch``: inputs per forward pass (:data:`MAX_BATCH`; ``batch_size``: its old name).
    """
    max_batch = check_max_batch(max_batch, batch_size)
    maps, t = _check(model, x, maps, target)
    b = torch.zeros_like(x) if baseline is None else baseline.expand_as(x)
    with frozen(model) as model:
        both = torch.cat([x, b + maps[:, None] * (x - b)])
        p = _probabilities(model, both, torch.cat([t, t]), max_batch)
    y, o = p[: x.shape[0]], p[x.shape[0] :]
    drop = (y - o).clamp_min(0) / y.clamp_min(1e-12)
    return drop, (o > y).float()


def rankdata(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based) along the last dimension with ties given their average rank (as scipy's
    ``rankdata``), batched over the leading dimensions."""
    flat = values.reshape(-1, values.shape[-1])
    b, n = flat.shape
    v, idx = torch.sort(flat, dim=1, stable=True)
    new = torch.ones_like(v, dtype=torch.bool)
    new[:, 1:] = v[:, 1:] != v[:, :-1]
    group = new.long().cumsum(1) - 1 + torch.arange(b, device=v.device).view(-1, 1) * n  # unique per row
    pos = torch.arange(1, n + 1, dtype=torch.float64, device=v.device).expand(b, n)
    total = torch.zeros(b * n, dtype=torch.float64, device=v.device).scatter_add_(
        0, group.flatten(), pos.flatten()
    )
    size = torch.zeros(b * n, dtype=torch.float64, device=v.device).scatter_add_(
        0, group.flatten(), torch.ones(b * n, dtype=torch.float64, device=v.device)
    )
    avg = (total / size.clamp_min(1))[group]
    ranks = torch.empty_like(avg).scatter_(1, idx, avg)
    return ranks.reshape(values.shape)


def spearman(a: torch.Tensor, b: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Spearman's rank correlation between a and b over their last ``dims`` dimensions (maps: 2).

    rho = Pearson correlation of the average ranks; 0 where either is constant (never NaN).
    """
    if a.shape != b.shape:
        raise ValueError(
            f"Maps to correlate must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if dims < 1 or dims > a.dim():
        raise ValueError(f"dims must be in 1..{a.dim()}; got {dims}.")
    a, b = a.flatten(-dims), b.flatten(-dims)
    ra, rb = rankdata(a), rankdata(b)
    ra = ra - ra.mean(-1, keepdim=True)
    rb = rb - rb.mean(-1, keepdim=True)
    den = (ra.pow(2).sum(-1) * rb.pow(2).sum(-1)).sqrt()
    num = (ra * rb).sum(-1)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num)).float()


def rank_correlation(
    maps: torch.Tensor, reference: torch.Tensor, size: Optional[Tuple[int, int]] = None
) -> torch.Tensor:
    """Spearman correlation of each map (..., H, W) with a reference map (e.g. occlusion), per map.

    With ``size``, both are first average-pooled to that grid (the occlusion map's own resolution), so
    that interpolation does not add ties or fake precision.
    """
    if maps.shape != reference.shape:
        raise ValueError(
            f"maps and reference must have the same shape; got {tuple(maps.shape)} and {tuple(reference.shape)}."
        )
    if size is not None:
        lead = maps.shape[:-2]
        maps = F.adaptive_avg_pool2d(maps.reshape(-1, 1, *maps.shape[-2:]).float(), size).reshape(
            *lead, *size
        )
        reference = F.adaptive_avg_pool2d(
            reference.reshape(-1, 1, *reference.shape[-2:]).float(), size
        ).reshape(*lead, *size)
    return spearman(maps, reference)
