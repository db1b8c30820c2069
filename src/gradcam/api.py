"""The main job from Python: explain photos with a named model, get maps at the photo's size, overlays, records.

``gradcam.explain("cat.jpg")`` loads the embedded EfficientNet-Lite0 (once per process), feeds the whole
resized photo (no crop), and returns an :class:`ImageResult`: top-5 predictions, the explained classes,
their maps (at the photo's original size), peaks and boxes, and ``.overlay()``.
:func:`explain_batch` (from :mod:`gradcam.photos`, re-exported here) is the batched core that the folder
job (:mod:`gradcam.pipeline`, ``gradcam explain``) uses.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Dict, Optional, Union

from .image import ImageLike, load_image
from .models import LoadedModel, load_model
from .photos import (  # noqa: F401 - the public names of this module since its first release
    BOX_RESOLUTION,
    BOX_RULES,
    BOX_THRESHOLD,
    DEFAULT_BOX_RULE,
    PAPER_BOX_THRESHOLD,
    ClassSpec,
    ImageResult,
    _run,
    check_box_threshold,
    explain_batch,
)

MODEL_CACHE_SIZE = 4  # models loaded by name (gradcam.explain(photo, "name")) kept for the next call, LRU
_MODELS: OrderedDict[str, LoadedModel] = OrderedDict()
# Method objects per LoadedModel, kept only as long as that LoadedModel lives: keyed by its id, with the entry
# removed by a weakref finalizer when it is freed (the method objects refer to its nn.Module, never to the
# LoadedModel itself), so dropping the last reference to a model frees the model and its methods.
_METHODS: Dict[int, Dict[tuple, object]] = {}


def get_model(model: Union[str, LoadedModel, None], weights: Optional[str] = None, **options) -> LoadedModel:
    """A :class:`LoadedModel` (loaded once per process, name and options). ``options``: ``quality``, ``size``,
    ``crop``, ``mean``, ``std`` of :func:`gradcam.models.prepare_model`; ``model=None``: the default preset's."""
    if isinstance(model, LoadedModel):
        return model
    options = {k: v for k, v in options.items() if v is not None}
    key = f"{model}|{weights}|{sorted((k, str(v)) for k, v in options.items())}"
    if key not in _MODELS:
        if options or model is None:
            from .models import prepare_model

            loaded, threshold = prepare_model(model, weights=weights, **options)
            loaded.box_threshold = threshold
            _MODELS[key] = loaded
        else:
            _MODELS[key] = load_model(model, weights=weights)
        while len(_MODELS) > MODEL_CACHE_SIZE:  # least recently used first
            _MODELS.popitem(last=False)
    else:
        _MODELS.move_to_end(key)
    return _MODELS[key]


def get_method(loaded: LoadedModel, method: str = "gradcam", layer: Optional[str] = None):
    """The explanation method ``method`` (any name in :mod:`gradcam.methods.registry`) on ``loaded``'s layer."""
    from .methods import registry

    factory = registry.get(method)
    per_model = _METHODS.get(id(loaded))
    if per_model is None:
        per_model = _METHODS[id(loaded)] = {}
        weakref.finalize(loaded, _METHODS.pop, id(loaded), None)
    key = (id(loaded.model), method, layer or loaded.layer)
    if key not in per_model:
        per_model[key] = factory(loaded.model, layer=layer or loaded.layer)
    return per_model[key]


def resolve_target(loaded: LoadedModel, target: ClassSpec) -> Optional[int]:
    """A class name (case-insensitive), an id, or ``None`` -> the class id (``None`` stays ``None``)."""
    return None if target is None else loaded.class_id(target)


def explain(
    path_or_image: ImageLike,
    model: Optional[Union[str, LoadedModel]] = "efficientnet-lite0",
    target: ClassSpec = None,
    top_k: int = 1,
    *,
    method: str = "gradcam",
    layer: Optional[str] = None,
    weights: Optional[str] = None,
    box_threshold: Optional[float] = None,
    quality: Optional[str] = None,
    size=None,
    crop: Optional[str] = None,
    mean=None,
    std=None,
    box_rule: str = DEFAULT_BOX_RULE,
    precision: Optional[str] = None,
) -> ImageResult:
    """Explain one photo: where ``model`` looked for ``target`` (a class name or id; default its top ``top_k``).

    Grad-CAM: L^c = ReLU(sum_k alpha_k^c A^k), alpha_k^c = mean_ij dy^c/dA^k_ij, at ``layer`` (default the
    model's own, for EfficientNet-Lite0 the head's ReLU6 output), on the whole photo resized so that its short
    side is the model's size. ``method`` is any name of :mod:`gradcam.methods.registry`. ``box_threshold``:
    the box is around the largest segment of L^c >= box_threshold * max L^c (default: the one measured for
    the model or preset, else 0.45; the paper's Table 1 rule is 0.15). ``quality``: ``"fast"``,
    ``"standard"`` or ``"high"``, a preset naming model, size and box threshold (``model`` is then
    the preset's; leave it at its default or name the same one). ``size``/``crop``/``mean``/``std``: the
    model input (see :mod:`gradcam.models.inputs`; default: what the model states). ``precision``:
    ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (CUDA/MPS only): the forward pass under ``torch.autocast``,
    gradients and maps in float32 (see the GPU and precision guide).
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int; got {top_k!r}.")
    if quality is not None and model == "efficientnet-lite0":
        model = None  # the signature's default model: the preset names its own
    loaded = get_model(model, weights, quality=quality, size=size, crop=crop, mean=mean, std=std)
    if box_threshold is None:
        box_threshold = BOX_THRESHOLD if loaded.box_threshold is None else loaded.box_threshold
    image = load_image(path_or_image)
    source = (
        str(path_or_image)
        if isinstance(path_or_image, (str,)) or hasattr(path_or_image, "__fspath__")
        else None
    )
    m = get_method(loaded, method, layer)
    return explain_batch(
        [image],
        loaded,
        m,
        resolve_target(loaded, target),
        top_k,
        [source],
        box_threshold=box_threshold,
        box_rule=box_rule,
        precision=precision,
    )[0]
