"""Renamed :mod:`gradcam.metrics.feature_removal` (modules are named by subject)."""

import sys
import warnings

from . import feature_removal as _feature_removal

warnings.warn(
    "gradcam.metrics.faithfulness_more is renamed gradcam.metrics.feature_removal; the old path will be "
    "removed.",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _feature_removal
