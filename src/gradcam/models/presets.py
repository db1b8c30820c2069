"""``--quality`` presets and the one place where a model is loaded and given its input options.

A preset names a built-in model, its input short side and its box threshold, chosen on the tuning half of
the annotated photos only (``benchmarks/photo_defaults.py``; the held-out half's numbers are in
docs/results/presets.md). :func:`prepare_model` is what ``gradcam explain``, :func:`gradcam.explain` and
:func:`gradcam.distributed.explain_dataset` call: load -> preset -> the user's size/crop/mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import torch

from .inputs import SizeLike, configure_input
from .loaded import LoadedModel


@dataclass(frozen=True)
class Preset:
    """A ``--quality`` preset: ``model`` (a built-in name), input short side ``size``, ``box_threshold``."""

    name: str
    model: str
    size: int
    box_threshold: float
    extra: str = ""  # the pip extra its model's weights need ("" = core install)


# Chosen on the tuning half of gradcam/data/photo_boxes.json (benchmarks/photo_defaults.py --presets; rule:
# most boxes with IoU >= 0.5, then peaks in a box, then mean IoU; fast: Lite0 at 256, the cost base;
# standard: at most 1.5x its cost, timed round-robin; high: no cost limit). Tuning half, 18 objects: fast
# 9/18 boxes, 13/18 peaks; standard 11/18, 14/18 at 1.18x; high 12/18, 15/18 at 2.03x. The held-out half's
# numbers are in docs/results/presets.md.
QUALITY_PRESETS: Dict[str, Preset] = {
    "fast": Preset("fast", "efficientnet-lite0", 256, 0.35),
    "standard": Preset("standard", "efficientnet-lite1", 256, 0.4, "lite"),
    "high": Preset("high", "efficientnet-lite0", 384, 0.3),
}
DEFAULT_QUALITY = "fast"  # what `gradcam explain` uses without --quality or --model (core install only)


def get_preset(quality: Optional[str]) -> Optional[Preset]:
    """The preset named ``quality`` (``None`` stays ``None``), or a ValueError listing the presets."""
    if quality is None:
        return None
    if quality not in QUALITY_PRESETS:
        raise ValueError(
            f"Unknown quality {quality!r}; one of: {', '.join(QUALITY_PRESETS)} "
            f"({'; '.join(describe_preset(p) for p in QUALITY_PRESETS.values())})."
        )
    return QUALITY_PRESETS[quality]


def describe_preset(p: Preset) -> str:
    """``fast = efficientnet-lite0, short side 256, box at 45%``."""
    return f"{p.name} = {p.model}, short side {p.size}, box at {p.box_threshold:.0%}"


def prepare_model(
    model: Optional[str] = None,
    *,
    weights: Optional[str] = None,
    device: Union[str, torch.device] = "cpu",
    quality: Optional[str] = None,
    size: SizeLike = None,
    crop: Optional[str] = None,
    mean=None,
    std=None,
    loader: Optional[Callable[..., LoadedModel]] = None,
) -> Tuple[LoadedModel, Optional[float]]:
    """Load ``model`` with its preset and input options; returns ``(loaded, box_threshold)``.

    ``loader``: the function that loads a model by name (:func:`gradcam.models.load_model`, which
    ``gradcam.models.prepare_model`` passes; this module sits below that package and does not import it).

    ``quality`` picks a preset (model, size, box threshold); ``model`` may then be left out or must be the
    preset's model. Without either, the :data:`DEFAULT_QUALITY` preset. The threshold is the preset's (or
    ``loaded.box_threshold`` when the model has a measured one), ``None`` for other models (the caller's
    default). ``size``/``crop``/``mean``/``std``: see :func:`gradcam.models.inputs.configure_input`.
    """
    preset = get_preset(quality)
    if preset is None and model is None:
        preset = QUALITY_PRESETS[DEFAULT_QUALITY]
    if preset is not None and model is not None and model != preset.model:
        raise ValueError(
            f"--quality {preset.name} is {preset.model}; drop --model {model} or --quality "
            f"({describe_preset(preset)})."
        )
    assert model is not None or preset is not None  # the default preset is taken above
    name = model if model is not None else preset.model  # type: ignore[union-attr]
    if loader is None:
        raise ValueError("presets.prepare_model needs loader=...; call gradcam.models.prepare_model instead.")
    loaded = loader(name, weights=weights, device=device)
    threshold = loaded.box_threshold
    if preset is not None:
        loaded.size, threshold = preset.size, preset.box_threshold
        loaded.input_source = f"--quality {preset.name}"
    configure_input(loaded, size=size, crop=crop, mean=mean, std=std)
    return loaded, threshold


def prepare_from_args(args) -> Tuple[LoadedModel, Optional[float]]:
    """:func:`prepare_model` from a ``gradcam explain`` namespace (``model``, ``weights``, ``device``,
    ``quality``, ``size``, ``crop``, ``mean``, ``std``; missing ones are ``None``)."""
    get = lambda k, d=None: getattr(args, k, d)  # noqa: E731
    return prepare_model(
        get("model"),
        weights=get("weights"),
        device=get("device", "cpu") or "cpu",
        quality=get("quality"),
        size=get("size"),
        crop=get("crop"),
        mean=get("mean"),
        std=get("std"),
    )
