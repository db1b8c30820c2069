"""Renamed :mod:`gradcam.metrics.relevance` (modules are named by subject)."""

import sys
import warnings

from . import relevance as _relevance

warnings.warn(
    "gradcam.metrics.localisation_more is renamed gradcam.metrics.relevance; the old path will be removed.",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _relevance
