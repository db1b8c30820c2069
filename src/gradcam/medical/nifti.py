"""NIfTI (``.nii``, ``.nii.gz``) and NumPy (``.npy``) volumes in; the heatmap out as NIfTI (nibabel, lazily)."""

from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np
import torch

from .volume import MAX_VOXELS, Volume, VolumeError, check_voxels, finite, spacing_affine


def _nibabel(path: str):
    try:
        import nibabel
    except ImportError:
        raise VolumeError(path, "reading NIfTI needs nibabel: pip install 'gradcam[medical]'.") from None
    return nibabel


def _spatial_shape(path: str, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The 3-D shape of an on-disk NIfTI shape: trailing size-1 axes dropped, a 2-D image given one slice."""
    s = tuple(int(v) for v in shape)
    while len(s) > 3 and s[-1] == 1:
        s = s[:-1]
    if len(s) > 3:
        raise VolumeError(
            path,
            f"a {len(s)}-D NIfTI of shape {s} (e.g. a time series of {s[3]} volumes) is not "
            "one 3-D volume; extract one volume first (nibabel: img.slicer[..., t]).",
        )
    while len(s) < 3:
        s = s + (1,)
    return s


CHUNK = 16  # slices converted to float32 at a time


def _float_dhw(img, shape: Tuple[int, ...]) -> torch.Tensor:
    """The voxels as a contiguous (K, J, I) float32 tensor, scl_slope/scl_inter applied, converted a few slices
    at a time: the peak is the stored array plus the float32 result (not two float32 copies)."""
    proxy = img.dataobj
    raw = np.asarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy).reshape(shape)
    slope, inter = float(getattr(proxy, "slope", 1.0)), float(getattr(proxy, "inter", 0.0))
    slope = 1.0 if not np.isfinite(slope) or slope == 0 else slope
    inter = 0.0 if not np.isfinite(inter) else inter
    ni, nj, nk = shape
    out = torch.empty(nk, nj, ni, dtype=torch.float32)
    for k0 in range(0, nk, CHUNK):
        chunk = torch.from_numpy(np.array(raw[:, :, k0 : k0 + CHUNK], dtype=np.float32)).permute(2, 1, 0)
        if slope != 1.0 or inter != 0.0:
            chunk = chunk.mul_(slope).add_(inter)
        out[k0 : k0 + CHUNK] = chunk
    return out


def read_nifti(path: str, max_voxels: int = MAX_VOXELS) -> Volume:
    """Read a ``.nii``/``.nii.gz`` file: data (D, H, W) = the array (I, J, K) transposed, scl_slope/inter applied.

    The affine is nibabel's best one (sform, else qform); it maps (x, y, z) = (i, j, k) to mm. A 4-D file
    with more than one volume, a shape over ``max_voxels``, a wrong magic or a truncated/damaged file is a
    :class:`VolumeError` naming the problem.
    """
    nib = _nibabel(path)
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise VolumeError(path, "no such file.") from None
    except Exception as e:  # noqa: BLE001 - every unreadable header ends as one clear failure
        raise VolumeError(
            path,
            f"not a readable NIfTI file ({type(e).__name__}: {e}); check the file is a "
            "complete .nii or .nii.gz.",
        ) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise VolumeError(path, f"nibabel reads it as {type(img).__name__}, not NIfTI.")
    shape = _spatial_shape(path, img.shape)
    check_voxels(path, shape, max_voxels)
    try:
        data = _float_dhw(img, shape)
    except Exception as e:  # noqa: BLE001 - truncated gzip (EOFError), short file (ValueError), zlib errors
        raise VolumeError(
            path,
            f"the voxel data cannot be read ({type(e).__name__}: {e}); the file is truncated "
            "or damaged: copy it again.",
        ) from None
    info: dict = {}
    data = finite(path, data, info)
    affine = torch.as_tensor(np.asarray(img.affine, dtype=np.float64))
    if not torch.isfinite(affine).all() or torch.linalg.det(affine[:3, :3]).abs() < 1e-12:
        info["affine"] = "the header's affine is singular or not finite; the voxel sizes (pixdim) were used"
        affine = spacing_affine(tuple(float(abs(z)) or 1.0 for z in img.header.get_zooms()[:3][::-1]))
    return Volume(
        data=data, affine=affine, source=str(path), kind="nifti", shape_on_disk=tuple(img.shape), info=info
    )


def read_npy(
    path: str, spacing: Optional[Tuple[float, float, float]] = None, max_voxels: int = MAX_VOXELS
) -> Volume:
    """Read a NumPy ``.npy`` array (D, H, W) (or (H, W), or with leading size-1 axes); voxel size ``spacing``
    (sz, sy, sx) mm, default 1 mm (a ``.npy`` file carries no geometry)."""
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise VolumeError(path, "no such file.") from None
    except Exception as e:  # noqa: BLE001
        raise VolumeError(path, f"not a readable .npy array ({type(e).__name__}: {e}).") from None
    shape = tuple(arr.shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3:
        raise VolumeError(path, f"a .npy volume is (D, H, W); this array has shape {tuple(arr.shape)}.")
    if arr.dtype.kind not in "biuf":
        raise VolumeError(path, f"a .npy volume holds numbers; this array has dtype {arr.dtype}.")
    check_voxels(path, shape, max_voxels)
    info: dict = {}
    data = finite(path, torch.from_numpy(np.array(arr, dtype=np.float32).reshape(shape)), info)
    return Volume(
        data=data,
        affine=spacing_affine(spacing or (1.0, 1.0, 1.0)),
        source=str(path),
        kind="numpy",
        shape_on_disk=tuple(arr.shape),
        info=info,
    )


def write_nifti(path: str, values: torch.Tensor, volume: Volume) -> str:
    """Write (D, H, W) ``values`` (e.g. a heatmap at the volume's size) as NIfTI with ``volume``'s affine.

    The array on disk is (I, J, K) = (W, H, D), so its shape and affine equal the input file's (a NIfTI
    input's own shape and affine; a DICOM series' columns, rows, slices and its RAS affine): the map
    overlays the scan in a viewer with no registration. Stored as float32; ``.nii.gz`` is compressed.
    """
    nib = _nibabel(path)
    if tuple(values.shape) != tuple(volume.shape):
        raise ValueError(f"values must be (D, H, W) = {volume.shape}; got {tuple(values.shape)}.")
    arr = values.detach().float().cpu().permute(2, 1, 0).numpy()
    if volume.kind == "nifti" and len(volume.shape_on_disk) != 3:
        arr = arr.reshape(volume.shape_on_disk)
    img = nib.Nifti1Image(arr, volume.affine.double().numpy())
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"gradcam heatmap in [0, 1]"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    suffix = ".nii.gz" if path.endswith(".gz") else ".nii"
    tmp = f"{path[: -len(suffix)]}.{os.getpid()}.tmp{suffix}"  # written whole, then renamed (no half files)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
