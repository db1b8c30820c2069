"""Deprecated: renamed to :mod:`gradcam.methods.gradient_weighted` (import from there, or from ``gradcam``)."""

from __future__ import annotations

import warnings

from .gradient_weighted import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM  # noqa: F401

warnings.warn(
    "gradcam.methods.gradients is deprecated; import from gradcam.methods.gradient_weighted (same names).",
    DeprecationWarning,
    stacklevel=2,
)
