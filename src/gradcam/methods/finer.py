"""Finer-CAM (Zhang et al., CVPR 2025): Grad-CAM of a class's score *relative to its most similar classes*."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import nn

from ..explanation import Explanation
from ..layers import LayerSpec
from ..targets import Target, _as_long_tensor, logits_of
from .contract import OPTIONS, CallOptions
from .gradcam import GradCAM


def finer_target(
    main: Optional[torch.Tensor] = None, comparisons: int = 3, alpha: float = 1.0, top_k: int = 1
) -> Callable[[Any], torch.Tensor]:
    """The Finer-CAM score for each image: y_main compared with the ``comparisons`` most similar classes.

    For main class c and the classes j_1..j_m whose logits are closest to y_c (|y_j - y_c| smallest, c
    itself excluded; all other classes when there are fewer), with p = softmax(y) (kept in the graph, as pytorch-grad-cam's ``FinerWeightedTarget``):

        s = sum_j p_j (y_c - alpha y_j) / (sum_j p_j + 1e-9).

    ``main`` (N,) or (N, K) class ids; ``None``: the top ``top_k`` classes. ``alpha = 0`` gives y_c
    (Grad-CAM); ``alpha = 1`` the plain differences.
    """
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ValueError(
            f"comparisons must be a positive int (similar classes to compare with); got {comparisons!r}."
        )

    def target(output: Any) -> torch.Tensor:
        y = logits_of(output)
        n, classes = y.shape
        if classes < 2:
            raise ValueError(
                "Finer-CAM compares classes; the model has one output. Use gradcam for a single score."
            )
        m = min(comparisons, classes - 1)  # every other class when there are fewer than ``comparisons``
        ids = y.detach().topk(top_k, dim=1).indices if main is None else main.to(y.device).reshape(n, -1)
        yc = y.gather(1, ids)  # (N, K)
        gap = (y.detach().unsqueeze(1) - yc.detach().unsqueeze(2)).abs()  # (N, K, classes)
        gap.scatter_(2, ids.unsqueeze(2), float("inf"))  # the main class is not its own comparison
        near = gap.topk(m, dim=2, largest=False).indices  # (N, K, m)
        p = torch.softmax(y, dim=1)
        yj = y.unsqueeze(1).expand(n, ids.shape[1], classes).gather(2, near)
        pj = p.unsqueeze(1).expand(n, ids.shape[1], classes).gather(2, near)
        return (pj * (yc.unsqueeze(2) - alpha * yj)).sum(2) / (pj.sum(2) + 1e-9)

    return target


class FinerCAM(GradCAM):
    """Finer-CAM: Grad-CAM (alpha_k = mean_ij ds/dA^k_ij, L = ReLU(sum_k alpha_k A^k)) of the score s of
    :func:`finer_target`, which removes the evidence a class shares with its nearest rivals and keeps what
    tells it apart. ``target`` names the main classes (ids; default the top-1, or ``top_k``); the result's
    ``targets`` are those ids and ``scores`` their logits y_c (the map explains s, the Finer score).
    """

    name = "finercam"
    supports = frozenset(OPTIONS) - {"aug_smooth"}
    refusals = {
        "aug_smooth": "its target compares the classes of each view with a score made inside the forward, "
        "which the augmented views' batch would mix. Use gradcam with aug_smooth"
    }

    def __init__(
        self, model: nn.Module, layer: LayerSpec = "auto", *, comparisons: int = 3, alpha: float = 1.0, **kw
    ):
        if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
            raise ValueError(f"comparisons must be a positive int; got {comparisons!r}.")
        super().__init__(model, layer, **kw)
        self.comparisons = comparisons
        self.alpha = float(alpha)

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        """Explain ``x`` for the main classes ``target`` (ids) or the top ``top_k`` (see :func:`finer_target`)."""
        if callable(target) and not isinstance(target, torch.Tensor):
            raise TypeError(
                "finercam builds its own target from class ids; pass class ids (or None), not a callable."
            )
        if target is not None and top_k is not None:
            raise ValueError("Pass either target=... or top_k=..., not both: top_k picks the classes itself.")
        main = None
        if target is not None:
            main = _as_long_tensor(target)
            main = (
                main.reshape(1, 1).expand(x.shape[0], 1) if main.dim() == 0 else main.reshape(x.shape[0], -1)
            )
        score = finer_target(main, self.comparisons, self.alpha, top_k or 1)
        result = super()._run(x, score, None, opts)
        logits = logits_of(result.output)
        ids = logits.topk(top_k or 1, dim=1).indices if main is None else main.to(logits.device)
        result.targets = ids
        result.scores = logits.gather(1, ids.to(logits.device)).to(result.scores.dtype)
        return result
