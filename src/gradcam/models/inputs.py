"""What a model is fed: its input size rule and normalisation, the user's overrides, and input errors.

Each model family states its own input (see docs/guides/models.md):

- the built-in EfficientNet-Lite models take any size: the whole photo, short side ``size``, ``(x - 0.5) / 0.5``;
- ``timm:NAME``: timm's data config (``input_size``, ``crop_pct``, ``mean``, ``std``); models whose patch
  embedding insists on one size (ViT: ``patch_embed.strict_img_size``) are fixed-size;
- ``torchvision:NAME``: the architecture's weights transforms (``resize_size``, ``crop_size``, ``mean``, ``std``);
  models with an ``image_size`` attribute (ViT) are fixed-size;
- TorchScript files and ``package.module:factory``: an ``image_size`` attribute (or ``config.image_size``,
  Hugging Face) makes them fixed-size; otherwise short side 256 and ImageNet's mean/std.

A fixed-size model gets the whole photo resized to exactly its size (the aspect ratio is not kept, so the
map still covers the whole photo and peaks and boxes map back to it exactly). ``size``, ``crop``, ``mean``
and ``std`` (``--size``, ``--crop``, ``--mean``, ``--std``) override what the model states.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union, cast

import numpy as np
import torch

from .loaded import LoadedModel, describe_input, preprocess_fixed  # noqa: F401  (re-exported)

SizeLike = Union[int, str, Sequence[int], None]
CROPS = ("auto", "none", "resize")


def parse_size(value: SizeLike) -> Optional[Tuple[int, int]]:
    """``224``, ``"224"``, ``"224x320"`` (H x W) or ``(224, 320)`` -> ``(H, W)``; ``None`` stays ``None``."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            parts = [int(v) for v in value.lower().replace("×", "x").split("x")]
        elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            parts = [int(value)]
        else:
            parts = [int(v) for v in cast(Sequence[int], value)]
    except (TypeError, ValueError):
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError(f"size must be a number of pixels (224) or HxW (224x320); got {value!r}.")
    return parts[0], parts[1]


def parse_triple(value: Union[str, Sequence[float], None], name: str) -> Optional[Tuple[float, float, float]]:
    """``"0.5,0.5,0.5"``, ``0.5`` or a 3-sequence -> a (R, G, B) float triple (``None`` stays ``None``)."""
    if value is None:
        return None
    try:
        if isinstance(value, str):
            vals = [float(v) for v in value.replace(" ", ",").split(",") if v]
        elif isinstance(value, (int, float)):
            vals = [float(value)]
        else:
            vals = [float(v) for v in value]
    except (TypeError, ValueError):
        vals = []
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3 or (name == "std" and min(vals) <= 0):
        rule = "three positive numbers" if name == "std" else "three numbers"
        raise ValueError(
            f"{name} must be {rule} R,G,B (e.g. 0.485,0.456,0.406) or one for all; got {value!r}."
        )
    return vals[0], vals[1], vals[2]


def configure_input(
    loaded: LoadedModel, size: SizeLike = None, crop: Optional[str] = None, mean=None, std=None
) -> LoadedModel:
    """Apply the user's input options to ``loaded`` (in place; returns it).

    ``size``: for an any-size model the short side (one number), for a fixed-size model the exact input
    (``224`` or ``HxW``); ``crop``: ``"auto"`` (default: the model's own rule), ``"none"`` (the whole photo,
    aspect kept, short side ``size``: only for models that take any size), ``"resize"`` (the whole photo
    resized to exactly ``size`` x ``size``, aspect not kept: what fixed-size models get); ``mean``/``std``:
    the normalisation x = (rgb / 255 - mean) / std.
    """
    crop = "auto" if crop is None else str(crop).lower()
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}; got {crop!r}.")
    hw = parse_size(size)
    m, s = parse_triple(mean, "mean"), parse_triple(std, "std")
    if crop == "resize" and loaded.fixed_size is None:
        loaded.fixed_size = hw or ((loaded.size, loaded.size) if loaded.size else None)
    elif crop == "none":
        loaded.fixed_size = None
    if hw is not None:
        if loaded.fixed_size is not None:
            loaded.fixed_size = hw
        elif hw[0] != hw[1]:
            raise ValueError(
                f"{loaded.name} takes the whole photo with its aspect ratio kept: size is its short side "
                f"(one number, e.g. --size {hw[0]}); for an exact HxW input add --crop resize."
            )
        else:
            loaded.size = hw[0]
    if loaded.fixed_size is not None:
        loaded.size = min(loaded.fixed_size)
    if m is not None:
        loaded.mean = m
    if s is not None:
        loaded.std = s
    if any(v is not None for v in (size, mean, std)) or crop != "auto":
        loaded.input_source = "set by the user"
    return loaded


def input_error(loaded: LoadedModel, x: torch.Tensor, error: BaseException) -> BaseException:
    """A one-line ValueError when the model itself fails on an input of ``x``'s shape, else ``error``.

    Runs the model once on ``x[:1]`` (no gradients) to tell a model that refuses the input (a ViT fed
    256 x 341) from an error of the method; the message names the input shape and the option to change.
    """
    if not isinstance(error, (RuntimeError, AssertionError, ValueError, TypeError, IndexError)):
        return error
    try:
        with torch.no_grad():
            loaded.model(x[:1])
    except Exception as e:  # noqa: BLE001 - any refusal of the input is reported the same way
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        h, w = x.shape[-2:]
        hint = (
            f"set its input size with --size H or HxW (size= in Python; e.g. --size {h if h == w else min(h, w)})"
            if loaded.fixed_size is not None
            else "give it a fixed input with --size N --crop resize (size=, crop= in Python), or --mean/--std if the "
            "channels are wrong"
        )
        return ValueError(
            f"The model {loaded.name or type(loaded.model).__name__} cannot take an input of shape "
            f"{tuple(x.shape)} ({type(e).__name__}: {first}); {hint}."
        )
    return error
