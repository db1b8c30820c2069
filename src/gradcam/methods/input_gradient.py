"""Plain input gradients dy/dx ("Backprop" in Selvaraju et al.'s Table 1; Simonyan et al., 2014).

Named for its subject, the gradient with respect to the input pixels (formerly ``gradcam.methods.gradient``,
beside the unrelated gradient-weighted CAM variants; that path still works, deprecated).
"""

from __future__ import annotations

import threading
from typing import Optional

import torch
from torch import nn

from .. import engine
from ..pixels import REDUCTIONS, PixelExplanation, pixel_explanation
from ..targets import Target
from .contract import OPTIONS, CallOptions, Method

_CALL = threading.local()


def call_context():
    """The context factory of the calling thread's current :class:`Gradient` call (for ``_after``)."""
    return getattr(_CALL, "context", None)


class Gradient(Method):
    """The vanilla input gradient: pixels = dy^c/dx (N, K, C, H, W), maps = normalize(max_c |dy^c/dx_c|).

    One forward, one batched backward for all images and targets. ``counterfactual=True`` gives
    d(-y^c)/dx. ``reduce`` picks the single-channel saliency (see :func:`gradcam.pixels.saliency`).
    """

    name = "gradient"
    output = "pixels"
    supports = frozenset(OPTIONS) - {"aug_smooth", "eigen_smooth"}

    def __init__(
        self,
        model: nn.Module,
        *,
        reduce: str = "abs-max",
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}.")
        self.reduce = reduce
        self.eval_mode = eval_mode

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        counterfactual = opts.counterfactual
        self._images_only(x)
        context = self._context()  # one per call: calls from several threads never share it
        cap = engine.capture(
            self.model,
            x,
            [],
            target,
            top_k,
            gradients=False,
            input_gradient=True,
            counterfactual=counterfactual,
            eval_mode=self.eval_mode,
            context=context,
            forward_kwargs=opts.forward_kwargs or None,
        )
        _CALL.context = context  # this thread's call, read by _after (a thread-local: not shared state)
        self._after(cap)
        assert cap.input_gradient is not None  # input_gradient=True
        return pixel_explanation(cap.input_gradient, cap, self.name, self.reduce, counterfactual)

    def _context(self):
        """A context-manager factory entered around the pass (None: plain autograd)."""
        return None

    def _after(self, cap: engine.Capture) -> None:
        """A check after the pass (subclasses: e.g. warn when the guided rule never applied); this call's
        context factory is :func:`call_context`."""
