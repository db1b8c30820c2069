"""gradcam: where a PyTorch model looks when it decides. Grad-CAM and its family, exact and fast."""
from .explanation import Explanation
from .layers import tokens_to_grid
from .methods.cam import CAM
from .methods.gradcam import GradCAM

__all__ = ["CAM", "Explanation", "GradCAM", "tokens_to_grid"]
__version__ = "0.1.0"
