"""Deep Feature Factorization (Collins, Achanta & Suesstrunk, ECCV 2018): concepts by NMF of the activations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize, upsample
from ..layers import LayerSpec
from ..targets import Target
from .base import LayerMethod
from .contract import CallOptions


def nmf(
    v: torch.Tensor, k: int, iterations: int = 200, seed: int = 0, eps: float = 1e-10, tol: float = 1e-4
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Non-negative factorisation V ~ W H of V (C, P) >= 0 into W (C, k) >= 0 and H (k, P) >= 0.

    Lee & Seung's multiplicative updates for the Frobenius loss |V - WH|^2, ``iterations`` rounds of
    H <- H * (W^T V) / (W^T W H),  W <- W * (V H^T) / (W H H^T), from a seeded uniform start scaled to
    V's mean (deterministic for a given seed), stopping early once the relative error |V - WH| / |V|,
    checked every 10 rounds, improves by less than ``tol`` (0: run every round). Runs in V's dtype on V's device.
    """
    gen = torch.Generator(device=v.device).manual_seed(seed)
    scale = (v.mean() / k).clamp_min(eps).sqrt()
    w = torch.rand((v.shape[0], k), generator=gen, dtype=v.dtype, device=v.device) * scale
    h = torch.rand((k, v.shape[1]), generator=gen, dtype=v.dtype, device=v.device) * scale
    norm = v.norm().clamp_min(eps)
    last = float("inf")
    for i in range(iterations):
        h = h * (w.T @ v) / ((w.T @ w) @ h + eps)
        w = w * (v @ h.T) / (w @ (h @ h.T) + eps)
        if tol > 0 and i % 10 == 9:
            err = float((v - w @ h).norm() / norm)
            if last - err < tol:
                break
            last = err
    return w, h


@dataclass(repr=False)
class ConceptExplanation(Explanation):
    """An :class:`Explanation` whose K maps are concepts shared by the batch, not classes.

    - ``maps`` (N, K, H, W): where each concept is present in each image (normalised per map);
    - ``concepts`` (K, C): each concept's channel vector (a column of W);
    - ``concept_scores`` (K, num_classes) or ``None``: the head's softmax for each concept vector;
    - ``targets`` (N, K): each concept's top class (the same for every image; -1 without a head).
    """

    concepts: Optional[torch.Tensor] = None
    concept_scores: Optional[torch.Tensor] = None

    def top_classes(self, k: int = 3) -> torch.Tensor:
        """The ``k`` classes each concept scores highest, (K, k) (needs a head)."""
        if self.concept_scores is None:
            raise ValueError(
                "No head was found or given, so concepts have no classes; pass head=model.fc (a "
                "module mapping a channel vector to class scores)."
            )
        return self.concept_scores.topk(k, dim=1).indices


def _last_linear(model: nn.Module, channels: int) -> Optional[nn.Module]:
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.in_features == channels:
            found = m
    return found


class DeepFeatureFactorization(LayerMethod):
    """Deep Feature Factorization: V = ReLU(A) arranged as (C, N * positions) ~ W H by NMF with K concepts;
    concept k's map in image n is H[k, positions of n] (upsampled, normalised), its vector W[:, k].

    The concepts are factorised over the whole batch (shared by its images, as in the paper). ``head``: a
    module mapping a C-vector to class scores (default: the model's last ``nn.Linear`` taking C inputs),
    which names each concept's classes: softmax(head(W^T)). No backward pass; ``target``/``top_k`` do not
    apply (the maps are concepts, not classes).
    """

    name = "dff"
    needs_gradients = False
    supports_differentiable = False
    supports = frozenset({"forward_kwargs"})
    refusals = {
        "counterfactual": "it uses no gradients and its maps are concepts, not a class's evidence",
        "aug_smooth": "its concepts are factorised over the batch it is given. Leave aug_smooth unset",
        "eigen_smooth": "its maps are already factorised concepts. Leave eigen_smooth unset",
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        concepts: int = 8,
        iterations: int = 200,
        seed: int = 0,
        head: Optional[nn.Module] = None,
        **kw: Any,
    ):
        if isinstance(concepts, bool) or not isinstance(concepts, int) or concepts < 1:
            raise ValueError(f"concepts must be a positive int (the number K of concepts); got {concepts!r}.")
        super().__init__(model, layer, **kw)
        self.concepts = concepts
        self.iterations = iterations
        self.seed = seed
        self.head = head

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> ConceptExplanation:
        """Factorise the activations of ``x`` (N, C, H, W) into ``concepts`` maps per image."""
        if target is not None or top_k is not None:
            raise ValueError(
                "dff explains concepts, not classes: leave target and top_k unset (choose the number "
                "of concepts with concepts=K)."
            )
        cap = self._capture(x, None, None, False, forward_kwargs=opts.forward_kwargs or None)
        return self._factorise(cap, tuple(x.shape[2:]))

    def _factorise(self, cap: engine.Capture, size: Tuple[int, ...]) -> ConceptExplanation:
        a = cap.activations[0]
        n, c = a.shape[:2]
        spatial = a.shape[2:]
        v = torch.relu(a).float().reshape(n, c, -1).permute(1, 0, 2).reshape(c, -1)
        w, h = nmf(v, self.concepts, self.iterations, self.seed)
        raw = h.reshape(self.concepts, n, *spatial).transpose(0, 1).to(a.dtype).contiguous()
        head = self.head if self.head is not None else _last_linear(self.model, c)
        scores, ids = None, torch.full((n, self.concepts), -1, dtype=torch.long)
        if head is not None:
            with torch.no_grad():
                p = next(iter(head.parameters()), None)
                vec = w.T.to(p.dtype if p is not None else a.dtype)
                scores = torch.softmax(head(vec), dim=1)
            ids = scores.argmax(1).unsqueeze(0).expand(n, -1).contiguous()
        top = (
            scores.amax(1).unsqueeze(0).expand(n, -1) if scores is not None else torch.zeros(n, self.concepts)
        )
        return ConceptExplanation(
            maps=normalize(upsample(raw, size, self.interpolation), dims=len(size)),
            raw=raw,
            weights=None,
            targets=ids,
            scores=top.to(a.dtype),
            layer=cap.layers[0].spec,
            method=self.name,
            interpolation=self.interpolation,
            output=cap.output,
            concepts=w.T.to(a.dtype),
            concept_scores=scores,
        )
