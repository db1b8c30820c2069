"""Layer-wise relevance propagation through zennit's composites (Bach et al. 2015; Montavon et al. 2019).

zennit does the rules; gradcam the targets, batching, outputs and evaluation. Install with
``pip install 'gradcam[lrp]'`` (zennit needs torchvision).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from .. import engine
from ..pixels import REDUCTIONS, PixelExplanation, pixel_explanation
from ..targets import Target
from .contract import CallOptions, Method

#: gradcam's names for zennit's composites.
COMPOSITES: Dict[str, str] = {
    "epsilon-plus-flat": "EpsilonPlusFlat",
    "epsilon-gamma-box": "EpsilonGammaBox",
    "alpha-beta": "EpsilonAlpha2Beta1",
}


def _zennit() -> Any:
    try:
        import zennit.canonizers
        import zennit.composites
        import zennit.torchvision  # noqa: F401
    except ImportError as e:  # zennit, or the torchvision it imports
        raise ImportError(f"lrp needs zennit (and torchvision): pip install 'gradcam[lrp]' ({e}).") from e
    return zennit


def canonizers_for(model: nn.Module) -> List[Any]:
    """zennit's canonizers for ``model``: the ResNet canonizer when it has torchvision residual blocks,
    else BatchNorm merged into the preceding layer of each ``nn.Sequential`` (VGG-style networks)."""
    z = _zennit()
    kinds = (z.torchvision.ResNetBottleneck, z.torchvision.ResNetBasicBlock)
    if any(isinstance(m, kinds) for m in model.modules()):
        return [z.torchvision.ResNetCanonizer()]
    return [z.canonizers.SequentialMergeBatchNorm()]


class LRP(Method):
    """LRP: the relevance R_i of each input pixel for the score y^c, with zennit's rules for each layer type.

    ``composite``: ``"epsilon-plus-flat"`` (epsilon rule for dense layers, z+ for convolutions, flat for the
    first layer), ``"epsilon-gamma-box"`` (z^B box rule on the first layer with bounds ``low``/``high``, gamma
    for convolutions, epsilon for dense layers) or ``"alpha-beta"`` (alpha=2, beta=1 for convolutions). The
    relevance of the output is the one-hot seed of the target, so sum_i R_i ~ y^c where the rules conserve.
    Canonizers (BatchNorm merging, ResNet blocks) run on a private deep copy of the model made for each call
    under the model's lock: the user's model is never changed, and other threads are unaffected.
    ``pixels`` (N, K, C, H, W) is the relevance; ``maps`` its ``reduce`` saliency (default: positive part).
    """

    name = "lrp"
    output = "pixels"
    supports = frozenset({"forward_kwargs"})
    refusals = {
        "counterfactual": "its rules propagate the relevance of y itself (the z+ and alpha-beta rules are "
        "not symmetric in the sign). Use gradient-x-input or gradcam with counterfactual=True"
    }

    def __init__(
        self,
        model: nn.Module,
        *,
        composite: str = "epsilon-plus-flat",
        low: float = -1.0,
        high: float = 1.0,
        epsilon: float = 1e-6,
        reduce: str = "positive",
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if composite not in COMPOSITES:
            raise ValueError(f"composite must be one of {', '.join(COMPOSITES)}; got {composite!r}.")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}.")
        if not low < high:
            raise ValueError(
                f"low must be below high (the input's value range, for the box rule); got {low}, {high}."
            )
        _zennit()
        self.composite, self.low, self.high = composite, float(low), float(high)
        self.epsilon, self.reduce, self.eval_mode = epsilon, reduce, eval_mode

    def _composite(self, x: torch.Tensor, model: nn.Module) -> Any:
        z = _zennit()
        cls = getattr(z.composites, COMPOSITES[self.composite])
        kw: Dict[str, Any] = {"canonizers": canonizers_for(model), "epsilon": self.epsilon}
        if self.composite == "epsilon-gamma-box":
            kw.update(low=torch.full_like(x, self.low), high=torch.full_like(x, self.high))
        return cls(**kw)

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        self._images_only(x)
        forward_kwargs = opts.forward_kwargs or None
        with engine.model_lock(self.model):
            private = copy.deepcopy(self.model)
        if self.eval_mode:
            private.eval()
        with self._composite(x, private).context(private):
            cap = engine.capture(
                private,
                x,
                [],
                target,
                top_k,
                gradients=False,
                input_gradient=True,
                eval_mode=self.eval_mode,
                forward_kwargs=forward_kwargs,
            )
        assert cap.input_gradient is not None  # asked for with input_gradient=True
        return pixel_explanation(cap.input_gradient, cap, self.name, self.reduce, False)
