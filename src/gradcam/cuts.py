"""Row-wise modules: a backward that differentiates only the rows a target depends on.

A two-stage detector (torchvision's Faster/Mask R-CNN) pools a feature window for each of its ~1000 proposals
(``MultiScaleRoIAlign``) and scores them all with its box head; one detection's score depends on one proposal's
row. Autograd's backward through the pooling loops over every proposal, zeros included: on a CPU about half of
a Grad-CAM call. Output row ``i`` of such a module depends on its inputs through box ``i`` only, so

    dy/dF = sum_i (d P_i / dF)^T g_i,   g = dy/dP,

needs the rows with ``g_i != 0`` only. The engine cuts the graph at the module's output ``P`` (a fresh leaf in
the private view), takes ``g`` from one backward to that leaf, runs the module again on the rows where ``g`` is
non-zero (the same boxes, so the same values) and backpropagates ``g`` restricted to them to the tapped layers:
the same gradients, without the dense pass over every proposal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

#: Classes whose output row i depends on their inputs through the i-th box only (qualified names, so that
#: torchvision need not be imported): ``forward(features, boxes: list of (R_n, 4) per image, ...)``.
ROW_WISE = frozenset({"torchvision.ops.poolers.MultiScaleRoIAlign"})
_KNOWN: Dict[type, bool] = {}


def is_row_wise(module: nn.Module) -> bool:
    """Whether ``module`` is one of :data:`ROW_WISE` (decided once per class)."""
    cls = type(module)
    known = _KNOWN.get(cls)
    if known is None:
        known = _KNOWN[cls] = f"{cls.__module__}.{cls.__qualname__}" in ROW_WISE
    return known


@dataclass
class Cut:
    """One call of a row-wise module whose output was replaced by the fresh leaf ``leaf``."""

    module: nn.Module
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    leaf: torch.Tensor

    def rerun(self, rows: torch.Tensor) -> torch.Tensor:
        """The module's output rows ``rows`` (sorted), recomputed with autograd from its inputs."""
        args = list(self.args)
        boxes = args[1] if len(args) > 1 else self.kwargs["boxes"]
        picked, start = [], 0
        for b in boxes:
            mine = rows[(rows >= start) & (rows < start + b.shape[0])] - start
            picked.append(b[mine])
            start += b.shape[0]
        kwargs = dict(self.kwargs)
        if len(args) > 1:
            args[1] = picked
        else:
            kwargs["boxes"] = picked
        with torch.enable_grad():
            return type(self.module).forward(self.module, *args, **kwargs)  # the class's forward: no hooks


class Cutter:
    """Forward hooks for the row-wise modules of a private view (see the module doc); ``cuts`` lists this
    forward's calls. Only a call under autograd whose output requires grad is cut. ``memo``: the rows and seeds
    found for a score (by :func:`grad`'s ``key``), so that a backward in stages (the ``layer="auto"`` search)
    differentiates the part after the cut once."""

    def __init__(self, modules: Sequence[nn.Module]):
        self.cuts: List[Cut] = []
        self.memo: Dict[Any, List[Tuple[Cut, torch.Tensor, torch.Tensor]]] = {}
        self.handles = [m.register_forward_hook(self.hook, with_kwargs=True) for m in modules]

    def hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not (isinstance(output, torch.Tensor) and output.requires_grad and torch.is_grad_enabled()):
            return None
        leaf = output.detach().requires_grad_(True)
        self.cuts.append(Cut(module, args, kwargs, leaf))
        return leaf

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def grad(
    outputs: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    cutter: Optional[Cutter],
    grad_outputs: Optional[torch.Tensor] = None,
    is_grads_batched: bool = False,
    retain_graph: bool = False,
    key: Any = None,
) -> Tuple[Optional[torch.Tensor], ...]:
    """``torch.autograd.grad(outputs, inputs, allow_unused=True, ...)`` through the cut modules: the gradient
    w.r.t. each cut's leaf, then its non-zero rows backpropagated from a re-run of those rows (with
    ``is_grads_batched``, a row is kept when any of the batched seeds reaches it). ``key``: names the score
    differentiated, so that a later call for the same score reuses the rows and seeds found (``retain_graph``
    must then have been set)."""
    kw = dict(allow_unused=True, is_grads_batched=is_grads_batched)
    if cutter is None or not cutter.cuts:
        return torch.autograd.grad(outputs, list(inputs), grad_outputs, retain_graph=retain_graph, **kw)
    seeds = cutter.memo.get(key) if key is not None else None
    if seeds is None:
        leaves = [c.leaf for c in cutter.cuts]
        found = torch.autograd.grad(
            outputs, list(inputs) + leaves, grad_outputs, retain_graph=retain_graph, **kw
        )
        out = list(found[: len(inputs)])
        seeds = [
            _seed(c, g, is_grads_batched) for c, g in zip(cutter.cuts, found[len(inputs) :]) if g is not None
        ]
        seeds = [s for s in seeds if s[1].numel()]
        if key is not None:
            cutter.memo[key] = seeds
    else:  # the part after the cut was differentiated for this score already: what reaches inputs directly
        out = list(torch.autograd.grad(outputs, list(inputs), grad_outputs, retain_graph=retain_graph, **kw))
    for cut, rows, seed in seeds:
        part = torch.autograd.grad(cut.rerun(rows), list(inputs), seed, retain_graph=retain_graph, **kw)
        out = [p if o is None else o if p is None else o + p for o, p in zip(out, part)]
    return tuple(out)


def _seed(cut: Cut, g: torch.Tensor, batched: bool) -> Tuple[Cut, torch.Tensor, torch.Tensor]:
    """The rows of ``cut``'s output that gradient ``g`` reaches, and ``g`` at those rows."""
    hit = g.reshape(*g.shape[: 2 if batched else 1], -1).ne(0).any(-1)
    rows = (hit.any(0) if batched else hit).nonzero().flatten()
    return cut, rows, (g[:, rows] if batched else g[rows])
