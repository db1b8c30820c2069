"""gradcam: where a PyTorch model looks when it decides. Grad-CAM and its family, exact and fast."""

from . import metrics
from .api import explain
from .explanation import Explanation
from .image import overlay
from .io import demo_photo
from .layers import tokens_to_grid
from .methods.cam import CAM
from .methods.eigen import EigenCAM, EigenGradCAM
from .methods.gradcam import GradCAM
from .methods.gradient_weighted import GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from .methods.guided import GuidedBackprop, GuidedGradCAM
from .methods.input_gradient import Gradient
from .methods.occlusion import Occlusion
from .methods.perturbation import RISE, AblationCAM, ScoreCAM
from .methods.random_cam import RandomCAM
from .methods.shared import explain_many
from .models import load_model
from .pixels import PixelExplanation

__all__ = [
    "AblationCAM",
    "CAM",
    "EigenCAM",
    "EigenGradCAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "RISE",
    "RandomCAM",
    "ScoreCAM",
    "XGradCAM",
    "Gradient",
    "GuidedBackprop",
    "GuidedGradCAM",
    "Occlusion",
    "PixelExplanation",
    "demo_photo",
    "explain",
    "explain_many",
    "load_model",
    "metrics",
    "overlay",
    "tokens_to_grid",
]
__version__ = "0.1.0"
