"""Deprecated: renamed to :mod:`gradcam.methods.input_gradient` (import from there, or from ``gradcam``)."""

from __future__ import annotations

import warnings

from .input_gradient import Gradient, call_context  # noqa: F401

warnings.warn(
    "gradcam.methods.gradient is deprecated; import from gradcam.methods.input_gradient (same names).",
    DeprecationWarning,
    stacklevel=2,
)
