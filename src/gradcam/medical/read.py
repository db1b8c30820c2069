"""One entry point for every volume format: :func:`read_volume`."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from .volume import MAX_VOXELS, Volume, VolumeError, volume_kind


def read_volume(
    path: str, spacing: Optional[Tuple[float, float, float]] = None, max_voxels: int = MAX_VOXELS
) -> Volume:
    """Read a NIfTI file, a DICOM file or series folder, or a ``.npy`` array as a :class:`Volume`.

    ``spacing`` (sz, sy, sx) mm: the voxel size of a ``.npy`` array (which carries no geometry; default
    1 mm). Every problem (missing file, unknown kind, damaged file, mixed series, missing slice, no pixel
    data, more than ``max_voxels`` voxels...) is a :class:`VolumeError` whose message names it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise VolumeError(path, "no such file or folder.")
    kind = volume_kind(path)
    if kind == "nifti":
        from .nifti import read_nifti

        return read_nifti(path, max_voxels)
    if kind == "numpy":
        from .nifti import read_npy

        return read_npy(path, spacing, max_voxels)
    if kind == "dicom":
        from .dicom import read_dicom_file, read_dicom_series

        return (
            read_dicom_series(path, max_voxels) if os.path.isdir(path) else read_dicom_file(path, max_voxels)
        )
    raise VolumeError(
        path, "not a volume: give a .nii/.nii.gz file, a .dcm file, a folder of .dcm slices or a .npy array."
    )
