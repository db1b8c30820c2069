"""DICOM in (pydicom, lazily): a folder holding one series, or one file (single slice or multi-frame).

Slices are sorted by their position along the slice normal (ImagePositionPatient projected on the cross
product of the ImageOrientationPatient axes); RescaleSlope/RescaleIntercept are applied (CT: Hounsfield
units). The affine is built in DICOM's LPS patient space and turned to RAS+ (x and y negated), the
convention of NIfTI, so a heatmap written as NIfTI overlays the series in a viewer.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .volume import MAX_VOXELS, Volume, VolumeError, check_voxels, finite

LPS_TO_RAS = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
GAP_TOLERANCE = 1.5  # a step between neighbouring slices over 1.5x the median step is a missing slice


def _pydicom(path: str):
    try:
        import pydicom
    except ImportError:
        raise VolumeError(path, "reading DICOM needs pydicom: pip install 'gradcam[medical]'.") from None
    return pydicom


def _floats(ds, name: str, n: int, default=None) -> Optional[List[float]]:
    v = getattr(ds, name, None)
    if v is None:
        return default
    try:
        vals = [float(x) for x in (v if n > 1 else [v])]
    except (TypeError, ValueError):
        return default
    return vals if len(vals) == n else default


def _geometry(ds) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[float, float]]:
    """(row direction, column direction, position of the first pixel, (row spacing, column spacing))."""
    iop = _floats(ds, "ImageOrientationPatient", 6) or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ipp = _floats(ds, "ImagePositionPatient", 3) or [0.0, 0.0, 0.0]
    ps = _floats(ds, "PixelSpacing", 2) or [1.0, 1.0]
    return np.array(iop[:3]), np.array(iop[3:]), np.array(ipp), (ps[0] or 1.0, ps[1] or 1.0)


def _affine(ds, origin: np.ndarray, step: np.ndarray) -> torch.Tensor:
    """RAS+ affine: voxel (x = column, y = row, z = slice) -> mm."""
    rowdir, coldir, _, (dr, dc) = _geometry(ds)
    a = np.eye(4)
    a[:3, 0] = rowdir * dc  # moving along a row (x, column index) steps by the column spacing
    a[:3, 1] = coldir * dr
    a[:3, 2] = step
    a[:3, 3] = origin
    return LPS_TO_RAS @ torch.as_tensor(a)


def _rescale(ds) -> Tuple[float, float]:
    slope, inter = getattr(ds, "RescaleSlope", None), getattr(ds, "RescaleIntercept", None)
    if slope is None and "SharedFunctionalGroupsSequence" in ds:
        seq = getattr(ds.SharedFunctionalGroupsSequence[0], "PixelValueTransformationSequence", None)
        if seq:
            slope, inter = getattr(seq[0], "RescaleSlope", None), getattr(seq[0], "RescaleIntercept", None)
    if slope is None and getattr(ds, "DoseGridScaling", None) is not None:  # RT dose: pixel x scaling = Gy
        slope = ds.DoseGridScaling
    return float(slope if slope is not None else 1.0), float(inter if inter is not None else 0.0)


def _pixels(path: str, ds) -> np.ndarray:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        kind = getattr(ds, "Modality", None) or getattr(ds, "SOPClassUID", "unknown")
        raise VolumeError(
            path,
            f"the DICOM holds no pixel data (a non-image object, {kind}); point at the image series instead.",
        )
    try:
        arr = ds.pixel_array
    except Exception as e:  # noqa: BLE001 - truncated data, missing decoders
        raise VolumeError(path, f"the pixel data cannot be decoded ({type(e).__name__}: {e}).") from None
    if (
        arr.ndim == 3
        and getattr(ds, "SamplesPerPixel", 1) > 1
        and int(getattr(ds, "NumberOfFrames", 1) or 1) == 1
    ):
        raise VolumeError(path, "a colour DICOM image is not a CT/MR volume; give a greyscale series.")
    return arr


def _read(pydicom, path: str, stop: bool):
    try:
        return pydicom.dcmread(path, stop_before_pixels=stop)
    except Exception as e:  # noqa: BLE001
        raise VolumeError(path, f"not a readable DICOM file ({type(e).__name__}: {e}).") from None


def read_dicom_file(path: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """One DICOM file: a single slice (D = 1) or a multi-frame image (D = frames), rescale applied."""
    pydicom = _pydicom(path)
    ds = _read(pydicom, path, stop=False)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    check_voxels(
        path, (frames, int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)), max_voxels
    )
    arr = _pixels(path, ds).astype(np.float32).reshape(frames, ds.Rows, ds.Columns)
    slope, inter = _rescale(ds)
    rowdir, coldir, origin, _ = _geometry(ds)
    normal = np.cross(rowdir, coldir)
    thick = _floats(ds, "SpacingBetweenSlices", 1) or _floats(ds, "SliceThickness", 1) or [1.0]
    step = normal * (thick[0] or 1.0)
    offsets = _floats(ds, "GridFrameOffsetVector", frames) if frames > 1 else None
    if offsets is not None and offsets[1] != offsets[0]:  # RT dose grids: frame offsets along the normal
        step = normal * (offsets[1] - offsets[0])
    per = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if per is not None and frames > 1:
        try:
            pos = [np.array([float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]) for f in per]
            origin, step = pos[0], (pos[-1] - pos[0]) / (frames - 1)
        except (AttributeError, IndexError, TypeError, ValueError):
            pass
    info = {"modality": getattr(ds, "Modality", None), "frames": frames, "rescale": [slope, inter]}
    data = finite(path, torch.from_numpy(arr).mul_(slope).add_(inter), info)
    return Volume(
        data=data,
        affine=_affine(ds, origin, step),
        source=str(path),
        kind="dicom",
        shape_on_disk=tuple(arr.shape),
        info=info,
    )


def _series(path: str, pydicom) -> Tuple[List[Tuple[str, object]], Dict]:
    """The headers of the folder's DICOM files (one series), or a VolumeError naming what is wrong."""
    names = sorted(
        n for n in os.listdir(path) if not n.startswith(".") and os.path.isfile(os.path.join(path, n))
    )
    heads, skipped = [], []
    for n in names:
        f = os.path.join(path, n)
        try:
            heads.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except Exception:  # noqa: BLE001 - non-DICOM files beside the series are skipped and counted
            skipped.append(n)
    if not heads:
        raise VolumeError(path, "the folder holds no readable DICOM file.")
    groups: Dict[str, list] = {}
    for f, ds in heads:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))
    if len(groups) > 1:
        desc = "; ".join(f"{uid or '(no UID)'}: {len(v)} files" for uid, v in groups.items())
        raise VolumeError(
            path,
            f"the folder mixes {len(groups)} DICOM series ({desc}); put each series in a folder of its own.",
        )
    return heads, {"skipped_files": skipped} if skipped else {}


def _order(path: str, heads: list) -> Tuple[list, np.ndarray, np.ndarray]:
    """Heads sorted along the slice normal, the first position and the step between slices."""
    rowdir, coldir, _, _ = _geometry(heads[0][1])
    normal = np.cross(rowdir, coldir)
    pos = [(_geometry(ds)[2], f, ds) for f, ds in heads]
    pos.sort(key=lambda t: float(t[0] @ normal))
    d = np.array([float(p[0] @ normal) for p in pos])
    if len(pos) == 1:
        thick = _floats(heads[0][1], "SliceThickness", 1) or [1.0]
        return [(f, ds) for _, f, ds in pos], pos[0][0], normal * (thick[0] or 1.0)
    steps = np.diff(d)
    if (steps < 1e-4).any():
        i = int(np.argmax(steps < 1e-4))
        raise VolumeError(
            path,
            f"two slices share one position ({os.path.basename(pos[i][1])}, "
            f"{os.path.basename(pos[i + 1][1])}): duplicate files or several acquisitions.",
        )
    med = float(np.median(steps))
    if steps.max() > GAP_TOLERANCE * med:
        i = int(np.argmax(steps))
        raise VolumeError(
            path,
            f"a slice is missing: the gap between {d[i]:.2f} mm and {d[i + 1]:.2f} mm is "
            f"{steps[i]:.2f} mm, the usual step {med:.2f} mm; copy the whole series.",
        )
    return [(f, ds) for _, f, ds in pos], pos[0][0], (pos[-1][0] - pos[0][0]) / (len(pos) - 1)


def read_dicom_series(path: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """A folder holding the slices of ONE series: sorted by position, rescaled, stacked into (D, H, W)."""
    pydicom = _pydicom(path)
    heads, info = _series(path, pydicom)
    heads, origin, step = _order(path, heads)
    first = heads[0][1]
    rows, cols = int(getattr(first, "Rows", 0) or 0), int(getattr(first, "Columns", 0) or 0)
    check_voxels(path, (len(heads), rows, cols), max_voxels)
    data = torch.empty(len(heads), rows, cols, dtype=torch.float32)
    for i, (f, _) in enumerate(heads):
        ds = _read(pydicom, f, stop=False)
        arr = _pixels(f, ds)
        if arr.shape != (rows, cols):
            raise VolumeError(
                path, f"{os.path.basename(f)} is {arr.shape}, the series' first slice {(rows, cols)}."
            )
        slope, inter = _rescale(ds)
        data[i] = torch.from_numpy(arr.astype(np.float32)).mul_(slope).add_(inter)
    info.update(
        modality=getattr(first, "Modality", None),
        series=str(getattr(first, "SeriesInstanceUID", "")),
        slices=len(heads),
    )
    data = finite(path, data, info)
    return Volume(
        data=data,
        affine=_affine(first, origin, step),
        source=str(path),
        kind="dicom",
        shape_on_disk=(len(heads), rows, cols),
        info=info,
    )
