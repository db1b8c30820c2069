"""KPCA-CAM (Karmani et al. 2024): Eigen-CAM with kernel PCA of the activations instead of linear PCA."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from .. import engine
from ..layers import LayerSpec
from .base import LayerMethod
from .contract import OPTIONS

KERNELS = ("sigmoid", "rbf", "linear")


def kernel_pca_projection(
    a: torch.Tensor, kernel: str = "sigmoid", gamma: Optional[float] = None
) -> torch.Tensor:
    """Each position's coordinate on the first kernel principal component, (N, *spatial) from A (N, C, *spatial).

    X (P, C): the positions' channel vectors, centred over positions. Gram matrix K_pq = k(x_p, x_q) with
    ``sigmoid`` tanh(gamma x_p.x_q + 1), ``rbf`` exp(-gamma |x_p - x_q|^2) or ``linear`` x_p.x_q; gamma
    defaults to 1 / C. K is centred in feature space, K~ = (I - 1/P) K (I - 1/P); the projection is
    sqrt(lambda_1) u_1 (u_1 the top eigenvector of K~), as scikit-learn's ``KernelPCA.fit_transform``.
    Sign: the projection correlates positively with sum_c A^c (as Eigen-CAM here). Computed in float64.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")
    n, c = a.shape[:2]
    spatial = a.shape[2:]
    x = a.reshape(n, c, -1).transpose(1, 2).double()  # (N, P, C)
    x = x - x.mean(dim=1, keepdim=True)
    g = 1.0 / c if gamma is None else float(gamma)
    dot = x @ x.transpose(1, 2)
    if kernel == "sigmoid":
        k = torch.tanh(g * dot + 1.0)
    elif kernel == "rbf":
        sq = dot.diagonal(dim1=1, dim2=2)
        k = torch.exp(-g * (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * dot).clamp_min(0))
    else:
        k = dot
    p = k.shape[-1]
    centre = torch.eye(p, dtype=k.dtype, device=k.device) - 1.0 / p
    kc = centre @ k @ centre
    vals, vecs = torch.linalg.eigh((kc + kc.transpose(1, 2)) / 2)
    proj = vecs[..., -1] * vals[..., -1:].clamp_min(0).sqrt()
    ref = a.reshape(n, c, -1).sum(1).double()
    sign = torch.where((proj * ref).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(proj.dtype)
    return (proj * sign).to(a.dtype).reshape(n, *spatial)


class KPCACAM(LayerMethod):
    """KPCA-CAM: L = ReLU( first kernel principal component of the activations ), see
    :func:`kernel_pca_projection`. Needs no backward pass; every target of an image gets the same map.
    """

    name = "kpcacam"
    needs_gradients = False
    supports_differentiable = False
    supports = frozenset(OPTIONS) - {"counterfactual", "eigen_smooth"}
    refusals = {
        "eigen_smooth": "it is already a principal component (of the kernel matrix). Leave eigen_smooth unset"
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        kernel: str = "sigmoid",
        gamma: Optional[float] = None,
        **kw,
    ):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")
        super().__init__(model, layer, **kw)
        self.kernel = kernel
        self.gamma = gamma

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        m = kernel_pca_projection(cap.activations[i], self.kernel, self.gamma).unsqueeze(1)
        return m.expand(m.shape[0], cap.targets.shape[1], *m.shape[2:]).contiguous(), None
