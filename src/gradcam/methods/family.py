"""The CAM family's registry names: ``--method NAME`` in the CLI and ``gradcam evaluate``."""
from __future__ import annotations

from .eigen import EigenCAM, EigenGradCAM
from .gradients import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .perturbation import RISE, AblationCAM, ScoreCAM
from .random_cam import RandomCAM
from .registry import register

FAMILY = {
    "gradcam++": GradCAMPlusPlus, "xgradcam": XGradCAM, "hirescam": HiResCAM, "layercam": LayerCAM,
    "eigencam": EigenCAM, "eigengradcam": EigenGradCAM, "scorecam": ScoreCAM, "ablationcam": AblationCAM,
    "rise": RISE, "random": RandomCAM,
}
for _name, _cls in FAMILY.items():
    register(_name, _cls)
