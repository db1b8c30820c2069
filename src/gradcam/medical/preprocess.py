"""From a :class:`Volume` to a model input: intensity windowing, resampling, channels.

Windowing (CT, Hounsfield units): ``x' = clamp((x - (L - W/2)) / W, 0, 1)`` for level L and width W.
Resampling: trilinear (``align_corners=False``) to a voxel size or a shape; the whole field of view is
kept, so a map computed on the resampled grid is brought back to the volume's grid by trilinear
upsampling and lines up voxel for voxel.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .volume import Volume

# (level, width) in HU: the usual radiology display windows.
WINDOWS = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}
WindowSpec = Union[None, str, Tuple[float, float], Sequence[float]]


def parse_window(window: WindowSpec) -> Optional[Tuple[float, float]]:
    """``None``, a preset name (:data:`WINDOWS`), ``"LEVEL,WIDTH"`` or ``(level, width)`` -> (level, width)."""
    if window is None:
        return None
    if isinstance(window, str):
        key = window.strip().lower()
        if key in WINDOWS:
            return WINDOWS[key]
        parts = key.split(",")
        try:
            window = tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"window {window!r} is neither a preset ({', '.join(WINDOWS)}) nor LEVEL,WIDTH (e.g. 40,400)."
            ) from None
    vals = tuple(float(v) for v in window)
    if len(vals) != 2 or not vals[1] > 0:
        raise ValueError(f"window is (level, width) with width > 0; got {window!r}.")
    return vals


def apply_window(data: torch.Tensor, window: WindowSpec) -> torch.Tensor:
    """Intensities windowed to [0, 1]: clamp((x - (L - W/2)) / W, 0, 1); ``window=None`` returns ``data``."""
    lw = parse_window(window)
    if lw is None:
        return data
    level, width = lw
    return ((data - (level - width / 2)) / width).clamp_(0.0, 1.0)


def _triple(v, name: str) -> Tuple[float, float, float]:
    vals = (float(v),) * 3 if isinstance(v, (int, float)) else tuple(float(s) for s in v)
    if len(vals) != 3 or not all(s > 0 for s in vals):
        raise ValueError(f"{name} is one positive number or three (along D, H, W); got {v!r}.")
    return vals


def target_shape(volume: Volume, spacing=None, size=None) -> Tuple[int, int, int]:
    """The grid to resample to: ``size`` (D, H, W) as given, or ``round(shape * spacing / new spacing)``."""
    if size is not None and spacing is not None:
        raise ValueError("Give spacing or size, not both.")
    if size is not None:
        return tuple(int(s) for s in _triple(size, "size"))  # type: ignore[return-value]
    if spacing is not None:
        new = _triple(spacing, "spacing")
        return tuple(max(1, round(n * s / t)) for n, s, t in zip(volume.shape, volume.spacing, new))  # type: ignore
    return volume.shape


def model_input(
    volume: Volume,
    window: WindowSpec = None,
    spacing=None,
    size=None,
    channels: int = 1,
) -> torch.Tensor:
    """The (1, channels, D', H', W') float32 input: windowed, resampled (trilinear), repeated to ``channels``.

    ``spacing``: voxel size (mm; one number or (sz, sy, sx)) the model expects; ``size``: the shape
    (D', H', W') it expects (one of the two, or neither). The volume's own data is not changed.
    """
    shape = target_shape(volume, spacing, size)
    x = volume.data
    if shape != volume.shape:
        x = F.interpolate(x[None, None], size=shape, mode="trilinear", align_corners=False)[0, 0]
    x = apply_window(x, window)  # a new tensor when windowed; the volume's data is never written
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int; got {channels!r}.")
    return x[None, None].expand(1, channels, *shape)
