"""The CAM family's registry names (``--method NAME`` in the CLI and ``gradcam evaluate``).

Every method is registered in :mod:`gradcam.methods.registry`; this module only keeps the ``FAMILY``
mapping of the CAM family's names to their classes.
"""

from __future__ import annotations

from .eigen import EigenCAM, EigenGradCAM
from .gradient_weighted import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .perturbation import RISE, AblationCAM, ScoreCAM
from .random_cam import RandomCAM

FAMILY = {
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "rise": RISE,
    "random": RandomCAM,
}
