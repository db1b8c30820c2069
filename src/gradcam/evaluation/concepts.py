"""A concept method (Deep Feature Factorization) scored in the class tables of ``gradcam evaluate``.

DFF explains concepts, not classes: it factorises the activations into K concept maps and names each
concept's classes through the model's head, ``p_k = softmax(head(w_k))``. The benchmarks ask for a class's
map, so :class:`ConceptClassMaps` answers with the map of the concept the head scores highest for that class,
``k*(c) = argmax_k p_k[c]`` (the concept DFF's figure would label with class ``c``). Where the model has no
head that takes a channel vector (a fully connected head over the flattened map), DFF cannot name a class
and the row is n/a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ConceptMaps:
    """What the benchmarks read of an explanation: ``maps`` (N, K, H, W), one map per asked class."""

    maps: torch.Tensor


class ConceptClassMaps:
    """``method(x, target=(N, K) class ids)`` for a concept method: concepts factorised over the batch
    ``x``; image ``n``'s map for class ``c`` is its map of concept ``argmax_k p_k[c]``."""

    def __init__(self, method: Any):
        self.method = method
        self.name = getattr(method, "name", "dff")

    def __call__(self, x: torch.Tensor, target: Any = None) -> ConceptMaps:
        if target is None:
            raise ValueError("ConceptClassMaps needs target: the class ids (N, K) whose maps to return.")
        ex = self.method(x)
        if ex.concept_scores is None:
            raise ValueError(
                "the model has no head taking a channel vector, so DFF cannot name a concept's classes "
                "(pass head= to the method)"
            )
        t = torch.as_tensor(target, dtype=torch.long).reshape(x.shape[0], -1)
        best = ex.concept_scores[:, t].argmax(dim=0)  # (N, K): the concept scoring each class highest
        idx = best.view(*best.shape, *([1] * (ex.maps.dim() - 2))).expand(-1, -1, *ex.maps.shape[2:])
        return ConceptMaps(maps=ex.maps.gather(1, idx))
