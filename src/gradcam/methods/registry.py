"""Every method by name, in one place, with metadata a user can read (``gradcam methods`` prints it).

``METHODS[name](model, layer=...)`` builds a method ``m(x, target=None, top_k=None, *, counterfactual=False,
forward_kwargs=None, aug_smooth=None, eigen_smooth=None)`` (the contract of
:class:`gradcam.methods.contract.Method`); ``INFO[name]`` is its :class:`~gradcam.methods.contract.MethodInfo`.
All of the library's methods are registered below when this module is imported; a user adds one with
:func:`register`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

from .attribution import GradientXInput, IntegratedGradients, SmoothGrad, VarGrad
from .baselines import CentredGaussian, RandomMap
from .cam import CAM
from .contract import OPTIONS, CallOptions, MethodInfo
from .eigen import EigenCAM, EigenGradCAM
from .elementwise import GradCAMElementWise
from .factorization import DeepFeatureFactorization
from .finer import FinerCAM
from .fullgrad import FullGrad
from .gradcam import GradCAM
from .gradient_weighted import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .guided import GuidedBackprop, GuidedGradCAM
from .input_gradient import Gradient
from .kernel_pca import KPCACAM
from .lrp import LRP
from .multilayer import RefineCAM, SegEigenCAM
from .occlusion import Occlusion
from .perturbation import RISE, AblationCAM, ScoreCAM
from .random_cam import RandomCAM
from .shapley import ShapleyCAM
from .smoothed import ISCAM, SSCAM, SmoothGradCAMPlusPlus

METHODS: Dict[str, Callable] = {}
INFO: Dict[str, MethodInfo] = {}


def register(name: str, factory: Callable, info: Optional[MethodInfo] = None, **fields: Any) -> None:
    """Make ``factory(model, layer=..., **kw)`` available as method ``name``.

    ``info`` (or its fields as keywords: ``family``, ``output``, ``forward_passes``, ``handles_tokens``,
    ``handles_volumes``, ``random``, ...) describes it; what is not given is read from the method class
    (``needs_gradients``, ``output``, the options in ``supports``, the first line of its docstring).
    """
    cls = getattr(factory, "method_class", factory)
    derived = {
        "needs_gradients": bool(getattr(cls, "needs_gradients", True)),
        "output": getattr(cls, "output", "maps"),
        "options": tuple(o for o in OPTIONS if o in getattr(cls, "supports", ())),
        "summary": ((getattr(cls, "__doc__", None) or "").strip().splitlines() or [""])[0],
    }
    if info is None:
        info = MethodInfo(name=name, **{**derived, **fields})
    METHODS[name] = factory
    INFO[name] = info


def get(name: str) -> Callable:
    """The factory of method ``name``; a clear error lists the known names."""
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


def info(name: str) -> MethodInfo:
    """The metadata of method ``name`` (see :class:`~gradcam.methods.contract.MethodInfo`)."""
    get(name)
    return INFO[name]


def explains_concepts(name: Any) -> bool:
    """Whether ``name`` is a registered method that explains concepts rather than classes (the ``concepts``
    family, ``dff``): called without a target, one map per concept. ``False`` for any other value."""
    return isinstance(name, str) and name in INFO and INFO[name].family == "concepts"


def table() -> List[MethodInfo]:
    """Every registered method's metadata, in registration order (the library's first)."""
    return [INFO[name] for name in METHODS]


def _load_optional() -> None:
    """Kept for callers of earlier versions: every method is registered when this module is imported."""


def _input_space(cls: type) -> Callable:
    """A factory for a method that takes no layer: ``factory(model, layer=..., **kw) -> cls(model, **kw)``."""

    @functools.wraps(cls, assigned=("__doc__",), updated=())
    def factory(model, layer="auto", **kw):
        return cls(model, **kw)

    factory.method_class = cls  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = f"{cls.__name__}_factory"
    return factory


class _Counterfactual(GradCAM):
    """Counterfactual Grad-CAM: Grad-CAM of -y (regions whose removal would raise the score), always on."""

    name = "counterfactual"

    def _run(self, x, target, top_k, opts: CallOptions):
        return super()._run(
            x, target, top_k, CallOptions(True, opts.forward_kwargs, opts.aug_smooth, opts.eigen_smooth)
        )


_ALL: Dict[str, Any] = dict(handles_tokens=True, handles_volumes=True)
# name, factory, family, forward passes per image (C: the layer's channels), what it handles.
register("gradcam", GradCAM, family="cam", **_ALL)
register("counterfactual", _Counterfactual, family="cam", **_ALL)
register("cam", CAM, family="cam-gradient-free", **_ALL)
register("gradcam++", GradCAMPlusPlus, family="cam", **_ALL)
register(
    "xgradcam",
    XGradCAM,
    family="cam",
    summary="XGrad-CAM (Fu et al., BMVC 2020): w^c = sum_ij A^c_ij g^c_ij / sum_ij A^c_ij.",
    **_ALL,
)
register("hirescam", HiResCAM, family="cam", **_ALL)
register("layercam", LayerCAM, family="cam", **_ALL)
register(
    "eigencam",
    EigenCAM,
    family="cam-gradient-free",
    summary="Eigen-CAM: the first principal component of the activations (class-independent).",
    **_ALL,
)
register(
    "eigengradcam",
    EigenGradCAM,
    family="cam",
    summary="Eigen-Grad-CAM: the first principal component of the terms dy/dA^c * A^c.",
    **_ALL,
)
register("scorecam", ScoreCAM, family="perturbation", forward_passes="1 + C", **_ALL)
register(
    "ablationcam",
    AblationCAM,
    family="perturbation",
    forward_passes="1 + C (after the layer)",
    handles_volumes=True,
)
register("rise", RISE, family="perturbation", forward_passes="1 + n_masks", handles_tokens=True, random=True)
register("random", RandomCAM, family="baseline", random=True, **_ALL)
register("gradient", _input_space(Gradient), family="pixel", handles_tokens=True)
register("guided-backprop", _input_space(GuidedBackprop), family="pixel", handles_tokens=True)
register("guided-gradcam", GuidedGradCAM, family="pixel", handles_tokens=True)
register(
    "occlusion",
    _input_space(Occlusion),
    family="perturbation",
    forward_passes="1 + windows",
    handles_tokens=True,
)
register("random-map", RandomMap, family="baseline", random=True, **_ALL)
register("gaussian", CentredGaussian, family="baseline", **_ALL)
# The methods other libraries ship (pytorch-grad-cam, torch-cam, Captum, zennit), on the same engine.
register("gradcam-elementwise", GradCAMElementWise, family="cam", **_ALL)
register(
    "kpcacam",
    KPCACAM,
    family="cam-gradient-free",
    summary="KPCA-CAM: the first kernel principal component of the activations (class-independent).",
    **_ALL,
)
register("finercam", FinerCAM, family="cam", **_ALL)
register("refinecam", RefineCAM, family="cam", **_ALL)
register("segeigencam", SegEigenCAM, family="cam", **_ALL)
register(
    "fullgrad",
    _input_space(FullGrad),
    family="pixel",
    handles_volumes=True,
    summary="FullGrad: the input-gradient term plus every bias-gradient term (Srinivas & Fleuret 2019).",
)
register(
    "shapleycam",
    ShapleyCAM,
    family="cam",
    summary="Shapley-CAM (Cai et al. 2025): w^c = mean_ij (dy/dA - 1/2 H A)^c, a Hessian-vector product.",
    **_ALL,
)
register(
    "smoothgradcam++",
    SmoothGradCAMPlusPlus,
    family="cam",
    forward_passes="1 + samples",
    random=True,
    summary="Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with derivatives averaged over noisy inputs.",
    **_ALL,
)
register(
    "sscam",
    SSCAM,
    family="perturbation",
    forward_passes="1 + C x samples",
    random=True,
    summary="SS-CAM (Wang et al. 2020): Score-CAM's channel gains averaged over noisy masks (torch-cam's form).",
    **_ALL,
)
register(
    "iscam",
    ISCAM,
    family="perturbation",
    forward_passes="1 + C x samples",
    summary="IS-CAM (Naidu et al. 2020): Score-CAM's channel gains integrated over scaled masks (torch-cam's form).",
    **_ALL,
)
register("dff", DeepFeatureFactorization, family="concepts", handles_tokens=True, handles_volumes=True)
register("gradient-x-input", _input_space(GradientXInput), family="pixel", handles_tokens=True)
register(
    "integrated-gradients",
    _input_space(IntegratedGradients),
    family="pixel",
    forward_passes="2 + steps",
    handles_tokens=True,
)
register(
    "smoothgrad",
    _input_space(SmoothGrad),
    family="pixel",
    forward_passes="1 + samples",
    handles_tokens=True,
    random=True,
)
register(
    "vargrad",
    _input_space(VarGrad),
    family="pixel",
    forward_passes="1 + samples",
    handles_tokens=True,
    random=True,
)
register(
    "lrp", _input_space(LRP), family="pixel", summary="LRP: zennit's relevance rules (needs the lrp extra)."
)
