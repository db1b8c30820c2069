"""Maps that are differentiable with respect to the model's parameters: ``GradCAM(model, differentiable=True)``.

This is THE documented exception to the engine's rule "no parameter gradients". It exists for training
with an attention loss on the maps (Li et al., CVPR 2018, "Tell me where to look: guided attention
inference network"; the third arm of ``gradcam study bias``): a loss such as the Grad-CAM mass on a
spurious cue must be back-propagated into the weights.

It is a mode of the one capture engine, :func:`gradcam.engine.capture` with ``differentiable=True``
(this module keeps the documentation and a thin :func:`capture` wrapper). What differs from a normal call:

- the call's private view of the model holds the user's parameters themselves (with their ``requires_grad``
  flags) and the tapped activation stays in the recorded graph (no fresh leaf), so autograd records the
  whole network;
- dy/dA comes from ``torch.autograd.grad(y, A, create_graph=True)``: the gradient is itself a function of
  the parameters, and so are alpha = mean_ij dy/dA_ij, L = ReLU(sum_k alpha_k A^k) and the normalised map;
- the returned capture (hence the :class:`~gradcam.explanation.Explanation`) keeps the graph: ``maps``,
  ``raw``, ``weights``, ``scores`` and ``output`` are NOT detached. Back-propagating a loss on them costs
  about what a training step with a double backward costs (roughly 2-3x a plain training step in time, the
  forward activations of the whole network in memory, kept until the graph is freed).

What is the same: the private view (hooks and ``training`` flags of the view only: ``eval_mode=True`` never
switches the user's model to eval, not even for the duration of the call), ``layer="auto"`` and its
reshape, token layers and volumes.
Parameter ``.grad`` fields are never written here: the caller differentiates the loss (for instance with
``torch.autograd.grad(loss, params)``).
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import nn

from . import engine
from . import targets as _targets
from .layers import LayerRef


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: List[LayerRef],
    target: _targets.Target = None,
    top_k: Optional[int] = None,
    **kw: Any,
) -> engine.Capture:
    """:func:`gradcam.engine.capture` with ``differentiable=True``: every returned tensor keeps the graph.

    gradients[i] = d y / d A_i computed with ``create_graph=True``, so a loss on the maps built from them
    has gradients with respect to the parameters (and to ``x`` when it requires grad). Input gradients
    and method contexts (guided backpropagation) are refused with a clear error.
    """
    return engine.capture(model, x, layers, target, top_k, differentiable=True, **kw)
