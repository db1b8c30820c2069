"""The :class:`Volume` every reader returns, the :class:`VolumeError` every bad file ends in, and file kinds.

Conventions: ``data`` is (D, H, W) float32 with D the slice axis (NIfTI k, DICOM slice order), H the rows
(NIfTI j) and W the columns (NIfTI i). A voxel index is written (x, y, z) = (column, row, slice), as the
project writes 2-D points (x, y), and ``affine`` (4 x 4, RAS+ millimetres as NIfTI and 3D Slicer use) maps
(x, y, z, 1) to world coordinates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import torch

# A volume larger than this many voxels is refused before its data is read (1 GiB as float32); a CT of
# 512 x 512 x 400 is 105M voxels.
MAX_VOXELS = 2**28

NIFTI_SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NUMPY_SUFFIXES = (".npy",)


class VolumeError(ValueError):
    """A volume file that cannot be read as one 3-D volume: ``str(e)`` names the file, the problem and the fix."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass
class Volume:
    """One 3-D volume in memory.

    - ``data`` (D, H, W) float32 (rescale slope/intercept applied: Hounsfield units for CT);
    - ``affine`` (4, 4) float64: voxel (x, y, z, 1) -> world (mm, RAS+);
    - ``spacing`` (sz, sy, sx) in mm along (D, H, W) (the column norms of ``affine``);
    - ``source``: the file or folder read; ``kind``: ``"nifti"``, ``"dicom"`` or ``"numpy"``;
    - ``shape_on_disk``: the array shape as stored (NIfTI (I, J, K); DICOM (slices, rows, columns));
    - ``info``: what the reader noted (series UID, modality, NaN voxels replaced...).
    """

    data: torch.Tensor
    affine: torch.Tensor
    source: str = ""
    kind: str = "numpy"
    shape_on_disk: Tuple[int, ...] = ()
    info: Dict = field(default_factory=dict)

    @property
    def shape(self) -> Tuple[int, int, int]:
        """(D, H, W)."""
        return tuple(self.data.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> Tuple[float, float, float]:
        """Voxel size in mm along (D, H, W): the norms of the affine's z, y and x columns."""
        n = self.affine[:3, :3].norm(dim=0).tolist()
        return (n[2], n[1], n[0])

    @property
    def stem(self) -> str:
        """The file name without its volume suffix (``scan.nii.gz`` -> ``scan``; a DICOM folder: its name)."""
        name = os.path.basename(os.path.normpath(self.source)) or "volume"
        low = name.lower()
        for suf in (".nii.gz",) + NIFTI_SUFFIXES + DICOM_SUFFIXES + NUMPY_SUFFIXES:
            if low.endswith(suf):
                return name[: -len(suf)] or "volume"
        return name

    def world(self, xyz) -> list:
        """World coordinates (mm, RAS+) of voxel ``(x, y, z)``: ``affine @ (x, y, z, 1)``."""
        v = torch.tensor([float(xyz[0]), float(xyz[1]), float(xyz[2]), 1.0], dtype=torch.float64)
        return [round(float(c), 3) for c in (self.affine.double() @ v)[:3]]


def spacing_affine(spacing: Sequence[float]) -> torch.Tensor:
    """The affine of a volume with voxel size ``spacing`` = (sz, sy, sx) mm and its first voxel at the origin."""
    a = torch.eye(4, dtype=torch.float64)
    a[0, 0], a[1, 1], a[2, 2] = float(spacing[2]), float(spacing[1]), float(spacing[0])
    return a


def volume_kind(path: str) -> Optional[str]:
    """``"nifti"``, ``"dicom"`` (a ``.dcm`` file or a folder holding ``.dcm`` files) or ``"numpy"``; else ``None``."""
    p = str(path)
    low = p.lower()
    if low.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if low.endswith(NUMPY_SUFFIXES):
        return "numpy"
    if low.endswith(DICOM_SUFFIXES):
        return "dicom"
    if os.path.isdir(p):
        try:
            names = os.listdir(p)
        except OSError:
            return None
        if any(n.lower().endswith(DICOM_SUFFIXES) for n in names):
            return "dicom"
    return None


def check_voxels(path: str, shape: Tuple[int, ...], max_voxels: int = MAX_VOXELS) -> None:
    """A :class:`VolumeError` before reading when ``shape`` is empty or has more than ``max_voxels`` voxels."""
    n = 1
    for s in shape:
        n *= int(s)
    if any(int(s) < 1 for s in shape):
        raise VolumeError(path, f"the header gives an empty shape {tuple(shape)}; the file holds no voxels.")
    if n > max_voxels:
        raise VolumeError(
            path,
            f"the header gives shape {tuple(int(s) for s in shape)} = {n:,} voxels, more than the limit of "
            f"{max_voxels:,} (max_voxels); a damaged header, or crop/downsample the volume first.",
        )


def finite(path: str, data: torch.Tensor, info: Dict, chunk: int = 16) -> torch.Tensor:
    """``data`` (D, H, W) with NaN/inf voxels replaced, in place, by the finite minimum (their count noted in
    ``info['nonfinite_voxels']``); checked ``chunk`` slices at a time, so the check needs no full-size temporary.

    An all-NaN volume is a :class:`VolumeError`.
    """
    nbad, lo = 0, float("inf")
    for z in range(0, data.shape[0], chunk):
        part = data[z : z + chunk]
        ok = torch.isfinite(part)
        nbad += int(ok.numel() - ok.sum())
        if ok.any():
            lo = min(lo, float(part[ok].min()) if not ok.all() else float(part.min()))
    if nbad:
        if nbad == data.numel():
            raise VolumeError(path, "every voxel is NaN or infinite; the file holds no image.")
        for z in range(0, data.shape[0], chunk):
            part = data[z : z + chunk]
            part.masked_fill_(~torch.isfinite(part), lo)
        info["nonfinite_voxels"] = nbad
    return data
