"""Guided backpropagation (Springenberg et al., 2015) and Guided Grad-CAM (Selvaraju et al., 2017, Sec. 3.2).

Guided backpropagation is the input gradient dy/dx computed with a changed backward rule at every
ReLU-like activation: the gradient g arriving at the activation's output is passed on only where the
activation let the forward signal through *and* g is positive,

    dy/dx_in = g * [0 < out < hi] * [g > 0]        (hi = +inf for ReLU, 6 for ReLU6),

so that no negative gradient passes any activation.

Which activations are treated as ReLU (caught while ``forward`` runs, for that call only):

- ``nn.ReLU``, ``nn.ReLU6``, ``nn.Hardtanh(0, hi)``, in place or not, shared or not: their ``forward``
  calls the functional forms below, so each call of a module is caught without any module hook;
- ``F.relu``, ``F.relu_``, ``torch.relu``, ``torch.relu_``, ``Tensor.relu``, ``Tensor.relu_``;
- ``F.relu6``, ``F.hardtanh(x, 0, hi)`` / ``hardtanh_`` with hi > 0;
- ``torch.clamp`` / ``torch.clip`` / ``Tensor.clamp(_)`` / ``Tensor.clip(_)`` with ``min=0`` and ``max``
  None or > 0, ``torch.clamp_min(x, 0)`` / ``Tensor.clamp_min(_)(0)``;
- ``F.threshold(x, 0, 0)`` (a ReLU written as a threshold).

Not treated as ReLU: leaky ReLU, PReLU, ELU, GELU, SiLU/Swish, hard-swish, ``torch.maximum(x, 0)``,
clamps with a tensor bound. A model with no ReLU-like activation gets a warning (guided
backpropagation is then the plain gradient).

How: a :class:`torch.overrides.TorchFunctionMode` is active during the forward and backward pass of
the one call; it replaces each ReLU-like call on a tensor that needs a gradient by a custom autograd
function with the same forward value and the guided backward rule. No module is swapped, no hook is
left behind, nothing global is patched; leaving the mode (in ``finally``, also on exceptions) ends it.
Torch function modes are thread-local: the mode changes the ReLUs of the calling thread's forward only,
never those of another thread (e.g. a training loop on the same model), and each call has its own mode
object, so concurrent calls never share the ``guided``/``plain`` switch.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Any, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from .. import engine
from ..layers import LayerSpec
from ..pixels import REDUCTIONS, PixelExplanation, pixel_explanation
from ..targets import Target
from .contract import OPTIONS, CallOptions
from .gradcam import GradCAM
from .input_gradient import Gradient, call_context

# func -> (kind, parameter names after the input, their defaults, in place? (None: read ``inplace``)).
_RELU = "relu"
_HARDTANH = "hardtanh"
_CLAMP = "clamp"
_THRESHOLD = "threshold"


def _table() -> dict:
    t: dict = {}

    def add(
        func: Any, kind: str, params: Tuple[str, ...], defaults: Tuple[Any, ...], inplace: Optional[bool]
    ):
        if func is not None:
            t[func] = (kind, params, defaults, inplace)

    nn_c = torch._C._nn
    f: Any  # torch functions and methods of several signatures
    add(F.relu, _RELU, ("inplace",), (False,), None)
    for f in (torch.relu, torch.Tensor.relu):
        add(f, _RELU, (), (), False)
    for f in (torch.relu_, torch.Tensor.relu_, getattr(F, "relu_", None)):
        add(f, _RELU, (), (), True)
    add(F.relu6, "relu6", ("inplace",), (False,), None)
    add(getattr(nn_c, "relu6", None), "relu6", (), (), False)
    add(getattr(nn_c, "relu6_", None), "relu6", (), (), True)
    add(F.hardtanh, _HARDTANH, ("min_val", "max_val", "inplace"), (-1.0, 1.0, False), None)
    add(getattr(nn_c, "hardtanh", None), _HARDTANH, ("min_val", "max_val"), (-1.0, 1.0), False)
    for f in (getattr(nn_c, "hardtanh_", None), getattr(F, "hardtanh_", None)):
        add(f, _HARDTANH, ("min_val", "max_val"), (-1.0, 1.0), True)
    for f in (torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip):
        add(f, _CLAMP, ("min", "max"), (None, None), False)
    for f in (
        getattr(torch, "clamp_", None),
        getattr(torch, "clip_", None),
        torch.Tensor.clamp_,
        torch.Tensor.clip_,
    ):
        add(f, _CLAMP, ("min", "max"), (None, None), True)
    for f in (torch.clamp_min, torch.Tensor.clamp_min):
        add(f, _CLAMP, ("min",), (None,), False)
    for f in (getattr(torch, "clamp_min_", None), torch.Tensor.clamp_min_):
        add(f, _CLAMP, ("min",), (None,), True)
    add(F.threshold, _THRESHOLD, ("threshold", "value", "inplace"), (None, None, False), None)
    for f in (getattr(torch, "threshold", None),):
        add(f, _THRESHOLD, ("threshold", "value"), (None, None), False)
    for f in (getattr(torch, "threshold_", None), getattr(F, "threshold_", None)):
        add(f, _THRESHOLD, ("threshold", "value"), (None, None), True)
    return t


_FUNCS = _table()


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def relu_like(func: Any, args: tuple, kwargs: dict) -> Optional[Tuple[torch.Tensor, Optional[float], bool]]:
    """``(input, hi, in_place)`` when ``func(*args, **kwargs)`` is a ReLU-like call (see the module doc), else None.

    The call computes clamp(input, 0, hi) (hi = None: no upper bound).
    """
    entry = _FUNCS.get(func)
    if entry is None or not args or not isinstance(args[0], torch.Tensor):
        return None
    kind, params, defaults, inplace = entry
    if len(args) - 1 > len(params) or any(k not in params for k in kwargs):
        return None
    bound = dict(zip(params, defaults))
    bound.update(zip(params, args[1:]))
    bound.update(kwargs)
    if inplace is None:
        inplace = bool(bound.get("inplace", False))
    hi: Optional[float] = None
    if kind == "relu6":
        hi = 6.0
    elif kind == _HARDTANH:
        lo, hi = bound["min_val"], bound["max_val"]
        if not (_number(lo) and _number(hi) and lo == 0 and hi > 0):
            return None
    elif kind == _CLAMP:
        lo, hi = bound["min"], bound.get("max")
        if not (_number(lo) and lo == 0 and (hi is None or (_number(hi) and hi > 0))):
            return None
    elif kind == _THRESHOLD:
        if not (
            _number(bound["threshold"])
            and _number(bound["value"])
            and bound["threshold"] == 0
            and bound["value"] == 0
        ):
            return None
    return args[0], (None if hi is None else float(hi)), inplace


class _GuidedClamp(torch.autograd.Function):
    """out = clamp(x, 0, hi); backward: g * [0 < out < hi] * [g > 0] (guided) or g * [0 < out < hi] (plain)."""

    @staticmethod
    def forward(ctx, x, hi, inplace, mode):  # noqa: D102 - see class doc
        if inplace:
            out = torch.relu_(x) if hi is None else x.clamp_(0, hi)
            ctx.mark_dirty(x)
        else:
            out = torch.relu(x) if hi is None else torch.clamp(x, 0, hi)
        ctx.save_for_backward(out)
        ctx.hi = hi
        ctx.mode = mode
        return out

    @staticmethod
    def backward(ctx, g):  # noqa: D102 - see class doc
        (out,) = ctx.saved_tensors
        # The native ReLU / ReLU6 backward kernels (one pass each; a mask built with comparisons and
        # torch.where costs ~10x more), evaluated on the output: 0 < out < hi  <=>  0 < x < hi.
        if ctx.hi is None:
            gx = torch.ops.aten.threshold_backward(g, out, 0)
        else:
            gx = torch.ops.aten.hardtanh_backward(g, out, 0.0, ctx.hi)
        if ctx.mode.guided:
            gx = gx.clamp_min_(0)
        return gx, None, None, None


class GuidedReLUMode(TorchFunctionMode):
    """Scoped guided backpropagation: inside ``with GuidedReLUMode():`` every ReLU-like call (see the module
    doc) on a tensor that needs a gradient gets the guided backward rule; nothing outside the block changes.

    ``count`` is the number of activations replaced. ``guided`` is read when the backward pass reaches an
    activation: :meth:`plain` switches the rule back to the ordinary ReLU gradient for a block (Guided
    Grad-CAM differentiates its Grad-CAM layer with plain gradients in the same graph).
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.guided = True

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # Every torch call of the forward pass comes through here: keep the common path short.
        if func not in _FUNCS:
            return func(*args, **kwargs) if kwargs else func(*args)
        kwargs = kwargs or {}
        spec = relu_like(func, args, kwargs)
        if spec is not None:
            x, hi, inplace = spec
            if torch.is_grad_enabled() and x.requires_grad and x.dtype.is_floating_point:
                self.count += 1
                return _GuidedClamp.apply(x, hi, inplace, self)
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def plain(self) -> Iterator[None]:
        """Within the block, the backward pass uses ordinary ReLU gradients."""
        old = self.guided
        self.guided = False
        try:
            yield
        finally:
            self.guided = old


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}.")


def _warn_if_no_relu(mode: GuidedReLUMode, model: nn.Module) -> None:
    if mode.count == 0:
        warnings.warn(
            f"{type(model).__name__} has no ReLU-like activation (nn.ReLU, nn.ReLU6, F.relu, torch.clamp(min=0), "
            "...) that runs in Python on the way from the input to the score (a TorchScript model runs its own), "
            "so guided backpropagation equals the plain gradient. See gradcam.methods.guided for the activations "
            "that are treated as ReLU.",
            UserWarning,
            stacklevel=3,
        )


class _ModeFactory:
    """Creates one :class:`GuidedReLUMode` per engine call and remembers the latest."""

    def __init__(self) -> None:
        self.modes: List[GuidedReLUMode] = []

    def __call__(self) -> GuidedReLUMode:
        self.modes.append(GuidedReLUMode())
        return self.modes[-1]

    def plain(self):
        return self.modes[-1].plain()


class GuidedBackprop(Gradient):
    """Guided backpropagation: the input gradient with negative gradients zeroed at every ReLU on the way back.

    ``GuidedBackprop(model)(x, target=..., top_k=...)`` -> :class:`~gradcam.pixels.PixelExplanation` with
    ``pixels`` (N, K, C, H, W) = guided dy/dx for every image and target (one forward, one batched
    backward), ``maps`` = normalize(saliency(pixels, reduce)). ``counterfactual=True`` explains -y (the
    guided rule applied to the gradient of -y). The model is used as is: no module is replaced.
    """

    name = "guided-backprop"

    def _context(self):
        return _ModeFactory()  # a fresh guided mode for each call (torch function modes are thread-local)

    def _after(self, cap: engine.Capture) -> None:
        _warn_if_no_relu(call_context().modes[-1], self.model)


class GuidedGradCAM(GradCAM):
    """Guided Grad-CAM: G^c = (guided dy^c/dx) * upsample(L^c_Grad-CAM), element-wise per channel.

    L^c_Grad-CAM is the normalised Grad-CAM map at ``layer`` (plain gradients, as in :class:`GradCAM`),
    upsampled to the input size. One forward pass serves both: the layer's plain gradient comes from a
    backward through the part of the network after the layer, the guided input gradient from one backward
    to the input. Result: :class:`~gradcam.pixels.PixelExplanation` with ``pixels`` = G (N, K, C, H, W),
    ``maps`` = normalize(saliency(G)), ``raw``/``weights``/``layer`` of the Grad-CAM part, ``cam`` = the
    Grad-CAM explanation. ``counterfactual=True``: counterfactual Grad-CAM times guided d(-y)/dx.
    ``eigen_smooth`` smooths the Grad-CAM part; ``aug_smooth`` and ``differentiable`` are refused (the
    guided input gradient of a flipped view is not the flipped guided gradient; the guided rule has no
    second derivative).
    """

    name = "guided-gradcam"
    output = "pixels"
    supports = frozenset(OPTIONS) - {"aug_smooth"}
    refusals = {
        "aug_smooth": "the guided input gradients of flipped and rescaled views are not views of one "
        "gradient. Use GradCAM(..., aug_smooth=True) for a smoothed map"
    }
    supports_differentiable = False

    def __init__(self, model: nn.Module, layer: LayerSpec = "auto", *, reduce: str = "abs-max", **kw):
        _check_reduce(reduce)
        super().__init__(model, layer, **kw)
        self.reduce = reduce

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        counterfactual = opts.counterfactual
        self._images_only(x)
        modes = _ModeFactory()
        cap = self._capture(
            x,
            target,
            top_k,
            counterfactual,
            input_gradient=True,
            context=modes,
            layer_gradient_context=modes.plain,
            forward_kwargs=opts.forward_kwargs or None,
        )
        _warn_if_no_relu(modes.modes[-1], self.model)
        cam = self._explain(cap, x.shape[2:], counterfactual, opts.eigen_smooth)
        grad_x = cap.input_gradient
        assert grad_x is not None  # input_gradient=True
        pixels = grad_x * cam.maps.unsqueeze(2).to(grad_x.dtype)
        base = pixel_explanation(pixels, cap, self.name, self.reduce, counterfactual)
        base.raw, base.weights, base.layer, base.cam = cam.raw, cam.weights, cam.layer, cam
        base.interpolation = cam.interpolation
        return base
