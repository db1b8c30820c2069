"""Moved to :mod:`gradcam.datasets.scenes` (data sits below evaluation, vl, neurons and studies)."""

import sys
import warnings

from ..datasets import scenes as _scenes

warnings.warn(
    "gradcam.evaluation.scenes moved to gradcam.datasets.scenes; the old path will be removed.",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _scenes
