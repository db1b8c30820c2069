"""The base of every layer-based CAM method: capture once, weight channels, ReLU, upsample, normalise.

A method subclass only states how the channel weights alpha are computed from what the engine
captured (``_weights``), and whether it needs gradients at all.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .. import differentiable, engine
from ..explanation import INTERPOLATIONS, Explanation, normalize, upsample
from ..layers import LayerRef, LayerSpec, auto_candidates, gradient_reaches, resolve, warn_if_no_gradient
from ..targets import Target
from .smoothing import aug_explain, first_component

log = logging.getLogger("gradcam")


class LayerMethod:
    """Base class: ``method(x, target=None, top_k=None, counterfactual=False) -> Explanation``.

    map_k = ReLU( sum_c alpha_k^c A^c ), upsampled to the input size and min-max normalised.
    ``differentiable=True``: the result keeps the graph, so a loss on its maps trains the parameters
    (the one exception to "no parameter gradients"; see :mod:`gradcam.differentiable`).

    A method object may be called from any number of threads at once: the engine runs each call on a
    private view of the model, and the ``layer="auto"`` cache (one candidate list per input shape) is
    filled and trimmed under the object's own lock.
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
        differentiable: bool = False,
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
        # differentiable=True: maps keep the autograd graph w.r.t. the parameters (see gradcam.differentiable).
        self.differentiable = differentiable
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)
        self._auto = isinstance(layer, str) and layer == "auto"
        self._layers: Optional[List[LayerRef]] = None if self._auto else resolve(model, layer)
        self._auto_cache: dict = {}
        self._lock = threading.RLock()

    def __getstate__(self) -> dict:  # a lock does not pickle (e.g. sending a method to a worker process)
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

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
    def layers_for(self, x: torch.Tensor, forward_kwargs: Optional[dict] = None) -> List[LayerRef]:
        """The layer(s) used for input ``x`` (resolving ``"auto"`` once per input shape)."""
        if self._layers is not None:
            return self._layers
        return self._candidates(x, forward_kwargs)[:1]

    def _candidates(self, x: torch.Tensor, forward_kwargs: Optional[dict] = None) -> List[LayerRef]:
        """``layer="auto"``: the spatial layers for inputs shaped like ``x``, latest first (cached per shape).

        Found by one gradient-free forward of a private eval-mode view of the model; the cache is written
        under the lock, only after the search succeeded, so an error in one thread leaves no entry behind.
        """
        engine.check_input(self.model, x)
        key = tuple(x.shape[1:])
        with self._lock:
            found = self._auto_cache.get(key)
            if found is None:
                kw = {k: v[:1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == x.shape[0] else v
                      for k, v in (forward_kwargs or {}).items()}
                with engine.private_model(self.model, self.eval_mode) as view:
                    refs = auto_candidates(view.model, x[:1], self.reshape, kw)
                    found = [dataclasses.replace(r, module=view.original(r.module)) for r in refs]
                self._auto_cache[key] = found
        return found

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        capture = differentiable.capture if self.differentiable else engine.capture
        if self._layers is not None:
            return capture(
                self.model, x, self._layers, target, top_k, gradients=self.needs_gradients,
                counterfactual=counterfactual, reshape=self.reshape, eval_mode=self.eval_mode, **kw,
            )
        candidates = self._candidates(x, kw.get("forward_kwargs"))
        first = None
        for j, ref in enumerate(candidates[:24]):
            try:
                cap = capture(
                    self.model, x, [ref], target, top_k, gradients=self.needs_gradients,
                    counterfactual=counterfactual, reshape=self.reshape, eval_mode=self.eval_mode, **kw,
                )
            except engine.LayerNotUsedError:
                continue
            if self.needs_gradients and not bool(gradient_reaches(cap.gradient(0)).any()):
                first = first or cap  # e.g. a ViT's final norm: its patch tokens get no gradient (only the class token)
                continue
            if j:
                key = tuple(x.shape[1:])
                with self._lock:  # trim only the list this call read (another thread may have trimmed it)
                    if self._auto_cache.get(key) is candidates:
                        self._auto_cache[key] = candidates[j:]
            log.debug("gradcam: layer='auto' chose %r", ref.spec)
            return cap
        if first is not None:  # no candidate gets a gradient (a zero head): the latest one, and a warning
            return first
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
        forward_kwargs: Optional[dict] = None,
        aug_smooth: Optional[bool] = None,
        eigen_smooth: Optional[bool] = None,
    ) -> Explanation:
        """Explain ``x`` (N, C, H, W), or volumes (N, C, D, H, W), for ``target`` (see :mod:`gradcam.targets`).

        ``forward_kwargs``: extra arguments of the model's forward, ``model(x, **forward_kwargs)`` (an
        attention mask, text ids, a second image); batched tensors among them are sliced with ``x``.

        ``aug_smooth`` / ``eigen_smooth`` (default: the constructor's) turn on test-time augmentation and
        principal-component smoothing (:mod:`gradcam.methods.smoothing`).
        """
        eigen = self.eigen_smooth if eigen_smooth is None else bool(eigen_smooth)
        if self.aug_smooth if aug_smooth is None else aug_smooth:
            if forward_kwargs:
                raise ValueError("aug_smooth=True does not take forward_kwargs (the augmented views are a new "
                                 "batch); use aug_smooth=False with forward_kwargs.")
            return aug_explain(self, x, target, top_k, counterfactual, eigen)
        cap = self._capture(x, target, top_k, counterfactual, forward_kwargs=forward_kwargs)
        return self._explain(cap, x.shape[2:], counterfactual, eigen)

    def _explain(self, cap: engine.Capture, size, counterfactual: bool, eigen_smooth: bool = False) -> Explanation:
        per_layer = {}
        for i, ref in enumerate(cap.layers):
            raw, w = self._raw(cap, i, eigen_smooth)
            maps = normalize(upsample(raw, size, self.interpolation), dims=len(size))
            if self.needs_gradients and not bool(raw.flatten(2).amax(-1).gt(0).all()):  # a zero map: why?
                warn_if_no_gradient(cap.gradients[i], ref.spec)
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
        return normalize(torch.stack([e.maps for e in per_layer.values()]).mean(0), dims=len(size))
