"""Smoothing that any layer method can switch on: ``eigen_smooth`` and ``aug_smooth``.

- ``eigen_smooth`` (Muhammad & Yeasin 2020, as pytorch-grad-cam applies it to every method): the map is
  the projection of the per-channel terms T (P positions x C channels, the terms whose channel sum is
  the method's map, e.g. alpha_c A^c) on their first principal component: T is centred over positions,
  map = T_c v_1 with v_1 the top right-singular vector. Computed from the eigendecomposition of the
  smaller Gram matrix (C x C, or P x P when there are fewer positions than channels), never a full SVD
  of a (hw) x (hw) matrix. The sign is fixed so that the map correlates positively with the plain
  channel sum (the un-smoothed map), i.e. it points at the target.
- ``aug_smooth`` (test-time augmentation, as pytorch-grad-cam's ttach setting): 6 views, horizontal flip
  x multiplicative intensity scales 0.9, 1.0, 1.1, stacked in the batch dimension (one forward and one
  backward for all, or a few views per pass when the stack would exceed ``VIEW_BATCH`` images), each
  view's map flipped back exactly, the normalised maps averaged and normalised.

This module holds the tensor functions only; :class:`gradcam.methods.base.LayerMethod` runs the views.
"""

from __future__ import annotations

from typing import List

import torch

from ..explanation import Explanation, normalize

#: Largest stacked batch of views for one forward/backward (more images: a few views per pass). Not
#: larger: a CNN's per-image CPU cost grows with the batch once its activations leave the cache
#: (EfficientNet-Lite0, 16 images x 6 views: 7.2x one Grad-CAM call at 32 per pass, 6.25x at 16, 10x at 96).
VIEW_BATCH = 16
#: (horizontal flip, intensity factor) of every ``aug_smooth`` view; view 0 is the identity.
AUGMENTATIONS = ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9), (True, 1.1))


def first_component(terms: torch.Tensor) -> torch.Tensor:
    """Projection of per-channel terms (N, K, C, *spatial) on their first principal component: (N, K, *spatial).

    With X (P, C) the terms of one map (P positions) and X_c = X - mean_P(X): map = X_c v_1, v_1 the
    top eigenvector of X_c^T X_c; equivalently sqrt(lambda_1) u_1 with u_1 the top eigenvector of
    X_c X_c^T (used when P < C). Sign: sum_p map_p * (sum_c X_pc) >= 0. All-zero terms give zeros.
    """
    n, k, c = terms.shape[:3]
    spatial = terms.shape[3:]
    x = terms.reshape(n, k, c, -1).transpose(-1, -2)  # (N, K, P, C)
    xc = x - x.mean(dim=-2, keepdim=True)
    p = x.shape[-2]
    if p <= c:
        gram = (xc @ xc.transpose(-1, -2)).double()  # (N, K, P, P)
        vals, vecs = torch.linalg.eigh(gram)
        proj = (vecs[..., -1] * vals[..., -1:].clamp_min(0).sqrt()).to(x.dtype)
    else:
        gram = (xc.transpose(-1, -2) @ xc).double()  # (N, K, C, C)
        _, vecs = torch.linalg.eigh(gram)
        proj = (xc @ vecs[..., -1:].to(x.dtype)).squeeze(-1)
    ref = x.sum(dim=-1)
    sign = torch.where((proj * ref).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign).reshape(n, k, *spatial)


def augment(x: torch.Tensor) -> torch.Tensor:
    """The :data:`AUGMENTATIONS` views of ``x`` (N, ...) stacked in the batch dimension: (6 N, ...)."""
    return torch.cat([(x.flip(-1) if flip else x) * s for flip, s in AUGMENTATIONS])


def concat(parts: List[Explanation]) -> Explanation:
    """Explanations of consecutive slices of the views' batch as one."""

    def cat(attr):
        return None if getattr(parts[0], attr) is None else torch.cat([getattr(e, attr) for e in parts])

    e = parts[0]
    per_layer = {k: concat([p.per_layer[k] for p in parts]) for k in e.per_layer}
    return Explanation(
        maps=cat("maps"),
        raw=cat("raw"),
        weights=cat("weights"),
        targets=e.targets,
        scores=e.scores,
        layer=e.layer,
        method=e.method,
        interpolation=e.interpolation,
        counterfactual=e.counterfactual,
        output=e.output,
        per_layer=per_layer,
    )


def merge(e: Explanation, n: int, first: Explanation) -> Explanation:
    """Flip every view's maps back, average the normalised maps (and the raw maps), normalise."""
    v = len(AUGMENTATIONS)
    flips = [f for f, _ in AUGMENTATIONS]

    def back(t: torch.Tensor) -> torch.Tensor:
        views = t.reshape(v, n, *t.shape[1:])
        return torch.stack([views[j].flip(-1) if flips[j] else views[j] for j in range(v)])

    ident = AUGMENTATIONS.index((False, 1.0))
    maps = normalize(back(e.maps).mean(0))
    raw = back(e.raw).mean(0)
    w = None if e.weights is None else e.weights.reshape(v, n, *e.weights.shape[1:])[ident]
    return Explanation(
        maps=maps,
        raw=raw,
        weights=w,
        targets=first.targets,
        scores=first.scores,
        layer=e.layer,
        method=e.method,
        interpolation=e.interpolation,
        counterfactual=e.counterfactual,
        output=first.output,
    )
