"""The evaluation baselines ``random-map`` and ``gaussian``: defined in :mod:`gradcam.methods.baselines` and
registered with every other method in :mod:`gradcam.methods.registry`; re-exported here."""

from __future__ import annotations

from ..methods.baselines import CentredGaussian, RandomMap

__all__ = ["CentredGaussian", "RandomMap"]
