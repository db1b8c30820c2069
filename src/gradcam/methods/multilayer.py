"""Methods named for how they are used: RefineCAM (several layers at once) and Seg-Eigen-CAM (segmenters)."""

from __future__ import annotations

from typing import Dict

import torch

from ..explanation import Explanation, normalize
from .eigen import EigenGradCAM
from .gradient_weighted import GradCAMPlusPlus


class RefineCAM(GradCAMPlusPlus):
    """RefineCAM (pytorch-grad-cam's meta-method): Grad-CAM++ at each of several layers, each map upsampled to
    the input and normalised to [0, 1], then their element-wise product, normalised:

        L = normalize( prod_l normalize(upsample(L_l)) ).

    A position stays only where every layer agrees, which denoises the fine maps of early layers with the
    coarse but clean map of a late one. Pass the layers as a list, e.g. ``layer=["layer3", "layer4"]``; with
    one layer it is Grad-CAM++. All layers come from one forward and one batched backward.
    """

    name = "refinecam"

    def _fuse(self, per_layer: Dict[str, Explanation], size) -> torch.Tensor:
        maps = torch.stack([e.maps for e in per_layer.values()])  # each already normalised per map
        return normalize(maps.prod(0), dims=len(size))


class SegEigenCAM(EigenGradCAM):
    """Seg-Eigen-CAM (Chung & Ying, Applied Sciences 2025): the first principal component of dy/dA^c * A^c
    for a segmentation target (see :func:`gradcam.targets.segmentation`); the same computation as
    Eigen-Grad-CAM, named for its use on segmenters. The sign is chosen so the map correlates positively
    with sum_c dy/dA^c A^c (pytorch-grad-cam leaves the SVD's sign as it falls).
    """

    name = "segeigencam"
