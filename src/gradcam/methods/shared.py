"""Several methods on one batch, one capture where they can share it: :func:`explain_many`.

``gradcam explain --method gradcam,eigencam,layercam`` and :func:`gradcam.photos.explain_batch_many` run on it.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple, cast

import torch

from .. import engine
from ..targets import Target
from .base import LayerMethod
from .contract import CallOptions, Method


def explain_many(
    methods: Sequence[Method],
    x: torch.Tensor,
    target: Target = None,
    top_k: Optional[int] = None,
    *,
    counterfactual: bool = False,
    forward_kwargs: Optional[dict] = None,
) -> List[Any]:
    """Explain ``x`` with each of ``methods``: the results of ``[m(x, target, top_k, counterfactual=...,
    forward_kwargs=...) for m in methods]``, in that order, with the methods that can share a capture sharing one.

    Layer-based CAM methods (:class:`~gradcam.methods.base.LayerMethod`: Grad-CAM, Grad-CAM++, XGrad-CAM,
    HiResCAM, LayerCAM, Eigen-CAM, Eigen-Grad-CAM, CAM, KPCA-CAM, element-wise Grad-CAM, ...) compute their maps
    from one engine capture: the activations A of their layer and, where they need them, dy/dA. Those built on
    the same model, with the same layer (the same module, or ``"auto"`` choosing the same one), the same
    ``reshape`` and ``eval_mode``, share ONE capture: one forward, and one batched backward when any of them needs
    gradients; each then computes its own map from it (``eigen_smooth`` its own). The maps equal those of each
    method called alone. The others run as they do alone: perturbation methods (Score-CAM, Ablation-CAM, RISE,
    occlusion), pixel methods, methods with their own call (Finer-CAM, Guided Grad-CAM, DFF), ``aug_smooth``,
    ``differentiable=True``, and a method whose ``"auto"`` layer differs (Eigen-CAM takes a ViT's latest map,
    the gradient methods the latest one its gradient reaches). Every method's options are checked first, so a
    refused option raises before any work.
    """
    opts = [m.options(counterfactual, forward_kwargs) for m in methods]
    results: List[Any] = [None] * len(methods)
    groups: Dict[Hashable, List[int]] = {}
    for i, (m, o) in enumerate(zip(methods, opts)):
        key = share_key(m, o)
        if key is not None:
            groups.setdefault(key, []).append(i)
    for idx in groups.values():
        if len(idx) > 1:
            _run_group([(i, cast(LayerMethod, methods[i]), opts[i]) for i in idx], x, target, top_k, results)
    for i, m in enumerate(methods):
        if results[i] is None:
            results[i] = m._run(x, target, top_k, opts[i])
    return results


def share_key(method: Method, opts: CallOptions) -> Optional[Hashable]:
    """What a method's capture depends on (model, layer, reshape, eval mode), or ``None`` when it cannot share one."""
    if (
        not isinstance(method, LayerMethod)
        or type(method)._capture is not LayerMethod._capture
        or type(method)._run is not LayerMethod._run
        or method.differentiable
        or opts.aug_smooth
    ):
        return None
    layers = "auto" if method._layers is None else tuple(method._layers)
    return (id(method.model), id(method.reshape), method.eval_mode, layers, opts.counterfactual)


def _run_group(
    members: List[Tuple[int, LayerMethod, CallOptions]],
    x: torch.Tensor,
    target: Target,
    top_k: Optional[int],
    results: List[Any],
) -> None:
    """One capture by the group's first method that needs gradients (else its first), each member's map from it;
    a member whose ``"auto"`` layer is another one is left for its own call."""
    lead_i, lead, lead_opts = next((mem for mem in members if mem[1].needs_gradients), members[0])
    cap = lead._capture(
        x, target, top_k, lead_opts.counterfactual, forward_kwargs=lead_opts.forward_kwargs or None
    )
    size = x.shape[2:]
    for i, m, o in members:
        if m is lead or _same_layer(m, lead, cap, x):
            results[i] = m._explain(cap, size, o.counterfactual, o.eigen_smooth)


def _same_layer(m: LayerMethod, lead: LayerMethod, cap: engine.Capture, x: torch.Tensor) -> bool:
    """Whether ``m`` alone would capture the layer of ``cap`` (the leader's): always for a named layer (the group's
    key); for ``"auto"``, ``m``'s own choice for this input shape, or when it has made none the leader's (the
    same search: gradient methods take the leader's choice, the others the latest candidate)."""
    if m._layers is not None:
        return True
    key = tuple(x.shape[1:])
    with m._lock:
        own = m._auto_cache.get(key)
        if own is None:
            source = lead._auto_cache if m.needs_gradients and lead.needs_gradients else lead._auto_listed
            own = source.get(key)
            if own is None:
                return False
            m._auto_cache[key] = own
            listed = lead._auto_listed.get(key)
            if listed is not None:
                m._auto_listed.setdefault(key, listed)
    return len(cap.layers) == 1 and own[0] == cap.layers[0]
