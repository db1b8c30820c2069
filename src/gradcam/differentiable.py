"""Maps that are differentiable with respect to the model's parameters: ``GradCAM(model, differentiable=True)``.

This is THE documented exception to the engine's rule "no parameter gradients". It exists for training
with an attention loss on the maps (Li et al., CVPR 2018, "Tell me where to look: guided attention
inference network"; the third arm of ``gradcam study bias``): a loss such as the Grad-CAM mass on a
spurious cue must be back-propagated into the weights.

What differs from :func:`gradcam.engine.capture`:

- parameters keep their ``requires_grad`` flags and the tapped activation stays in the recorded graph
  (no fresh leaf), so autograd records the whole network;
- dy/dA comes from ``torch.autograd.grad(y, A, create_graph=True)``: the gradient is itself a function of
  the parameters, and so are alpha = mean_ij dy/dA_ij, L = ReLU(sum_k alpha_k A^k) and the normalised map;
- the returned capture (hence the :class:`~gradcam.explanation.Explanation`) keeps the graph: ``maps``,
  ``raw``, ``weights``, ``scores`` and ``output`` are NOT detached. Back-propagating a loss on them costs
  about what a training step with a double backward costs (roughly 2-3x a plain training step in time, the
  forward activations of the whole network in memory, kept until the graph is freed).

What is the same: the hook lives for one call and is removed in ``finally``; ``eval_mode=True`` puts the
model in eval mode for the call and every ``training`` flag is restored afterwards, also on exceptions.
Parameter ``.grad`` fields are never written here: the caller differentiates the loss (for instance with
``torch.autograd.grad(loss, params)``).
"""
from __future__ import annotations

from typing import Any, List, Optional, cast

import torch
from torch import nn

from . import engine
from . import targets as _targets
from .layers import LayerRef


class _GraphTap:
    """A forward hook that records a layer's output at the chosen call, inside the graph (no detach)."""

    def __init__(self, ref: LayerRef):
        self.ref = ref
        self.calls = 0
        self.activation: Optional[torch.Tensor] = None

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        k = self.calls
        self.calls += 1
        if k != (self.ref.call or 0):
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Layer '{self.ref.spec}' returns {type(output).__name__}, not a tensor; pick a submodule whose "
                "output is the feature map (N, C, h, w)."
            )
        self.activation = output
        return None


def _grads(scores: torch.Tensor, act: torch.Tensor, negate: bool) -> Optional[torch.Tensor]:
    """dy_k/dA for each of the K targets, (N, K, *A.shape[1:]), with ``create_graph=True``."""
    if negate:
        scores = -scores
    k = scores.shape[1]
    out = []
    for j in range(k):
        (g,) = torch.autograd.grad(scores[:, j].sum(), [act], create_graph=True, retain_graph=True, allow_unused=True)
        if g is None:
            return None
        out.append(g)
    return torch.stack(out, dim=1)


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: List[LayerRef],
    target: _targets.Target = None,
    top_k: Optional[int] = None,
    *,
    gradients: bool = True,
    counterfactual: bool = False,
    reshape: engine.Reshape = None,
    eval_mode: bool = True,
    forward_kwargs: Optional[dict] = None,
    **unsupported: Any,
) -> engine.Capture:
    """Like :func:`gradcam.engine.capture`, but every returned tensor keeps the autograd graph.

    gradients[i] = d y / d A_i computed with ``create_graph=True``, so a loss on the maps built from them
    has gradients with respect to the parameters (and to ``x`` when it requires grad). Input gradients
    and method contexts (guided backpropagation) are not supported.
    """
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(
            f"differentiable=True supports layer-based CAM methods only (Grad-CAM, CAM); it cannot be combined "
            f"with {', '.join(sorted(bad))}. Use differentiable=False for this method."
        )
    engine.check_input(model, x)
    state = engine.ModelState(model)
    taps = [_GraphTap(ref) for ref in layers]
    handles = []
    try:
        if eval_mode:
            model.eval()
        for tap in taps:
            handles.append(tap.ref.module.register_forward_hook(tap.hook))
        with torch.enable_grad():
            output = model(x, **(forward_kwargs or {}))
            for tap in taps:
                _check_tap(tap)
            scores, ids = _targets.resolve(output, target, top_k, x.shape[0])
            # _check_tap above raised for any layer the forward pass did not reach
            acts = [cast(torch.Tensor, tap.activation) for tap in taps]
            grads: List[Optional[torch.Tensor]] = []
            for tap, a in zip(taps, acts):
                if gradients:
                    g = _grads(scores, a, counterfactual) if scores.requires_grad and a.requires_grad else None
                    if g is None:
                        raise engine.LayerNotUsedError(
                            f"The target does not depend on layer '{tap.ref.spec}' (no gradient flows from the "
                            "score back to it), or no parameter before it requires grad. Pick a layer on the path "
                            "to the explained output."
                        )
                    grads.append(g)
                else:
                    grads.append(None)
    finally:
        for h in handles:
            h.remove()
        state.restore()
    cap = engine.Capture(output=output, scores=scores, targets=ids.detach(), layers=list(layers))
    for a, g in zip(acts, grads):
        if reshape is not None:
            a = reshape(a)
            g = engine._reshape_grad(g, reshape) if g is not None else None
        if a.dim() != 4:
            raise ValueError(
                f"Layer output has shape {tuple(a.shape)}, not a spatial map (N, C, h, w); pick a convolutional "
                "layer or pass reshape=gradcam.layers.tokens_to_grid(h, w)."
            )
        cap.activations.append(a)
        cap.gradients.append(g)
    return cap


def _check_tap(tap: _GraphTap) -> None:
    probe = engine._Tap(tap.ref)
    probe.calls = tap.calls
    probe.check()
