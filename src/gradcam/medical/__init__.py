"""Medical volumes: NIfTI, DICOM and NumPy in; heatmaps out as NIfTI, montages and JSON records.

Needs the ``medical`` extra (``pip install 'gradcam[medical]'``: nibabel, pydicom, monai); the readers
import nibabel and pydicom only when they read a file of their kind, so ``import gradcam.medical`` works
without them.
"""

from .explain import VolumeResult, explain_volume
from .outputs import box3d, montage, peak3d
from .preprocess import WINDOWS, apply_window, model_input, parse_window, target_shape
from .read import read_volume
from .volume import MAX_VOXELS, Volume, VolumeError, volume_kind

__all__ = [
    "MAX_VOXELS",
    "Volume",
    "VolumeError",
    "VolumeResult",
    "WINDOWS",
    "apply_window",
    "box3d",
    "explain_volume",
    "model_input",
    "montage",
    "parse_window",
    "peak3d",
    "read_volume",
    "target_shape",
    "volume_kind",
]
