"""The one contract every explanation method satisfies, and the metadata the registry shows for it.

A method is an object built from a model, ``method = Cls(model, ...)``, and called on a batch::

    method(x, target=None, top_k=None, *, counterfactual=False, forward_kwargs=None,
           aug_smooth=None, eigen_smooth=None, precision=None) -> Explanation | PixelExplanation

- ``x``: images (N, C, H, W) or volumes (N, C, D, H, W); ``target`` / ``top_k``: what to explain
  (:mod:`gradcam.targets`);
- ``counterfactual``: explain -y (regions whose removal would raise the score);
- ``forward_kwargs``: extra arguments of ``model(x, **forward_kwargs)``;
- ``aug_smooth`` / ``eigen_smooth``: test-time augmentation and principal-component smoothing
  (:mod:`gradcam.methods.smoothing`); ``None`` takes the constructor's setting;
- ``precision``: ``"fp32"``, ``"bf16"``, ``"fp16"``: the forward passes under ``torch.autocast``, gradients and
  maps float32 (``None``: the constructor's, else the ambient :func:`gradcam.engine.precision`); honoured by
  every method but those with ``supports_precision = False`` (Ablation-CAM), which refuse it.

Every method accepts every option; one it cannot honour is refused with a ``ValueError`` that names the
option and says what to use instead (:meth:`Method.refuse`), at construction where the option is a
constructor setting (``aug_smooth=True``, ``eigen_smooth=True``), never ignored. Which options a class
honours is its :attr:`Method.supports` set; the registry shows it (``gradcam methods``).

Subclasses implement :meth:`Method._run` (the options already checked and resolved in a
:class:`CallOptions`). Layer-based CAM methods subclass :class:`gradcam.methods.base.LayerMethod` and
only define their channel weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, FrozenSet, NoReturn, Optional, Tuple, Union

import torch
from torch import nn

from .. import engine
from ..explanation import Explanation
from ..pixels import PixelExplanation
from ..targets import Target

#: The options of every method's ``__call__`` after ``x, target, top_k``.
OPTIONS: Tuple[str, ...] = ("counterfactual", "forward_kwargs", "aug_smooth", "eigen_smooth")

#: Why a method refuses an option, unless its class says more (:attr:`Method.refusals`).
REASONS: Dict[str, str] = {
    "counterfactual": "it uses no gradients, so there is nothing to negate. Use GradCAM(...)(x, counterfactual=True) "
    "for counterfactual maps",
    "forward_kwargs": "its extra forward passes call the model on the input alone. Fold the extra arguments into "
    "the model (a wrapper module whose forward adds them), or use a gradient method",
    "aug_smooth": "it has no layer maps to average over augmented views. Use a CAM method (e.g. GradCAM) for "
    "aug_smooth, or average this method's calls on flipped inputs yourself",
    "eigen_smooth": "it has no per-channel terms to take a principal component of. Use a CAM method (e.g. "
    "GradCAM) for eigen_smooth",
    "precision": "its forward passes must run at the model's own precision. Use precision='fp32' (the default), "
    "or a CAM method (e.g. GradCAM) for mixed precision",
}


@dataclass(frozen=True)
class CallOptions:
    """The options of one call, checked against :attr:`Method.supports` and resolved (``None`` -> the
    constructor's setting)."""

    counterfactual: bool = False
    forward_kwargs: Dict = field(default_factory=dict)
    aug_smooth: bool = False
    eigen_smooth: bool = False


@dataclass(frozen=True)
class MethodInfo:
    """What a user can read about a registered method (``gradcam methods``; :func:`registry.info`).

    - ``family``: ``"cam"`` (gradient-weighted layer maps), ``"cam-gradient-free"`` (layer maps without
      a backward pass), ``"perturbation"`` (many forwards of perturbed inputs), ``"pixel"`` (input-space
      gradients), ``"concepts"`` (maps of concepts shared by the batch, not of classes: Deep Feature
      Factorization), ``"baseline"`` (chance references for evaluation tables), ``"custom"`` (registered by a user);
    - ``output``: ``"maps"`` (:class:`~gradcam.explanation.Explanation`) or ``"pixels"``
      (:class:`~gradcam.pixels.PixelExplanation`);
    - ``needs_gradients``: whether a backward pass runs;
    - ``forward_passes``: forward passes per image (``C``: the layer's channels), before ``aug_smooth``
      (which multiplies by 6);
    - ``handles_tokens`` / ``handles_volumes``: works on token models (ViT, Swin) / on (N, C, D, H, W) volumes;
    - ``random``: draws random numbers (seeded: the same call gives the same result);
    - ``options``: the call options it honours (the others are refused with a clear error);
    - ``summary``: one line.
    """

    name: str
    family: str = "custom"
    output: str = "maps"
    needs_gradients: bool = True
    forward_passes: str = "1"
    handles_tokens: bool = False
    handles_volumes: bool = False
    random: bool = False
    options: Tuple[str, ...] = ()
    summary: str = ""

    def as_dict(self) -> dict:
        """A JSON-ready dict of the fields."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


class Method:
    """The base of every method: the uniform ``__call__``, option checks, model validation.

    Subclass contract: set :attr:`name`, :attr:`supports` (and :attr:`refusals` for a better reason than
    :data:`REASONS`), call ``super().__init__(model, aug_smooth=..., eigen_smooth=...)`` and implement
    :meth:`_run`. ``__call__`` checks the options and hands them to :meth:`_run` resolved.
    """

    name: ClassVar[str] = "method"
    #: Whether a call runs a backward pass.
    needs_gradients: ClassVar[bool] = True
    #: ``"maps"`` (an :class:`~gradcam.explanation.Explanation`) or ``"pixels"`` (a ``PixelExplanation``).
    output: ClassVar[str] = "maps"
    #: The options of :data:`OPTIONS` this class honours; the others are refused with a ValueError.
    supports: ClassVar[FrozenSet[str]] = frozenset(OPTIONS)
    #: Per refused option, why (replaces :data:`REASONS`' text).
    refusals: ClassVar[Dict[str, str]] = {}

    #: The forward passes' precision (``"fp32"``, ``"bf16"``, ``"fp16"``; ``None``: the ambient one, see
    #: :func:`gradcam.engine.precision`); set by the constructor's ``precision=``, overridden per call.
    precision: Optional[str] = None
    #: Whether a precision other than fp32 is honoured (refused with a ValueError otherwise).
    supports_precision: ClassVar[bool] = True

    def __init__(
        self,
        model: nn.Module,
        *,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}.")
        self.model = model
        self.precision = self.check_precision(precision)
        self.aug_smooth = bool(aug_smooth)
        self.eigen_smooth = bool(eigen_smooth)
        for option, value in (("aug_smooth", self.aug_smooth), ("eigen_smooth", self.eigen_smooth)):
            if value and option not in self.supports:
                self.refuse(option, value)

    @classmethod
    def check_precision(cls, precision: Optional[str]) -> Optional[str]:
        """``precision`` checked (:func:`gradcam.engine.check_precision`; ``None`` stays ``None``), refused with a
        ValueError by a class that cannot honour it (:attr:`supports_precision`)."""
        if precision is None:
            return None
        p = engine.check_precision(precision)
        if p != "fp32" and not cls.supports_precision:
            cls.refuse("precision", p)
        return p

    @classmethod
    def refuse(cls, option: str, value: object = True) -> NoReturn:
        """Raise the ValueError for an option this method cannot honour: it names the method, the option and
        what to do instead."""
        why = cls.refusals.get(option) or REASONS.get(option, "this method does not support it")
        raise ValueError(f"{cls.__name__} ('{cls.name}') cannot honour {option}={value!r}: {why}.")

    def options(
        self,
        counterfactual: bool = False,
        forward_kwargs: Optional[dict] = None,
        aug_smooth: Optional[bool] = None,
        eigen_smooth: Optional[bool] = None,
    ) -> CallOptions:
        """Check the options of one call against :attr:`supports` and resolve the defaults."""
        opts = CallOptions(
            counterfactual=bool(counterfactual),
            forward_kwargs=dict(forward_kwargs or {}),
            aug_smooth=self.aug_smooth if aug_smooth is None else bool(aug_smooth),
            eigen_smooth=self.eigen_smooth if eigen_smooth is None else bool(eigen_smooth),
        )
        for option in OPTIONS:
            value = getattr(opts, option)
            if value and option not in self.supports:
                self.refuse(option, forward_kwargs if option == "forward_kwargs" else value)
        return opts

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
        precision: Optional[str] = None,
    ) -> Union[Explanation, PixelExplanation]:
        """Explain ``x`` (N, C, H, W), or volumes (N, C, D, H, W), for ``target`` (see :mod:`gradcam.targets`).

        ``counterfactual``: explain -y. ``forward_kwargs``: extra arguments of the model's forward (batched
        tensors among them are sliced with ``x``). ``aug_smooth`` / ``eigen_smooth`` (default: the
        constructor's): see :mod:`gradcam.methods.smoothing`. ``precision`` (default: the constructor's, else
        the ambient :func:`gradcam.engine.precision`): ``"bf16"`` / ``"fp16"`` run the forward passes under
        ``torch.autocast``; gradients, activations and maps stay float32. An option this method cannot honour
        raises a ValueError naming it (the class's :attr:`supports` lists those it honours).
        """
        opts = self.options(counterfactual, forward_kwargs, aug_smooth, eigen_smooth)
        p = self.check_precision(precision) or self.precision
        if p is None:
            return self._run(x, target, top_k, opts)
        with engine.precision(p):
            return self._run(x, target, top_k, opts)

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions):
        """The method itself, for options already checked (see :class:`CallOptions`)."""
        raise NotImplementedError

    def _images_only(self, x: torch.Tensor) -> None:
        """For a method without a volume form: a clear error for (N, C, D, H, W) inputs."""
        if isinstance(x, torch.Tensor) and x.dim() == 5:
            raise ValueError(
                f"{type(self).__name__} ('{self.name}') explains images (N, C, H, W); got a volume of shape "
                f"{tuple(x.shape)}. For volumes use a CAM method (e.g. GradCAM), which handles (N, C, D, H, W)."
            )
