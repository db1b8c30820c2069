"""Measures of explanation quality, tensor-native and batched (each module cites its protocol).

- :mod:`.localization`: ``box_from_map``, ``iou``, ILSVRC ``localization_error``;
- :mod:`.pointing`: ``pointing_game`` (Zhang et al.), ``energy_in_box``;
- :mod:`.faithfulness`: ``deletion`` / ``insertion`` AUC (Petsiuk et al.), ``average_drop_increase``
  (Chattopadhay et al.), ``rank_correlation`` with occlusion maps (Selvaraju et al.);
- :mod:`.sanity`: ``cascading_randomization`` (Adebayo et al.);
- :mod:`.discrimination`: ``class_discrimination`` on multi-object images.
"""
from .discrimination import class_discrimination
from .faithfulness import (
    auc,
    average_drop_increase,
    deletion,
    gaussian_blur,
    insertion,
    perturbation_curve,
    rank_correlation,
    rankdata,
    spearman,
)
from .localization import box_from_map, connected_components, iou, localization_correct, localization_error
from .pointing import boxes_to_masks, energy_in_box, pointing_game, pointing_hits
from .sanity import SanityResult, cascading_randomization

__all__ = [
    "SanityResult", "auc", "average_drop_increase", "box_from_map", "boxes_to_masks", "cascading_randomization",
    "class_discrimination", "connected_components", "deletion", "energy_in_box", "gaussian_blur", "insertion",
    "iou", "localization_correct", "localization_error", "perturbation_curve", "pointing_game", "pointing_hits",
    "rank_correlation", "rankdata", "spearman",
]
