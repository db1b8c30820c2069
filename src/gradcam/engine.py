"""The capture engine: one forward pass with the chosen layers tapped, one batched backward.

Everything that touches the user's model lives here, scoped to one call, and the user's model object
itself is never changed (so any number of threads may explain it at once, also while another thread
trains it):

- the forward pass runs on a *private view* of the model (:func:`private_model`): a shallow copy of
  every module that shares the parameter and buffer storage but holds its own ``training`` flag, its
  own hook dictionaries and parameters that do not require grad. Hooks are registered on the view only
  (no other thread's forward ever sees them), eval mode is set on the view only, and autograd records
  only the part of the network after the tapped layer, whose output is handed on as a fresh leaf that
  requires grad (no parameter gradient is ever computed or stored, ``.grad`` is never touched);
- gradients come from ``torch.autograd.grad`` with respect to the captured activations (and the input
  where a method needs it), for all K targets at once (``is_grads_batched``);
- grad mode is thread-local in torch: ``torch.enable_grad()`` around the call affects the calling
  thread only.

The one exception, ``capture(..., differentiable=True)`` (``GradCAM(model, differentiable=True)``, see
:mod:`gradcam.differentiable`): the view holds the user's parameters themselves so that the maps keep the
graph w.r.t. them; everything else (own ``training`` flags and hooks, the user's model never switched) holds.

Models that cannot be viewed that way (TorchScript, ``torch.compile``, lazy modules, a ``forward``
replaced on the instance) take the *locked path*: one call at a time per model (a per-model lock),
``requires_grad`` switched off and eval mode set on the model itself and restored in ``finally``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import threading
import warnings
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    ContextManager,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    cast,
)

import torch
from torch import nn
from torch.autograd.graph import GradientEdge

from . import cuts as _cuts
from . import layers as _layers
from . import targets as _targets
from .layers import LayerRef, check_autograd

Reshape = Optional[Callable[[torch.Tensor], torch.Tensor]]

# vmap's note that an operator has no batching rule (the batched backward of K targets then loops inside
# torch): silenced by one filter for that message, set once here, because ``warnings.catch_warnings``
# around each call changes the process-wide filter list and is not thread-safe.
warnings.filterwarnings(
    "ignore",
    message="There is a performance drop because we have not yet implemented the batching rule",
    category=UserWarning,
)


# ---- mixed precision: autocast around the forward only -------------------------------------------

#: The precisions of ``precision=`` / ``--precision``: name -> autocast dtype (``None``: no autocast).
PRECISIONS: Dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("gradcam_precision", default="fp32")
_FP16_CPU = (
    "precision='fp16' needs a CUDA or MPS device (float16 autocast on a CPU is slow and loses range); "
    "on a CPU use precision='bf16' or 'fp32'."
)


def check_precision(precision: Optional[str]) -> str:
    """``precision`` as one of ``fp32``, ``bf16``, ``fp16`` (``None``: ``fp32``); a ValueError naming the choices."""
    p = "fp32" if precision is None else str(precision).lower()
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}.")
    return p


@contextlib.contextmanager
def precision(value: Optional[str]) -> Iterator[None]:
    """Within the block (this thread / context only), the engine's forward passes run under
    ``torch.autocast`` at ``value`` (``"bf16"``, ``"fp16"``; ``"fp32"``: none); gradients, activations and
    maps stay float32 (see :func:`forward_autocast`). The model itself is never changed."""
    token = _PRECISION.set(check_precision(value))
    try:
        yield
    finally:
        _PRECISION.reset(token)


def current_precision() -> str:
    """The precision of this context's forward passes (``"fp32"`` unless inside :func:`precision`)."""
    return _PRECISION.get()


def forward_autocast(device: torch.device) -> ContextManager:
    """``torch.autocast`` for a forward pass on ``device`` at the current precision (a no-op at ``fp32``).

    ``fp16`` on a CPU is refused with a ValueError (use ``bf16`` there)."""
    p = _PRECISION.get()
    if p == "fp32":
        return contextlib.nullcontext()
    if p == "fp16" and device.type == "cpu":
        raise ValueError(_FP16_CPU)
    return torch.autocast(device.type, dtype=PRECISIONS[p])


def upcast(output: Any) -> Any:
    """Float16/bfloat16 tensors in a model output (tensor, dict, list, tuple) as float32 (in the graph)."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in (torch.float16, torch.bfloat16) else output
    if isinstance(output, dict):
        return {k: upcast(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)) and not hasattr(output, "_fields"):
        return type(output)(upcast(v) for v in output)
    return output


def run_forward(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)`` under :func:`forward_autocast` (the extra forward passes of perturbation methods), its
    output upcast to float32 when a lower precision is in effect."""
    if _PRECISION.get() == "fp32":
        return model(x)
    with forward_autocast(x.device):
        out = model(x)
    return upcast(out)


@dataclass(slots=True)
class Capture:
    """What one engine call recorded (declared fields only: the class has ``__slots__``).

    - ``output``: the model's output (detached);
    - ``scores`` (N, K): the explained scores y; ``targets`` (N, K): their class ids (-1 for callables);
    - ``activations``: per layer, A (N, C, h, w) (after ``reshape``), detached;
    - ``gradients``: per layer, dy/dA (N, K, C, h, w), or ``None`` when not asked for;
    - ``input_gradient``: dy/dx (N, K, C_in, H, W) when asked for;
    - ``perturbation_weights``: per layer, channel weights (N, K, C) measured by extra forward passes
      (Score-CAM, Ablation-CAM; empty for every other method);
    - ``hessian_products``: per layer, H A = d/dA (dy/dA . A) (N, K, C, h, w), the Hessian of y w.r.t. the
      activation applied to the activation itself, when asked for (``capture(..., hessian=True)``: Shapley-CAM).

    With ``differentiable=True`` nothing but ``targets`` is detached (see :func:`capture`).
    """

    output: Any
    scores: torch.Tensor
    targets: torch.Tensor
    layers: List[LayerRef]
    activations: List[torch.Tensor] = field(default_factory=list)
    gradients: List[Optional[torch.Tensor]] = field(default_factory=list)
    input_gradient: Optional[torch.Tensor] = None
    perturbation_weights: List[torch.Tensor] = field(default_factory=list)
    hessian_products: List[Optional[torch.Tensor]] = field(default_factory=list)

    def gradient(self, i: int) -> torch.Tensor:
        """dy/dA of layer ``i`` (N, K, C, h, w); a ``ValueError`` when the call did not compute gradients."""
        g = self.gradients[i]
        if g is None:
            raise ValueError(
                f"No gradient was captured for layer {i}: capture(..., gradients=True) computes it."
            )
        return g


class LayerNotUsedError(ValueError):
    """The explained score does not depend on a tapped layer."""


class ModelState:
    """Training flags and ``requires_grad`` flags of a model, saved to be restored exactly."""

    def __init__(self, model: nn.Module):
        # One walk over ``_modules`` / ``_parameters`` (``model.modules()`` and ``model.parameters()``
        # build name prefixes and walk twice: a measurable share of a small model's forward).
        self.training = []
        self.requires_grad = []
        seen_m, seen_p = set(), set()
        stack = [model]
        while stack:
            m = stack.pop()
            if id(m) in seen_m:
                continue
            seen_m.add(id(m))
            self.training.append((m, m.training))
            for p in m._parameters.values():
                if p is not None and id(p) not in seen_p:
                    seen_p.add(id(p))
                    self.requires_grad.append((p, p.requires_grad))
            stack.extend(c for c in m._modules.values() if c is not None)

    def restore(self) -> None:
        for m, flag in self.training:
            if m.training != flag:  # nn.Module.__setattr__ is slow: touch only what changed
                m.training = flag
        for p, flag in self.requires_grad:
            if p.requires_grad != flag:
                p.requires_grad_(flag)


# ---- the private view of a model ------------------------------------------------------------------

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
)
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The per-model re-entrant lock that serialises calls taking the locked path (see :func:`private_model`)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class _NotViewable(Exception):
    pass


class ModelView:
    """A model as one engine call runs it: ``model`` is the module to call, ``module(m)`` maps a module of
    the user's model to the one to hook, ``original(v)`` maps back. ``locked`` is True on the locked path
    (then the view *is* the user's model, its flags switched for the call under :func:`model_lock`)."""

    def __init__(
        self,
        model: nn.Module,
        views: Dict[int, nn.Module],
        originals: Dict[int, nn.Module],
        locked: bool = False,
    ):
        self.model = model
        self._views = views
        self._originals = originals
        self.locked = locked
        self.row_wise: List[
            nn.Module
        ] = []  # the view's row-wise modules (gradcam.cuts), for a sparse backward

    def modules(self) -> List[nn.Module]:
        """Every module of the view once, in ``model.modules()`` order (the view's copies were made in that order;
        on the locked path, the model's own)."""
        if self.locked or len(self._views) == 0:
            return list(self.model.modules())
        return [m for m in self._views.values() if m is not None]

    def module(self, original: nn.Module) -> nn.Module:
        """The module of the view that stands for ``original`` (a module of the user's model)."""
        return self._views.get(id(original), original)

    def original(self, module: nn.Module) -> nn.Module:
        """The module of the user's model that ``module`` (of the view) stands for."""
        return self._originals.get(id(module), module)


_Parameter = nn.Parameter
_MODULE_KEYS = frozenset(nn.Module().__dict__)  # what every module has; the rest is scanned for parameters
_NOT_VIEWABLE_TYPES: Dict[type, bool] = {}
_SCAN: Dict[type, bool] = {}


def _check_viewable(m: nn.Module) -> None:
    cls = type(m)
    bad = _NOT_VIEWABLE_TYPES.get(cls)
    if bad is None:  # per class, once
        bad = _NOT_VIEWABLE_TYPES[cls] = (
            issubclass(cls, (torch.jit.ScriptModule, nn.modules.lazy.LazyModuleMixin))
            or cls.__name__ == "OptimizedModule"
        )
    if bad or "forward" in m.__dict__:
        raise _NotViewable


def _build_view(
    model: nn.Module,
    eval_mode: bool,
    hooked: Optional[Iterable[nn.Module]] = None,
    keep_parameters: bool = False,
    hook_dicts: Tuple[str, ...] = _HOOK_DICTS,
) -> ModelView:
    """Shallow-copy the modules: shared parameter/buffer storage (``.data``: no autograd link, own version
    counters, so an optimizer step in another thread cannot invalidate this call's graph), parameters that
    do not require grad, own ``training`` flags. The modules in ``hooked`` (``None``: all) get their own
    forward-hook dictionaries (those named in ``hook_dicts``; the rest stay the model's). A module with nothing to change (no parameters, buffers or children, already
    in the wanted mode, not hooked) is used as it is. ``keep_parameters``: the view holds the user's parameters
    themselves (the differentiable mode: autograd records the parameters)."""
    views: Dict[int, nn.Module] = {}
    originals: Dict[int, nn.Module] = {}
    params: Dict[int, torch.Tensor] = {}
    hook_ids = None if hooked is None else {id(m) for m in hooked}

    def param(p: torch.Tensor) -> torch.Tensor:
        q = params.get(id(p))
        if q is None:
            if p.is_meta:
                raise ValueError(_META_MODEL)
            if keep_parameters:
                return p
            q = params[id(p)] = _Parameter(p.data, False) if type(p) is _Parameter else p.data
        return q

    def view(m: nn.Module) -> nn.Module:
        v = views.get(id(m))
        if v is not None:
            return v
        own = m._parameters or m._buffers or m._modules or (eval_mode and m.training)
        row_wise = _cuts.is_row_wise(m)
        if not own and hook_ids is not None and id(m) not in hook_ids and not row_wise:
            views[id(m)] = m
            return m
        _check_viewable(m)
        v = object.__new__(type(m))
        d = v.__dict__
        d.update(m.__dict__)
        views[id(m)] = v
        originals[id(v)] = m
        if eval_mode:
            d["training"] = False
        if m._parameters:
            d["_parameters"] = {k: (None if p is None else param(p)) for k, p in m._parameters.items()}
        if m._buffers:
            d["_buffers"] = {k: (None if b is None else b.data) for k, b in m._buffers.items()}
        if hook_ids is None or id(m) in hook_ids or row_wise:  # a row-wise module gets the cut's hook
            for key in hook_dicts:
                if key in d:
                    d[key] = OrderedDict(d[key])
        if row_wise:
            row_wise_views.append(v)
        _view_plain_parameters(m, d, param)
        if m._modules:
            d["_modules"] = {k: (None if c is None else view(c)) for k, c in m._modules.items()}
        return v

    row_wise_views: List[nn.Module] = []
    root = view(model)
    view = None  # type: ignore[assignment]  # the recursive closure's cell: no cycle keeps the view alive
    out = ModelView(root, views, originals)
    out.row_wise = row_wise_views
    return out


def _view_plain_parameters(m: nn.Module, d: dict, param: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Parameters a module also keeps in a plain attribute or list (e.g. an RNN's ``_flat_weights``) replaced in
    the view's ``__dict__`` ``d`` by ``param``'s; torch's own layers other than RNNs keep them in ``_parameters``
    only (not scanned)."""
    scan = _SCAN.get(type(m))
    if scan is None:
        cls = type(m)
        scan = _SCAN[cls] = not cls.__module__.startswith("torch.nn.modules.") or issubclass(cls, nn.RNNBase)
    for key in (d.keys() - _MODULE_KEYS) if scan else ():
        val = d[key]
        t = type(val)
        if t is _Parameter:
            d[key] = param(val)
        elif (t is list or t is tuple) and any(type(e) is _Parameter for e in val):
            d[key] = t(param(e) if type(e) is _Parameter else e for e in val)


@contextlib.contextmanager
def private_model(
    model: nn.Module,
    eval_mode: bool = True,
    hooked: Optional[Iterable[nn.Module]] = None,
    keep_parameters: bool = False,
    hook_dicts: Tuple[str, ...] = _HOOK_DICTS,
) -> Iterator[ModelView]:
    """The model as one call runs it, without changing the user's model object (see the module doc).

    The view shares the parameters' and buffers' storage (so an in-place update of a buffer in the
    forward, e.g. BatchNorm's running statistics with ``eval_mode=False``, still lands in the model),
    with ``training=False`` everywhere when ``eval_mode``. Models that cannot be viewed (TorchScript,
    ``torch.compile``, lazy modules, ``forward`` set on an instance) take the locked path: the call holds
    :func:`model_lock`, the model's ``requires_grad`` flags are off and eval mode is set for the call, and
    everything is restored in ``finally``. Hooks may be registered on ``view.module(m)`` for the modules m
    in ``hooked`` (``None``: any module of the model). ``keep_parameters=True`` (the differentiable mode):
    the view uses the user's parameters themselves, ``requires_grad`` flags untouched (also on the locked path).
    """
    try:
        view = _build_view(model, eval_mode, hooked, keep_parameters, hook_dicts)
    except _NotViewable:
        view = None
    if view is not None:
        yield view
        return
    with model_lock(model):
        state = ModelState(model)
        try:
            if eval_mode and any(flag for _, flag in state.training):
                model.eval()
            for p, flag in state.requires_grad:
                if flag and not keep_parameters:
                    p.requires_grad_(False)
            yield ModelView(model, {}, {}, locked=True)
        finally:
            state.restore()


@contextlib.contextmanager
def frozen(model: nn.Module, eval_mode: bool = True) -> Iterator[nn.Module]:
    """The model to call for the gradient-free forward passes of one call (occlusion, Score-CAM, RISE,
    Ablation-CAM, the faithfulness metrics): a private view (see :func:`private_model`) in eval mode, so
    the user's model object is never switched and other threads (explaining or training) are unaffected.
    Models that cannot be viewed are switched under their lock and restored, as in :func:`private_model`."""
    with private_model(model, eval_mode, hooked=()) as view:
        yield view.model


class _Tap:
    """A forward hook on one layer that captures its output at the chosen call (of this thread's forward)."""

    def __init__(self, ref: LayerRef, batch: int = 0, upcast: bool = False):
        self.ref = ref
        self.batch = batch
        self.upcast = upcast  # under autocast: capture a float32 copy, hand on the low-precision output
        self.calls = 0
        self.activation: Optional[torch.Tensor] = None
        self.thread = threading.get_ident()

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if threading.get_ident() != self.thread:  # the locked path hooks the shared model: not our forward
            return None
        k = self.calls
        self.calls += 1
        if k != (self.ref.call or 0):
            return None
        if not isinstance(output, torch.Tensor):
            raise TypeError(
                f"Layer '{self.ref.spec}' returns {type(output).__name__}, not a tensor; pick a submodule whose "
                "output is the feature map (N, C, h, w)."
            )
        # Sequence-first tokens (T, N, C) are captured batch-first (N, T, C) and handed on transposed back.
        seq_first = output.dim() == 3 and (
            self.ref.seq_first or (output.shape[0] != self.batch and output.shape[1] == self.batch)
        )
        low = self.upcast and output.dtype in (torch.float16, torch.bfloat16)
        if output.requires_grad:
            # Already inside a recorded graph (input gradients, or an earlier tapped layer): keep the link.
            a = output.float() if low else output
            self.activation = a.transpose(0, 1) if seq_first else a
        else:
            # A fresh leaf: autograd records only what comes after this layer.
            a = output.detach().float() if low else output.detach()
            self.activation = (a.transpose(0, 1) if seq_first else a).requires_grad_(True)
        # Hand on a copy so that in-place operations after the layer (``out += identity``) cannot touch
        # the captured activation (under autocast: the float32 activation cast back to the layer's dtype).
        handed = self.activation.transpose(0, 1) if seq_first else self.activation
        return handed.to(output.dtype) if low else handed.clone()

    def check(self) -> None:
        name = self.ref.spec
        if self.calls == 0:
            raise ValueError(
                f"Layer '{name}' was never reached by the forward pass: it is a submodule of the model but "
                "forward() does not call it. Pick a layer that the forward pass uses."
            )
        if self.ref.call is None and self.calls > 1:
            raise ValueError(
                f"Layer '{name}' is called {self.calls} times in one forward pass (a shared module), so its "
                f"output is ambiguous. Pick one call with layer='{name}@0' ... '{name}@{self.calls - 1}', "
                "or choose a module that is used once."
            )
        if self.ref.call is not None and self.ref.call >= self.calls:
            raise ValueError(
                f"Layer '{name}' asks for call {self.ref.call} but the module is called only {self.calls} "
                f"time(s); use '{self.ref.name}@0' ... '{self.ref.name}@{self.calls - 1}'."
            )


_META_MODEL = (
    "The model's parameters are on the 'meta' device (created without data, e.g. under torch.device('meta')); "
    "give it real weights first, e.g. model.to_empty(device='cpu') and then model.load_state_dict(...)."
)


def _first_conv_channels(model: nn.Module) -> Optional[int]:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


def check_input(model: nn.Module, x: Any) -> None:
    """Validate a batch: a floating (N, C, H, W) image or (N, C, D, H, W) volume tensor with N >= 1, on the
    model's device and of its dtype, with data (not ``meta``); a clear error naming the problem and the fix
    otherwise."""
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, torch.Tensor) for t in x):
        raise TypeError(
            f"Input must be one torch.Tensor of shape (N, C, H, W); got a {type(x).__name__} of {len(x)} tensors. "
            "Stack the images into one batch: torch.stack(images) (all images of the same size)."
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"Input must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}.")
    if x.dim() not in (4, 5):
        hint = " For one image, add a batch dimension: x.unsqueeze(0)." if x.dim() == 3 else ""
        raise ValueError(
            f"Input must have shape (N, C, H, W); got {tuple(x.shape)}.{hint} (Volumes: (N, C, D, H, W).)"
        )
    if x.shape[0] == 0:
        raise ValueError("Input batch is empty (N = 0); pass at least one image.")
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"Input must be a floating-point tensor; got {x.dtype}. Convert and normalise it, e.g. x.float() / 255."
        )
    if x.is_meta:
        raise ValueError(
            "Input is a meta tensor (a shape without data); pass a tensor with data, e.g. on device 'cpu'."
        )
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3) and _first_conv_channels(model) != x.shape[1]:
        raise ValueError(
            f"Input of shape {tuple(x.shape)} looks like channels-last images (N, H, W, C); the model takes "
            "(N, C, H, W): use x.permute(0, 3, 1, 2)."
        )
    p = next(model.parameters(), None)
    if p is None:
        return
    if p.is_meta:  # the first parameter here; every parameter as the call's view of the model is built
        raise ValueError(_META_MODEL)
    if p.device != x.device:
        raise ValueError(
            f"Input is on {x.device} but the model is on {p.device}; move it with x.to('{p.device}')."
        )
    if p.dtype.is_floating_point and p.dtype != x.dtype:
        raise TypeError(
            f"Input is {x.dtype} but the model's parameters are {p.dtype}; make them match, e.g. "
            f"x.to({p.dtype}) or model.to({x.dtype})."
        )


def batched_grad(
    scores: torch.Tensor,
    wrt: List[torch.Tensor],
    negate: bool = False,
    retain_graph: bool = False,
    create_graph: bool = False,
) -> List[Optional[torch.Tensor]]:
    """d scores[:, k] / d t for every k and every t in ``wrt``, as (N, K, *t.shape[1:]) tensors.

    Images are independent in eval mode, so summing a target over the batch gives each image its own
    gradient. K > 1 targets are one batched backward (``is_grads_batched``); models whose backward
    cannot be vmapped fall back to K backward passes over the retained graph. ``negate`` differentiates
    -scores (the seed is negated, which also holds for non-linear backward rules such as guided ReLUs).
    ``create_graph``: the gradients keep a graph of their own (one backward per target, the graph retained).
    """
    n, k = scores.shape
    key = (id(scores), negate)  # one score differentiated in stages (the search): the cut's rows found once
    if negate:
        scores = -scores
    if create_graph:
        per_k = [
            torch.autograd.grad(
                scores[:, j].sum(), wrt, create_graph=True, retain_graph=True, allow_unused=True
            )
            for j in range(k)
        ]
        return [
            None if per_k[0][i] is None else torch.stack([g[i] for g in per_k], dim=1)
            for i in range(len(wrt))
        ]
    grads: List[Optional[torch.Tensor]]
    cut = _CUTS.get()  # the row-wise modules cut in this forward (gradcam.cuts): only their reached rows
    if k == 1:
        single = _cuts.grad(scores.sum(), wrt, cut, retain_graph=retain_graph, key=key)
        grads = [None if g is None else g.unsqueeze(1) for g in single]
    else:
        total = scores.sum(0)
        eye = torch.eye(k, dtype=scores.dtype, device=scores.device)
        batched: Optional[Tuple[Optional[torch.Tensor], ...]]
        try:
            batched = _cuts.grad(
                total, wrt, cut, grad_outputs=eye, is_grads_batched=True, retain_graph=True, key=key
            )
        except RuntimeError:
            batched = None
        if batched is not None:
            grads = [None if g is None else g.transpose(0, 1) for g in batched]
        else:
            each = [
                _cuts.grad(total[j], wrt, cut, retain_graph=retain_graph or j < k - 1, key=(*key, j))
                for j in range(k)
            ]
            grads = []
            for i in range(len(wrt)):
                parts = [each[j][i] for j in range(k)]
                grads.append(
                    None if parts[0] is None else torch.stack(cast(List[torch.Tensor], parts), dim=1)
                )
    return grads


_CUTS: contextvars.ContextVar[Optional[_cuts.Cutter]] = contextvars.ContextVar("gradcam_cuts", default=None)


@contextlib.contextmanager
def _cutting(view: ModelView, enabled: bool) -> Iterator[None]:
    """Cut the view's row-wise modules for this forward and backward (see :mod:`gradcam.cuts`): ``enabled``
    for a plain backward (not the differentiable mode or Shapley-CAM's second order, which keep the graph
    whole) on a private view."""
    if not (enabled and view.row_wise and not view.locked):
        yield
        return
    cutter = _cuts.Cutter(view.row_wise)
    token = _CUTS.set(cutter)
    try:
        yield
    finally:
        _CUTS.reset(token)
        cutter.remove()


def _reshape_grad(g: torch.Tensor, reshape: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    n, k = g.shape[:2]
    r = reshape(g.reshape(n * k, *g.shape[2:]))
    return r.reshape(n, k, *r.shape[1:])


_NOT_DIFFERENTIABLE = (
    "differentiable=True supports layer-based CAM methods only (Grad-CAM, CAM); it cannot be combined with {}. "
    "Use differentiable=False for this method."
)


def capture(
    model: nn.Module,
    x: torch.Tensor,
    layers: List[LayerRef],
    target: _targets.Target = None,
    top_k: Optional[int] = None,
    *,
    gradients: bool = True,
    input_gradient: bool = False,
    counterfactual: bool = False,
    reshape: Reshape = None,
    eval_mode: bool = True,
    context: Optional[Callable[[], ContextManager]] = None,
    layer_gradient_context: Optional[Callable[[], ContextManager]] = None,
    forward_kwargs: Optional[dict] = None,
    differentiable: bool = False,
    require_all_layers: bool = True,
    hessian: bool = False,
) -> Capture:
    """Run ``model`` once on ``x`` with ``layers`` tapped and differentiate the targets.

    ``gradients=False`` skips the backward pass (CAM needs only activations). ``input_gradient=True``
    also returns dy/dx (guided backpropagation, plain gradients). ``counterfactual=True`` negates all
    gradients (Selvaraju et al., Sec. 5: regions whose removal would raise y). ``context`` is entered
    around the forward and backward pass (e.g. a guided-ReLU mode). ``layer_gradient_context``, with
    ``gradients`` and ``input_gradient``: the layer gradients come from a backward of their own inside
    it (through the part of the network after the layers only), then dy/dx from a second one: Guided
    Grad-CAM's plain dy/dA and guided dy/dx from one forward pass. ``forward_kwargs``: extra arguments
    of ``model(x, **forward_kwargs)`` (masks, text ids, a second input). Without ``reshape``, a layer's
    tokens, channels-last or sequence-first output becomes a map by ``layers.infer_layout``.

    ``differentiable=True`` (see :mod:`gradcam.differentiable`): the private view keeps the user's
    parameters themselves (with their ``requires_grad`` flags), the tapped activation stays in the
    recorded graph, dy/dA is computed with ``create_graph=True``, and nothing in the capture is detached
    (but ``targets``): a loss on maps built from it has gradients w.r.t. the parameters (and ``x``).
    Everything else is the same: the view's own ``training`` flags (the user's model is never switched),
    hooks on the view only, ``reshape`` and volumes. Input gradients and contexts are refused.

    ``require_all_layers=False`` (the ``layer="auto"`` search): a layer the score does not use gets ``None``.

    ``hessian=True`` (Shapley-CAM): dy/dA with ``create_graph=True``, then ``hessian_products`` H A = d/dA
    (dy/dA . A), one more backward per target w.r.t. the tapped activation only (the parameters never require grad).
    """
    check_input(model, x)
    check_autograd(x, gradients or input_gradient)
    if differentiable or hessian:
        _check_differentiable_options(
            input_gradient, context, layer_gradient_context, hessian, differentiable
        )
    taps = [_Tap(ref, x.shape[0], upcast=_PRECISION.get() != "fp32") for ref in layers]
    handles = []
    with private_model(
        model, eval_mode, [ref.module for ref in layers], keep_parameters=differentiable
    ) as view:
        try:
            for tap in taps:
                handles.append(view.module(tap.ref.module).register_forward_hook(tap.hook))
            x_in = x if differentiable else x.detach().requires_grad_(True) if input_gradient else x.detach()
            plain = (gradients or input_gradient) and not (differentiable or hessian)
            inner = context() if context is not None else contextlib.nullcontext()
            with _cutting(view, plain), torch.enable_grad(), inner:
                output = _forward(view.model, x_in, forward_kwargs)
                scores, ids, shapers = _scores_and_layouts(taps, output, target, top_k, x, reshape)
                # tap.check() (in _scores_and_layouts) raised for any layer the forward pass did not reach
                acts = [cast(torch.Tensor, tap.activation) for tap in taps]
                grads, hvps = _backward(
                    scores, taps, acts, x_in, target, gradients, input_gradient, counterfactual,
                    layer_gradient_context, differentiable, hessian, require_all_layers,
                )  # fmt: skip
        finally:
            for h in handles:
                h.remove()
    cap = _assemble(
        output, scores, ids, layers, acts, grads, shapers, gradients, input_gradient, x, differentiable
    )
    if hessian:
        cap.hessian_products = [
            h if h is None or r is None else _reshape_grad(h, r) for h, r in zip(hvps, shapers)
        ]
    return cap


def _forward(model: nn.Module, x: torch.Tensor, forward_kwargs: Optional[dict]) -> Any:
    """``model(x, **forward_kwargs)`` under :func:`forward_autocast`, the output upcast to float32 when a lower
    precision is in effect (the scores and probabilities are float32)."""
    with forward_autocast(x.device):
        output = model(x, **(forward_kwargs or {}))
    return output if _PRECISION.get() == "fp32" else upcast(output)


#: The one-pass search's backward in stages over the candidates, latest first: [0, 1), [1, 4), [4, 12), then the
#: rest up to the limit. A stage differentiates only the part of the network after its candidates, so a CNN (whose
#: latest map is the answer) pays the head's backward, a ViT about one block's.
SEARCH_STAGES: Tuple[int, ...] = (1, 4, 12)

#: The one-pass search records autograd from the first candidate after this share of the model's module calls
#: (counted against its number of modules): the layer ``"auto"`` chooses is near the output, and recording the
#: start of the network would cost a slower forward for nothing. When the search must look at a layer before
#: that point, it says so (``Search.exact`` False) and the layer is found as before, one capture at a time.
RECORD_FROM = 0.5


class _NotRecorded(Exception):
    """The search reached a candidate before the recorded part of the forward."""


@dataclass
class Search:
    """What :func:`search_capture` found: ``candidates``, every layer whose output is a map, latest first (as
    :func:`gradcam.layers.auto_candidates` lists them); ``chosen``, the index of the first of the latest
    ``limit`` whose map positions receive the target's gradient (``None``: none does; 0 without gradients);
    ``capture``, the capture of the chosen layer, or when none is chosen of the latest one the score depends
    on (``None`` when it depends on none, or when ``exact`` is False); ``exact``: False when the chosen layer's
    output was changed in place later in the forward and cannot be recomputed (then capture it on its own)."""

    candidates: List[LayerRef]
    chosen: Optional[int]
    capture: Optional[Capture]
    exact: bool = True


class _SearchTap:
    """One recorded candidate output: ``act`` batch-first (what the graph goes through), its version counter
    then, the autograd edge that produced it (exact gradients even if it is changed in place later), and the
    module call with its tensor arguments' version counters (to recompute its value in that case)."""

    __slots__ = ("act", "version", "edge", "module", "args", "kwargs", "seq_first", "versions", "early")

    def __init__(self, act: torch.Tensor, module: nn.Module, args: tuple, kwargs: dict, seq_first: bool):
        self.act = act
        self.version = act._version
        fn = act.grad_fn
        self.edge = None if fn is None else (fn, act.output_nr)  # read now: an in-place change moves it
        self.module = module
        self.args = args
        self.kwargs = kwargs
        self.seq_first = seq_first
        self.versions = tuple(v._version for v in self.tensors())
        self.early = False  # output before the recorded part of the forward (see RECORD_FROM)

    def dirty(self) -> bool:
        """Whether the output was changed in place after the module returned it."""
        return self.act._version != self.version

    def tensors(self) -> List[torch.Tensor]:
        """The tensor arguments of the module call."""
        args = (*self.args, *self.kwargs.values()) if self.kwargs else self.args
        return [v for v in args if isinstance(v, torch.Tensor)]

    def inputs(self) -> List[Tuple[torch.Tensor, int]]:
        """The tensor arguments with their version counters at the call."""
        return list(zip(self.tensors(), self.versions))


def search_capture(
    model: nn.Module,
    x: torch.Tensor,
    target: _targets.Target = None,
    top_k: Optional[int] = None,
    *,
    gradients: bool = True,
    counterfactual: bool = False,
    reshape: Reshape = None,
    eval_mode: bool = True,
    forward_kwargs: Optional[dict] = None,
    limit: int = 24,
) -> Search:
    """``layer="auto"`` on a first call, in one forward: list the candidate layers, find the layer and capture it.

    One forward of ``x`` records every submodule call whose output is a map (the candidates of
    :func:`gradcam.layers.auto_candidates`); autograd records from the first of them on (a fresh leaf, as
    :func:`capture` taps a layer). No copies are made: each output's version counter and autograd edge are kept,
    so a later in-place change (``out += identity``, an in-place ReLU) cannot alter its gradient, and the chosen
    layer's value, if changed, is recomputed from its module call. Then backward passes in :data:`SEARCH_STAGES`
    over the latest ``limit`` candidates (``torch.autograd.grad`` w.r.t. those only: the part of the network
    before a stage's candidates is not differentiated) until one candidate's map positions receive the target's
    gradient. Its activation A and dy/dA from this same pass are the capture: the maps equal those of
    :func:`capture` of that layer alone. ``gradients=False`` (CAM, Eigen-CAM): no backward, the latest candidate.
    """
    check_input(model, x)
    check_autograd(x, gradients)
    taps: List[_SearchTap] = []
    with private_model(model, eval_mode, hook_dicts=_SEARCH_HOOK_DICTS) as view:
        rec = _layers.CandidateRecorder(view.model, x, reshape)
        start = int(RECORD_FROM * len(view.modules())) if gradients else 0
        hook = _search_hook(rec, taps, x.shape[0], gradients, start)
        unhook = _hook_every_module(view, hook)
        try:
            with _cutting(view, gradients), torch.enable_grad() if gradients else torch.no_grad():
                output = view.model(x, **(forward_kwargs or {}))
                scores, ids = _targets.resolve_targets(output, target, top_k, x.shape[0])
                _check_finite(scores)
                found = rec.refs(output)
                refs = [dataclasses.replace(r, module=view.original(r.module)) for r, _ in found]
                picked = [taps[i] for _, i in found[:limit]]
                shapers = [reshape or r.reshape or _shaper(t.act, x) for r, t in zip(refs, picked)]
                grads: List[Optional[torch.Tensor]] = [None] * len(picked)
                chosen: Optional[int] = 0
                if gradients:
                    try:
                        chosen = _search_gradients(scores, picked, shapers, grads, counterfactual)
                    except _NotRecorded:
                        return Search(refs, None, None, exact=False)
        finally:
            unhook()
        pick = chosen if chosen is not None else next((i for i, g in enumerate(grads) if g is not None), None)
        if pick is None:
            return Search(refs, None, None)
        act = _value(picked[pick], taps)
    if act is None:
        return Search(refs, chosen, None, exact=False)
    cap = _assemble(
        output, scores, ids, [refs[pick]], [act], [grads[pick]], [shapers[pick]], gradients, False, x, False
    )
    return Search(refs, chosen, cap)


#: The hook dictionaries the search writes (its hook on every module, the row-wise cuts): the only ones its view
#: copies (the others stay shared with the model, read only).
_SEARCH_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs")


def _hook_every_module(view: ModelView, hook: Callable) -> Callable[[], None]:
    """``hook`` (with kwargs) on every submodule of the view; returns the function that removes it. A private
    view's modules own their hook dictionaries, so the hook goes straight into them (no handles: on a small
    network, registering and removing some hundred handles costs a tenth of a forward). Removing it matters
    there too: the hook holds what it recorded, which holds the view's modules, a cycle that would keep the
    whole view alive until the garbage collector runs."""
    modules = [m for m in view.modules() if m is not view.model]
    if view.locked:
        handles = [m.register_forward_hook(hook, with_kwargs=True) for m in modules]

        def remove_handles() -> None:
            for h in handles:
                h.remove()

        return remove_handles
    key = object()
    for m in modules:
        m._forward_hooks[key] = hook  # type: ignore[index]
        m._forward_hooks_with_kwargs[key] = True  # type: ignore[index]

    def remove() -> None:
        for m in modules:
            m._forward_hooks.pop(key, None)  # type: ignore[call-overload]
            m._forward_hooks_with_kwargs.pop(key, None)  # type: ignore[call-overload]

    return remove


def _search_hook(rec: Any, taps: List[_SearchTap], batch: int, gradients: bool, start: int = 0) -> Callable:
    """The forward hook (with kwargs) of :func:`search_capture`: ``rec`` records the call; a map output is kept
    as a :class:`_SearchTap` (batch-first; the first one made a fresh leaf, handed on as a copy)."""
    events, record = rec.events, rec.hook
    calls = [0]

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        calls[0] += 1
        n = len(events)
        record(module, args, output)
        if len(events) == n:
            return None
        seq_first = output.dim() == 3 and (
            events[-1][3] or (output.shape[0] != batch and output.shape[1] == batch)
        )
        act = output.transpose(0, 1) if seq_first else output
        recording = calls[0] > start
        leaf = gradients and recording and not act.requires_grad
        if leaf:
            act = act.detach().requires_grad_(True)
        tap = _SearchTap(act, module, args, kwargs, seq_first)
        tap.early = not recording
        taps.append(tap)
        handed = act.transpose(0, 1) if seq_first else act
        return handed.clone() if leaf else (handed if seq_first else None)

    return hook


def _value(tap: _SearchTap, taps: List[_SearchTap]) -> Optional[torch.Tensor]:
    """The tapped activation as it was output; when changed in place later, recomputed by calling the module that
    produced that tensor again on its inputs (hooks removed), if they are unchanged; else ``None``."""
    if not tap.dirty():
        return tap.act
    first = next(t for t in taps if _same(t.act, tap.act))
    if any(v._version != seen for v, seen in first.inputs()):
        return None
    with torch.no_grad():
        out = first.module(*first.args, **first.kwargs)
    if not isinstance(out, torch.Tensor) or out.dim() != tap.act.dim():
        return None
    return out.transpose(0, 1) if first.seq_first else out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tapped activations are one module output (the same tensor, or the same batch-first view)."""
    return a is b or (
        a._base is not None and a._base is b._base and a.shape == b.shape and a.stride() == b.stride()
    )


def _search_gradients(
    scores: torch.Tensor,
    taps: List[_SearchTap],
    shapers: List[Reshape],
    grads: List[Optional[torch.Tensor]],
    counterfactual: bool,
) -> Optional[int]:
    """Fill ``grads`` (dy/dA) stage by stage (:data:`SEARCH_STAGES`); the index of the first
    candidate whose map positions receive the gradient, or ``None`` (then every entry is filled)."""
    if not scores.requires_grad:  # connected to no recorded candidate
        if any(t.early for t in taps):
            raise _NotRecorded
        return None
    # A tensor changed in place after its module returned it: the gradient w.r.t. its value then (its edge).
    wrt = cast(
        List[torch.Tensor],
        [GradientEdge(*t.edge) if t.edge is not None and t.dirty() else t.act for t in taps],
    )
    start = 0
    for stop in (*SEARCH_STAGES, len(wrt)):
        stop = min(stop, len(wrt))
        if stop <= start:
            continue
        # a layer the forward did not record (see RECORD_FROM) ends the stage: if it is reached, say so
        cut = next((i for i in range(start, stop) if taps[i].early and not taps[i].act.requires_grad), stop)
        part = (
            batched_grad(scores, wrt[start:cut], negate=counterfactual, retain_graph=cut < len(wrt))
            if cut > start
            else []
        )
        for i, g in enumerate(part, start):
            grads[i] = g
            shaper = shapers[i]
            if g is not None and bool(
                _layers.gradient_reaches(g if shaper is None else _reshape_grad(g, shaper)).any()
            ):
                return i
        if cut < stop:
            raise _NotRecorded
        start = stop
    return None


_NOT_USED = (
    "The target does not depend on layer {} (no gradient flows from the score back to it). "
    "Pick a layer on the path to the explained output."
)


def _check_differentiable_options(
    input_gradient: bool,
    context: Optional[Callable[[], ContextManager]],
    layer_gradient_context: Optional[Callable[[], ContextManager]],
    hessian: bool = False,
    differentiable: bool = True,
) -> None:
    """Refuse the options ``differentiable=True`` (or ``hessian=True``) cannot be combined with, naming them all."""
    if hessian and differentiable:
        raise ValueError(_NOT_DIFFERENTIABLE.format("hessian (Shapley-CAM)"))
    if hessian and (input_gradient or context or layer_gradient_context):
        raise ValueError(
            "capture(..., hessian=True) takes the Hessian w.r.t. the tapped layers only; it cannot be combined "
            "with input_gradient, context or layer_gradient_context."
        )
    bad = [
        n
        for n, v in (
            ("input_gradient", input_gradient),
            ("context", context),
            ("layer_gradient_context", layer_gradient_context),
        )
        if v
    ]
    if bad:
        raise ValueError(_NOT_DIFFERENTIABLE.format(", ".join(bad)))


def _check_layers_used(taps: List[_Tap], grads: List[Optional[torch.Tensor]]) -> None:
    """Raise :class:`LayerNotUsedError` for the first tapped layer that got no gradient."""
    for tap, g in zip(taps, grads[: len(taps)]):
        if g is None:
            raise LayerNotUsedError(_NOT_USED.format(f"'{tap.ref.spec}'"))


def _scores_and_layouts(
    taps: List[_Tap],
    output: Any,
    target: _targets.Target,
    top_k: Optional[int],
    x: torch.Tensor,
    reshape: Reshape,
):
    """Check the taps, resolve the scores (N, K) and ids, and find each layer's reshape to a spatial map."""
    for tap in taps:
        tap.check()
    scores, ids = _targets.resolve_targets(output, target, top_k, x.shape[0])
    _check_finite(scores)
    acts = [cast(torch.Tensor, tap.activation) for tap in taps]  # tap.check() raised for a layer not reached
    shapers = [reshape or tap.ref.reshape or _shaper(a, x) for tap, a in zip(taps, acts)]
    for tap, a, r in zip(taps, acts, shapers):
        shaped = r(a) if r is not None else a
        if shaped.dim() != x.dim():
            raise ValueError(
                f"Layer '{tap.ref.spec}' outputs shape {tuple(shaped.shape)}, not a spatial map (N, C, h, w). "
                "Pick a convolutional layer, or for token models pass "
                "reshape=gradcam.layers.tokens_to_grid(h, w) to turn tokens into a grid."
            )
    return scores, ids, shapers


def _check_finite(scores: torch.Tensor) -> None:
    """A clear error for NaN/Inf scores, naming the images."""
    if not bool(torch.isfinite(scores).all()):
        bad = (~torch.isfinite(scores)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(
            f"The model produced NaN/Inf scores for image(s) {bad}; check the input (NaN pixels, wrong "
            "scaling) and the model's weights."
        )


def _check_connected(scores: torch.Tensor, taps: List[_Tap], target: _targets.Target) -> None:
    """A clear :class:`LayerNotUsedError` when the scores are not connected to the tapped layers by autograd."""
    if scores.requires_grad:
        return
    names = ", ".join(f"'{t.ref.spec}'" for t in taps) or "the input"
    if callable(target) and not isinstance(target, torch.Tensor):
        raise LayerNotUsedError(
            f"The target callable returned a tensor that is not connected by autograd to {names}: "
            "either it called .item(), .detach(), .argmax() or numpy (return a differentiable score), "
            "or the target does not depend on that layer (pick a layer on its path)."
        )
    raise LayerNotUsedError(_NOT_USED.format(names))


def _gradients(scores, acts, x_in, input_gradient, counterfactual, layer_gradient_context, differentiable):
    """dy/dA for every tapped activation (and dy/dx last with ``input_gradient``), see :func:`capture`."""
    if differentiable:
        return batched_grad(scores, acts, negate=counterfactual, create_graph=True)
    if layer_gradient_context is not None and input_gradient and acts:
        with layer_gradient_context():
            grads = batched_grad(scores, acts, negate=counterfactual, retain_graph=True)
        return grads + batched_grad(scores, [x_in], negate=counterfactual)
    return batched_grad(scores, list(acts) + ([x_in] if input_gradient else []), negate=counterfactual)


def _backward(
    scores, taps, acts, x_in, target, gradients, input_gradient, counterfactual, layer_gradient_context,
    differentiable, hessian, require_all_layers,
) -> Tuple[List[Optional[torch.Tensor]], List[Optional[torch.Tensor]]]:  # fmt: skip
    """The gradients of one capture (layers, then dy/dx with ``input_gradient``) and, with ``hessian``, the
    layers' Hessian-vector products H A (see :func:`capture`); ``None`` where not asked for."""
    grads: List[Optional[torch.Tensor]] = [None] * (len(acts) + int(input_gradient))
    hvps: List[Optional[torch.Tensor]] = [None] * len(acts)
    if not (gradients or input_gradient):
        return grads, hvps
    _check_connected(scores, taps, target)
    grads = _gradients(
        scores, acts, x_in, input_gradient, counterfactual, layer_gradient_context, differentiable or hessian
    )
    if hessian:
        hvps, grads = _hessian_products(grads, acts), [_detach(g) for g in grads]
    if gradients and require_all_layers:
        _check_layers_used(taps, grads)
    return grads, hvps


def _hessian_products(
    grads: List[Optional[torch.Tensor]], acts: List[torch.Tensor]
) -> List[Optional[torch.Tensor]]:
    """H A per layer (N, K, C, ...) from gradients (N, K, C, ...) that keep their graph: for each target k,
    d/dA (g_k . A) with A as a constant vector (one backward per layer and target, the graph retained)."""
    out: List[Optional[torch.Tensor]] = []
    for g, a in zip(grads, acts):
        if g is None:
            out.append(None)
            continue
        parts = []
        for k in range(g.shape[1]):
            gk = g[:, k]
            if not gk.requires_grad:  # y is linear in A after the layer: H = 0
                parts.append(torch.zeros_like(a))
                continue
            (h,) = torch.autograd.grad(gk, a, grad_outputs=a.detach(), retain_graph=True, allow_unused=True)
            parts.append(torch.zeros_like(a) if h is None else h)
        out.append(torch.stack(parts, dim=1).detach())
    return out


def _assemble(
    output, scores, ids, layers, acts, grads, shapers, gradients, input_gradient, x, differentiable
):
    """The :class:`Capture` of one call: detached (unless ``differentiable``) and reshaped to spatial maps."""
    keep = (lambda t: t) if differentiable else _detach
    cap = Capture(output=keep(output), scores=keep(scores), targets=ids.detach(), layers=list(layers))
    for i, a in enumerate(acts):
        a = keep(a)
        g = grads[i] if gradients else None
        shaper = shapers[i]
        if shaper is not None:
            a = shaper(a)
            g = _reshape_grad(g, shaper) if g is not None else None
        cap.activations.append(a)
        cap.gradients.append(g)
    if input_gradient:
        cap.input_gradient = (
            grads[-1]
            if grads[-1] is not None
            else torch.zeros(x.shape[0], scores.shape[1], *x.shape[1:], dtype=x.dtype, device=x.device)
        )
    return cap


def _shaper(a: torch.Tensor, x: torch.Tensor) -> Reshape:
    """The inferred reshape of a captured (batch-first) activation that is not a channels-first map."""
    if a.dim() == 5 or (a.dim() == 4 and a.shape[2] <= x.shape[-2] and a.shape[3] <= x.shape[-1]):
        return None  # a channels-first map (channels-last only where (h, w) cannot be a grid of the input)
    layout = _layers.infer_layout(a.shape, x.shape)
    return None if layout is None else layout[0]


def _detach(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, dict):
        return {k: _detach(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)) and not hasattr(output, "_fields"):
        return type(output)(_detach(v) for v in output)
    return output
