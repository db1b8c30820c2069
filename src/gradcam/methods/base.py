"""The base of every layer-based CAM method: capture once, weight channels, ReLU, upsample, normalise.

A method subclass only states how the channel weights alpha are computed from what the engine
captured (``_weights``), and whether it needs gradients at all.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import engine
from ..explanation import INTERPOLATIONS, Explanation, normalize, upsample
from ..layers import LayerRef, LayerSpec, auto_candidates, resolve
from ..targets import Target
from .smoothing import aug_explain, first_component

log = logging.getLogger("gradcam")


class LayerMethod:
    """Base class: ``method(x, target=None, top_k=None, counterfactual=False) -> Explanation``.

    map_k = ReLU( sum_c alpha_k^c A^c ), upsampled to the input size and min-max normalised.
    """

    name = "base"
    needs_gradients = True

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        interpolation: str = "bilinear",
        reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}.")
        self.model = model
        self.interpolation = interpolation
        self.reshape = reshape
        self.eval_mode = eval_mode
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)
        self._auto = isinstance(layer, str) and layer == "auto"
        self._layers: Optional[List[LayerRef]] = None if self._auto else resolve(model, layer)
        self._auto_cache: dict = {}

    # -- what subclasses define --------------------------------------------------------------
    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        """Channel weights alpha (N, K, C) for layer ``i`` of the capture."""
        raise NotImplementedError

    def _map(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The map before ReLU (N, K, *spatial) and the channel weights (N, K, C) or ``None``.

        Default: sum_c alpha_k^c A^c. Methods whose map is not a weighted channel sum override this.
        """
        a = cap.activations[i]
        w = self._weights(cap, i).to(a.dtype)
        if a.dim() == 4:  # the 2-D path exactly as before
            return torch.einsum("nkc,nchw->nkhw", w, a), w
        return torch.einsum("nkc,nc...->nk...", w, a), w

    def _channel_maps(self, cap: engine.Capture, i: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Per-channel terms (N, K, C, *spatial) whose sum over C is :meth:`_map` (for ``eigen_smooth``)."""
        a = cap.activations[i]
        w = self._weights(cap, i).to(a.dtype)
        return w.reshape(*w.shape, *([1] * (a.dim() - 2))) * a.unsqueeze(1), w

    def _raw(self, cap: engine.Capture, i: int, eigen_smooth: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """ReLU'd raw map (N, K, *spatial) of layer ``i`` and its weights; ``eigen_smooth`` replaces the channel
        sum by the first principal component of the per-channel terms (see :mod:`.smoothing`)."""
        if eigen_smooth:
            terms, w = self._channel_maps(cap, i)
            return torch.relu(first_component(terms)), w
        m, w = self._map(cap, i)
        return torch.relu(m), w

    # -- the shared path ---------------------------------------------------------------------
    def layers_for(self, x: torch.Tensor) -> List[LayerRef]:
        """The layer(s) used for input ``x`` (resolving ``"auto"`` once per input shape)."""
        if not self._auto:
            return self._layers
        key = tuple(x.shape[1:])
        if key not in self._auto_cache:
            engine.check_input(self.model, x)
            state = engine.ModelState(self.model)
            try:
                if self.eval_mode:
                    self.model.eval()
                self._auto_cache[key] = auto_candidates(self.model, x[:1], self.reshape)
            finally:
                state.restore()
        return self._auto_cache[key][:1]

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        layers = self.layers_for(x)
        if not self._auto:
            return engine.capture(
                self.model, x, layers, target, top_k, gradients=self.needs_gradients,
                counterfactual=counterfactual, reshape=self.reshape, eval_mode=self.eval_mode, **kw,
            )
        candidates = self._auto_cache[tuple(x.shape[1:])]
        for j, ref in enumerate(candidates[:10]):
            try:
                cap = engine.capture(
                    self.model, x, [ref], target, top_k, gradients=self.needs_gradients,
                    counterfactual=counterfactual, reshape=self.reshape, eval_mode=self.eval_mode, **kw,
                )
            except engine.LayerNotUsedError:
                continue
            if j:
                self._auto_cache[tuple(x.shape[1:])] = candidates[j:]
            log.debug("gradcam: layer='auto' chose %r", ref.spec)
            return cap
        raise ValueError(
            "layer='auto' found no spatial layer on which the target depends (a target callable that detaches "
            "its result, e.g. with .item() or .argmax(), also looks like this); pass layer=... explicitly."
        )

    def __call__(
        self,
        x: torch.Tensor,
        target: Target = None,
        top_k: Optional[int] = None,
        *,
        counterfactual: bool = False,
        aug_smooth: Optional[bool] = None,
        eigen_smooth: Optional[bool] = None,
    ) -> Explanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`).

        ``aug_smooth`` / ``eigen_smooth`` (default: the constructor's) turn on test-time augmentation and
        principal-component smoothing (:mod:`gradcam.methods.smoothing`).
        """
        eigen = self.eigen_smooth if eigen_smooth is None else bool(eigen_smooth)
        if self.aug_smooth if aug_smooth is None else aug_smooth:
            return aug_explain(self, x, target, top_k, counterfactual, eigen)
        cap = self._capture(x, target, top_k, counterfactual)
        return self._explain(cap, x.shape[-2:], counterfactual, eigen)

    def _explain(self, cap: engine.Capture, size, counterfactual: bool, eigen_smooth: bool = False) -> Explanation:
        per_layer = {}
        for i, ref in enumerate(cap.layers):
            raw, w = self._raw(cap, i, eigen_smooth)
            maps = normalize(upsample(raw, size, self.interpolation))
            per_layer[ref.spec] = Explanation(
                maps=maps, raw=raw, weights=w, targets=cap.targets, scores=cap.scores, layer=ref.spec,
                method=self.name, interpolation=self.interpolation, counterfactual=counterfactual,
                output=cap.output,
            )
        if len(per_layer) == 1:
            return next(iter(per_layer.values()))
        # Several layers: the mean of the per-layer normalised maps, normalised again; raw and weights
        # are those of the last layer listed; every layer's own result is in ``per_layer``.
        last = list(per_layer.values())[-1]
        combined = self._fuse(per_layer, size)
        return Explanation(
            maps=combined, raw=last.raw, weights=last.weights, targets=cap.targets, scores=cap.scores,
            layer="+".join(per_layer), method=self.name, interpolation=self.interpolation,
            counterfactual=counterfactual, output=cap.output, per_layer=per_layer,
        )

    def _fuse(self, per_layer: Dict[str, Explanation], size) -> torch.Tensor:
        """Several layers' results into one map (N, K, H, W): the mean of the normalised maps, normalised."""
        return normalize(torch.stack([e.maps for e in per_layer.values()]).mean(0))
