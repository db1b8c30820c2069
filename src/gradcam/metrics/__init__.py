"""Measures of explanation quality, tensor-native and batched (each module cites its protocol).

- :mod:`.localization`: ``box_from_map``, ``iou``, ILSVRC ``localization_error``;
- :mod:`.pointing`: ``pointing_game`` (Zhang et al.; TorchRay's protocol ``pointing_game_torchray``), ``energy_in_box``;
- :mod:`.faithfulness`: ``deletion`` / ``insertion`` AUC (Petsiuk et al.), ``average_drop_increase``
  (Chattopadhay et al.), ``rank_correlation`` with occlusion maps (Selvaraju et al.);
- :mod:`.sanity`: ``cascading_randomization`` (Adebayo et al.);
- :mod:`.discrimination`: ``class_discrimination`` on multi-object images;
- :mod:`.feature_removal`: ``faithfulness_correlation`` (Bhatt et al.), ``road`` (Rong et al.),
  ``monotonicity`` (Arya et al.), ``irof`` (Rieger & Hansen);
- :mod:`.relevance`: ``focus`` (Arias-Duart et al.), ``relevance_mass_accuracy``,
  ``relevance_rank_accuracy`` (Arras et al.), ``energy_pointing`` (Wang et al.);
- :mod:`.complexity`: ``sparseness`` (Gini, Chalasani et al.), ``complexity`` (entropy, Bhatt et al.);
- :mod:`.robustness`: ``max_sensitivity`` / ``avg_sensitivity`` (Yeh et al.);
- :mod:`.randomisation`: ``random_logit`` (Sixt et al.), ``ssim``.
"""

from .complexity import complexity, sparseness
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
from .feature_removal import (
    faithfulness_correlation,
    grid_segments,
    irof,
    monotonicity,
    noisy_linear_imputation,
    road,
)
from .localization import box_from_map, connected_components, iou, localization_correct, localization_error
from .pointing import boxes_to_masks, energy_in_box, pointing_game, pointing_game_torchray, pointing_hits
from .randomisation import random_logit, ssim
from .relevance import (
    energy_pointing,
    focus,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    union_masks,
)
from .robustness import avg_sensitivity, max_sensitivity, sensitivities
from .sanity import SanityResult, cascading_randomization

__all__ = [
    "SanityResult",
    "auc",
    "average_drop_increase",
    "box_from_map",
    "boxes_to_masks",
    "cascading_randomization",
    "class_discrimination",
    "connected_components",
    "deletion",
    "energy_in_box",
    "gaussian_blur",
    "insertion",
    "iou",
    "localization_correct",
    "localization_error",
    "perturbation_curve",
    "pointing_game",
    "pointing_hits",
    "rank_correlation",
    "rankdata",
    "spearman",
    # faithfulness, localisation, complexity, robustness, randomisation
    "avg_sensitivity",
    "complexity",
    "energy_pointing",
    "faithfulness_correlation",
    "focus",
    "grid_segments",
    "irof",
    "max_sensitivity",
    "monotonicity",
    "noisy_linear_imputation",
    "pointing_game_torchray",
    "random_logit",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sensitivities",
    "sparseness",
    "ssim",
    "union_masks",
]
