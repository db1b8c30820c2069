"""Methods named for how they are used: RefineCAM (several layers at once) and Seg-Eigen-CAM (segmenters)."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch

from .. import engine
from ..explanation import Explanation, normalize
from .eigen import EigenGradCAM
from .gradient_weighted import GradCAMPlusPlus
from .smoothing import first_component


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
    """Seg-Eigen-CAM (Chung & Ying, Applied Sciences 2025), for segmentation targets (see
    :func:`gradcam.targets.segmentation`): the first principal component of the terms |dy/dA^c| * A^c (Eq. 10:
    the absolute gradient keeps both signs' evidence), positions x channels, centred over positions; the sign
    of the projection is flipped where |min| > |max| (Eq. 13: the salient side positive), as pytorch-grad-cam
    1.5.7. L = ReLU(projection), upsampled and normalised.
    """

    name = "segeigencam"

    def _channel_maps(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return cap.gradient(i).abs() * cap.activations[i].unsqueeze(1), None

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        proj = first_component(self._channel_maps(cap, i)[0])
        flat = proj.flatten(2)
        flip = flat.amin(-1).abs() > flat.amax(-1).abs()  # (N, K)
        return torch.where(flip.reshape(*flip.shape, *([1] * (proj.dim() - 2))), -proj, proj), None
