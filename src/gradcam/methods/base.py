"""The base of every layer-based CAM method: capture once, weight channels, ReLU, upsample, normalise.

A method subclass only states how the channel weights alpha are computed from what the engine
captured (``_weights``), and whether it needs gradients at all. The call contract (every option accepted
or refused with a clear error) is :class:`gradcam.methods.contract.Method`'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
from typing import Callable, ClassVar, Dict, List, Optional, Tuple, cast

import torch
from torch import nn

from .. import engine
from ..explanation import INTERPOLATIONS, Explanation, normalize, upsample
from ..layers import (
    LayerRef,
    LayerSpec,
    auto_candidates,
    check_autograd,
    gradient_reaches,
    resolve_layers,
    settle_without_gradient,
    warn_if_no_gradient,
)
from ..targets import Target, logits_of
from . import smoothing
from .contract import OPTIONS, CallOptions, Method

log = logging.getLogger("gradcam")


#: ``layer="auto"``: a first call with at most this many inputs finds the layer and captures it in one forward
#: (:func:`gradcam.engine.search_capture`, which records autograd from the first candidate layer on); a larger
#: batch lists the candidates on one image first, then captures the latest map (and searches when it fails).
ONE_PASS_BATCH = 8

_NO_AUTO_LAYER = (
    "layer='auto' found no spatial layer on which the target depends (a target callable that "
    "detaches its result, e.g. with .item() or .argmax(), also looks like this); pass layer=... "
    "explicitly."
)


class LayerMethod(Method):
    """Base class: ``method(x, target=None, top_k=None, *, counterfactual=False, forward_kwargs=None,
    aug_smooth=None, eigen_smooth=None) -> Explanation`` (the :class:`~gradcam.methods.contract.Method` contract).

    map_k = ReLU( sum_c alpha_k^c A^c ), upsampled to the input size and min-max normalised.
    ``differentiable=True``: the result keeps the graph, so a loss on its maps trains the parameters
    (the one exception to "no parameter gradients"; see :mod:`gradcam.differentiable`).

    A method object may be called from any number of threads at once: the engine runs each call on a
    private view of the model, and the ``layer="auto"`` cache (one candidate list per input shape) is
    filled and trimmed under the object's own lock.
    """

    name = "base"
    needs_gradients = True
    supports = frozenset(OPTIONS)
    #: Whether ``differentiable=True`` is honoured (refused at construction otherwise).
    supports_differentiable: ClassVar[bool] = True

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
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if differentiable and not self.supports_differentiable:
            raise ValueError(
                f"differentiable=True supports layer-based CAM methods only (Grad-CAM, CAM); {type(self).__name__} "
                f"('{self.name}') computes its maps without the graph. Use differentiable=False for this method."
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}."
            )
        self.interpolation = interpolation
        self.reshape = reshape
        self.eval_mode = eval_mode
        # differentiable=True: maps keep the autograd graph w.r.t. the parameters (see gradcam.differentiable).
        self.differentiable = bool(differentiable)
        self._auto = isinstance(layer, str) and layer == "auto"
        self._layers: Optional[List[LayerRef]] = None if self._auto else resolve_layers(model, layer)
        self._auto_cache: dict = {}
        self._auto_listed: dict = {}  # "auto": every candidate per input shape, untrimmed (see methods.shared)
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

    def _raw(
        self, cap: engine.Capture, i: int, eigen_smooth: bool
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """ReLU'd raw map (N, K, *spatial) of layer ``i`` and its weights; ``eigen_smooth`` replaces the channel
        sum by the first principal component of the per-channel terms (see :mod:`.smoothing`)."""
        if eigen_smooth:
            terms, w = self._channel_maps(cap, i)
            return torch.relu(smoothing.first_component(terms)), w
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
                kw = {
                    k: v[:1] if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == x.shape[0] else v
                    for k, v in (forward_kwargs or {}).items()
                }
                with engine.private_model(self.model, self.eval_mode) as view:
                    refs = auto_candidates(view.model, x[:1], self.reshape, kw)
                    found = [dataclasses.replace(r, module=view.original(r.module)) for r in refs]
                self._auto_cache[key] = found
                self._auto_listed.setdefault(key, found)
        return found

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        capture = (
            functools.partial(engine.capture, differentiable=True) if self.differentiable else engine.capture
        )
        check_autograd(x, self.needs_gradients)
        run = functools.partial(
            capture,
            self.model,
            x,
            target=target,
            top_k=top_k,
            gradients=self.needs_gradients,
            counterfactual=counterfactual,
            reshape=self.reshape,
            eval_mode=self.eval_mode,
            **kw,
        )
        if self._layers is not None:
            return run(self._layers)
        if self._first_in_one_pass(x, kw):
            cap = self._first_call(x, target, top_k, counterfactual, kw.get("forward_kwargs"))
            if cap is not None:
                return cap  # else the chosen layer's output was changed in place: captured below on its own
        candidates = self._candidates(x, kw.get("forward_kwargs"))
        fallback = None
        try:  # the latest map (or the layer an earlier call chose for this shape): the answer for most models
            cap = run(candidates[:1])
            if not self.needs_gradients or bool(gradient_reaches(cap.gradient(0)).any()):
                log.debug("gradcam: layer='auto' chose %r", candidates[0].spec)
                return cap
            fallback = cap  # e.g. a ViT's final norm: its patch tokens get no gradient (only the class token)
        except engine.LayerNotUsedError:
            pass
        j, cap = self._search(x, target, top_k, counterfactual, candidates, kw.get("forward_kwargs"))
        if j is None:  # no candidate gets a gradient (a zero head): the latest one, and a warning
            if fallback is None and cap is None:
                raise ValueError(_NO_AUTO_LAYER)
            key = tuple(x.shape[1:])  # the output does not depend on the input: say so, cache it
            return settle_without_gradient(
                self._auto_cache, self._lock, key, candidates, fallback if fallback is not None else cap
            )
        if not self.differentiable and not set(kw) - {"forward_kwargs"}:
            return cap  # the search pass is this call's capture
        return run([candidates[j]])

    def _first_in_one_pass(self, x: torch.Tensor, kw: dict) -> bool:
        """Whether this call finds the ``"auto"`` layer and captures it in one forward (:meth:`_first_call`):
        the first call for this input shape, a batch of at most :data:`ONE_PASS_BATCH`, a plain capture."""
        return (
            isinstance(x, torch.Tensor)  # anything else gets check_input's error on the usual path
            and x.dim() > 0
            and x.shape[0] <= ONE_PASS_BATCH
            and not self.differentiable
            and not set(kw) - {"forward_kwargs"}
            and tuple(x.shape[1:]) not in self._auto_cache
        )

    def _first_call(self, x, target, top_k, counterfactual, forward_kwargs) -> Optional[engine.Capture]:
        """``layer="auto"``, first call for this input shape: :func:`gradcam.engine.search_capture` lists the
        candidates, chooses the layer (the same as the listing, the latest map and the search would) and
        captures it, all in one forward; the per-shape cache starts at the chosen layer. ``None`` when the
        search could not take the chosen layer's value from its pass (the cache is filled all the same)."""
        found = engine.search_capture(
            self.model,
            x,
            target,
            top_k,
            gradients=self.needs_gradients,
            counterfactual=counterfactual,
            reshape=self.reshape,
            eval_mode=self.eval_mode,
            forward_kwargs=forward_kwargs,
        )
        key, candidates = tuple(x.shape[1:]), found.candidates
        with self._lock:  # another thread may have filled it meanwhile: keep that one
            self._auto_cache.setdefault(key, candidates[found.chosen :] if found.chosen else candidates)
            self._auto_listed.setdefault(key, candidates)
        if not found.exact:
            return None
        if found.chosen is not None:
            log.debug("gradcam: layer='auto' chose %r", candidates[found.chosen].spec)
            return cast(engine.Capture, found.capture)
        if found.capture is None:
            raise ValueError(_NO_AUTO_LAYER)
        # the output does not depend on the input: say so, cache it
        return settle_without_gradient(self._auto_cache, self._lock, key, candidates, found.capture)

    def _search(self, x, target, top_k, counterfactual, candidates: List[LayerRef], forward_kwargs):
        """``layer="auto"`` past the first candidate, in one pass: one forward tapping candidates 1 to 23
        (latest first) and one backward reaching them all; the first whose map positions receive the
        target's gradient.

        Returns its index in ``candidates`` and its capture; ``(None, capture)`` when none gets a gradient
        (the capture of the latest one the score depends on, or ``None``). The per-shape cache is trimmed
        to start at the chosen layer, so later calls capture that one layer only.
        """
        refs = candidates[1:24]
        if not refs:
            return None, None
        try:
            cap = engine.capture(
                self.model,
                x,
                refs,
                target,
                top_k,
                counterfactual=counterfactual,
                reshape=self.reshape,
                eval_mode=self.eval_mode,
                forward_kwargs=forward_kwargs,
                require_all_layers=False,
            )
        except engine.LayerNotUsedError:
            return None, None
        grads = cap.gradients
        used = [i for i, g in enumerate(grads) if g is not None]
        reached = [i for i, g in enumerate(grads) if g is not None and bool(gradient_reaches(g).any())]
        if not reached:
            return None, (self._one_layer(cap, refs[used[0]], used[0]) if used else None)
        i = reached[0]
        key = tuple(x.shape[1:])
        with self._lock:  # trim only the list this call read (another thread may have trimmed it)
            if self._auto_cache.get(key) is candidates:
                self._auto_cache[key] = candidates[i + 1 :]
        log.debug("gradcam: layer='auto' chose %r", refs[i].spec)
        return i + 1, self._one_layer(cap, refs[i], i)

    @staticmethod
    def _one_layer(cap: engine.Capture, ref: LayerRef, j: int) -> engine.Capture:
        """Layer ``j`` of a capture of several layers, as the capture of that layer alone."""
        return engine.Capture(
            output=cap.output,
            scores=cap.scores,
            targets=cap.targets,
            layers=[ref],
            activations=[cap.activations[j]],
            gradients=[cap.gradients[j]],
        )

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        """One call (see :meth:`Method.__call__`): ``aug_smooth`` runs the views, else one capture."""
        if opts.aug_smooth:
            if opts.forward_kwargs:
                raise ValueError(
                    "aug_smooth=True does not take forward_kwargs (the augmented views are a new "
                    "batch); use aug_smooth=False with forward_kwargs."
                )
            return self._aug_explain(x, target, top_k, opts.counterfactual, opts.eigen_smooth)
        cap = self._capture(x, target, top_k, opts.counterfactual, forward_kwargs=opts.forward_kwargs or None)
        return self._explain(cap, x.shape[2:], opts.counterfactual, opts.eigen_smooth)

    def _explain(
        self, cap: engine.Capture, size, counterfactual: bool, eigen_smooth: bool = False
    ) -> Explanation:
        per_layer = {}
        for i, ref in enumerate(cap.layers):
            raw, w = self._raw(cap, i, eigen_smooth)
            maps = normalize(upsample(raw, size, self.interpolation), dims=len(size))
            if self.needs_gradients and not bool(raw.flatten(2).amax(-1).gt(0).all()):  # a zero map: why?
                warn_if_no_gradient(cap.gradients[i], ref.spec)
            per_layer[ref.spec] = Explanation(
                maps=maps,
                raw=raw,
                weights=w,
                targets=cap.targets,
                scores=cap.scores,
                layer=ref.spec,
                method=self.name,
                interpolation=self.interpolation,
                counterfactual=counterfactual,
                output=cap.output,
            )
        if len(per_layer) == 1:
            return next(iter(per_layer.values()))
        # Several layers: the mean of the per-layer normalised maps, normalised again; raw and weights
        # are those of the last layer listed; every layer's own result is in ``per_layer``.
        last = list(per_layer.values())[-1]
        combined = self._fuse(per_layer, size)
        return Explanation(
            maps=combined,
            raw=last.raw,
            weights=last.weights,
            targets=cap.targets,
            scores=cap.scores,
            layer="+".join(per_layer),
            method=self.name,
            interpolation=self.interpolation,
            counterfactual=counterfactual,
            output=cap.output,
            per_layer=per_layer,
        )

    def _fuse(self, per_layer: Dict[str, Explanation], size) -> torch.Tensor:
        """Several layers' results into one map (N, K, H, W): the mean of the normalised maps, normalised."""
        return normalize(torch.stack([e.maps for e in per_layer.values()]).mean(0), dims=len(size))

    # -- aug_smooth: the views of gradcam.methods.smoothing ------------------------------------
    def _aug_explain(
        self, x: torch.Tensor, target, top_k: Optional[int], counterfactual: bool, eigen_smooth: bool
    ) -> Explanation:
        """The explanation averaged over :data:`~gradcam.methods.smoothing.AUGMENTATIONS`.

        Every view explains the classes of the un-augmented image (for ``target=None`` / ``top_k``: picked
        from the identity view's scores in the same pass). Callable targets are refused: they may score a
        spatial region (a box, a segment) that a flip moves. All views go in one pass up to
        ``smoothing.VIEW_BATCH`` images; a larger batch goes a few views per pass.
        """
        if callable(target) and not isinstance(target, torch.Tensor):
            raise ValueError(
                "aug_smooth=True needs class targets (None, top_k, ids): a callable target may score a spatial "
                "region (a box, a segment) that the flipped views move, so the views would explain different "
                "things. Use aug_smooth=False for callable targets."
            )
        engine.check_input(self.model, x)
        n = x.shape[0]
        xa = smoothing.augment(x)
        step = n * max(1, smoothing.VIEW_BATCH // n)
        first_target, chosen = self._view_targets(x, target, top_k, step, xa.shape[0])
        parts = []
        for i in range(0, xa.shape[0], step):
            if i == 0:
                cap = self._capture(xa[:step], first_target, None, counterfactual)
                if chosen:
                    cap.targets = chosen["ids"].repeat(cap.targets.shape[0] // n, 1)
                ids = cap.targets[:n]
            else:
                cap = self._capture(
                    xa[i : i + step], ids.repeat(min(step, xa.shape[0] - i) // n, 1), None, counterfactual
                )
            parts.append(self._explain(cap, x.shape[-2:], counterfactual, eigen_smooth))
        ex = parts[0] if len(parts) == 1 else smoothing.concat(parts)
        out0 = parts[0].output
        first = Explanation(
            maps=ex.maps[:n],
            raw=ex.raw[:n],
            weights=None,
            targets=ids,
            scores=parts[0].scores[:n],
            layer=ex.layer,
            output=out0[:n] if isinstance(out0, torch.Tensor) else None,
        )
        out = smoothing.merge(ex, n, first)
        if ex.per_layer:
            out.per_layer = {name: smoothing.merge(e, n, first) for name, e in ex.per_layer.items()}
        return out

    def _view_targets(self, x: torch.Tensor, target, top_k: Optional[int], step: int, views: int):
        """The first pass's target for the stacked views, and the dict the picked class ids land in.

        Explicit targets, or a method that re-scores perturbed inputs: resolved on the images first. Else a
        callable that picks the classes (top-1 / ``top_k``) from the identity view's logits in the same pass.
        """
        n = x.shape[0]
        chosen: dict = {}
        if target is not None or type(self)._capture is not LayerMethod._capture:
            cap = engine.capture(self.model, x, [], target, top_k, gradients=False, eval_mode=self.eval_mode)
            return cap.targets.repeat(step // n, 1)[: min(step, views)], chosen

        def pick(output):
            logits = logits_of(output)
            chosen["ids"] = logits[:n].detach().topk(top_k or 1, dim=1).indices
            return logits.gather(1, chosen["ids"].repeat(logits.shape[0] // n, 1))

        return pick, chosen
