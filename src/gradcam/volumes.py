"""Volumetric and video maps (N, K, d, h, w): trilinear upsampling to the input's (D, H, W)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

VOLUME_MODES = {"bilinear": "trilinear", "trilinear": "trilinear", "nearest": "nearest", "area": "area"}


def upsample_volume(maps: torch.Tensor, size: Sequence[int], interpolation: str = "bilinear") -> torch.Tensor:
    """Resize (N, K, d, h, w) maps to ``size`` = (D, H, W).

    ``"bilinear"`` (the methods' default) is read as trilinear interpolation (align_corners=False), the
    same half-pixel convention as 2-D maps along each of the three axes; ``"nearest"`` and ``"area"`` as
    in :func:`torch.nn.functional.interpolate`. Bicubic has no 3-D form: a ``ValueError`` says so.
    """
    if interpolation not in VOLUME_MODES:
        raise ValueError(
            f"interpolation={interpolation!r} has no 3-D form for volume maps; use 'bilinear' (trilinear), "
            "'nearest' or 'area'."
        )
    if len(size) != 3 or maps.dim() != 5:
        raise ValueError(
            f"Volume maps are (N, K, d, h, w) resized to (D, H, W); got maps {tuple(maps.shape)}, size {tuple(size)}."
        )
    n, k = maps.shape[:2]
    flat = maps.reshape(n * k, 1, *maps.shape[2:])
    if tuple(maps.shape[2:]) == tuple(size):
        out = flat
    else:
        mode = VOLUME_MODES[interpolation]
        kwargs = {"align_corners": False} if mode == "trilinear" else {}
        out = F.interpolate(flat, size=tuple(size), mode=mode, **kwargs)
    return out.reshape(n, k, *out.shape[2:])


def tokens_to_volume(depth: int, height: int, width: int, skip: int = 0):
    """A ``reshape`` for 3-D token models (a ViT on volumes): (N, skip + d*h*w, C) tokens -> (N, C, d, h, w).

    ``skip`` leading tokens (a class token: MONAI's ``ViT(classification=True)`` has one) are dropped; the
    tokens are the patches in (d, h, w) row-major order, as a strided Conv3d patch embedding flattens them.
    """

    def reshape(t: torch.Tensor) -> torch.Tensor:
        n_tok = skip + depth * height * width
        if t.dim() != 3 or t.shape[1] != n_tok:
            raise ValueError(
                f"tokens_to_volume({depth}, {height}, {width}, skip={skip}) expects (N, {n_tok}, C) "
                f"tokens; got shape {tuple(t.shape)}."
            )
        return t[:, skip:].reshape(t.shape[0], depth, height, width, t.shape[2]).permute(0, 4, 1, 2, 3)

    return reshape
