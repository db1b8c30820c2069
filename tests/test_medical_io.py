"""gradcam.medical: NIfTI / DICOM / .npy volumes in, NIfTI heatmaps, montages and JSON records out.

The ten odd files of the medical guide each end as a VolumeError with a reason or as a correct map.
"""

import gzip
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

import gradcam  # noqa: E402
from gradcam.medical import (  # noqa: E402
    Volume,
    VolumeError,
    apply_window,
    box3d,
    explain_volume,
    model_input,
    peak3d,
    read_volume,
    target_shape,
)
from gradcam.medical.volume import spacing_affine  # noqa: E402

CT = pydicom.data.get_testdata_file("CT_small.dcm")
ANAT = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "anatomical.nii")
EX4D = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "example4d.nii.gz")


class Tiny3D(nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(6, classes)

    def forward(self, x):
        f = self.features(x)
        return self.head((f * f).mean(dim=(2, 3, 4)))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Tiny3D().eval()


def _nifti(path, arr, affine=None, dtype=None, slope=None):
    img = nib.Nifti1Image(
        arr.astype(dtype or arr.dtype), np.diag([1.5, 2.0, 2.5, 1.0]) if affine is None else affine
    )
    if slope is not None:
        img.header.set_slope_inter(*slope)
    nib.save(img, str(path))
    return str(path)


def _series(folder, n=5, uid2=None, drop=None, slope=None):
    """n slices copied from pydicom's CT file at z = -75.7 + 5 i mm (one series; ``uid2``: odd slices a second)."""
    os.makedirs(folder, exist_ok=True)
    uid = pydicom.uid.generate_uid()
    for i in range(n):
        if i == drop:
            continue
        ds = pydicom.dcmread(CT)
        ds.ImagePositionPatient = [-158.135803, -179.035797, -75.7 + 5 * i]
        ds.SeriesInstanceUID = uid2 if (uid2 and i % 2) else uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = i + 1
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slope
        ds.save_as(os.path.join(folder, f"s{(7 * i) % n:03d}.dcm"))  # file names out of order on purpose
    return str(folder)


def test_nifti_round_trip_shape_affine_and_world_peak(model, tmp_path):
    res = explain_volume(ANAT, model, out=str(tmp_path), size=(16, 24, 24))
    src, out = nib.load(ANAT), nib.load(res.files["nifti"][0])
    assert out.shape == src.shape and np.array_equal(out.affine, src.affine)
    full = res.map(0)
    assert torch.equal(torch.from_numpy(np.asarray(out.dataobj)).permute(2, 1, 0), full)
    x, y, z = res.peaks[0]
    assert full[z, y, x] == full.max() > 0.9
    assert res.peaks_mm[0] == [round(float(c), 3) for c in src.affine @ np.array([x, y, z, 1.0])][:3]
    rec = json.load(open(tmp_path / "anatomical.json"))
    assert rec["explanations"][0]["peak"] == [x, y, z] and len(rec["explanations"][0]["box"]) == 6
    assert os.path.getsize(res.files["montage"][0]) > 1000


def test_maps_are_the_engines_on_the_model_grid(model):
    vol = read_volume(ANAT)
    res = explain_volume(vol, model, window="brain", size=(12, 20, 16), top_k=2)
    x = model_input(vol, "brain", size=(12, 20, 16))
    ref = gradcam.GradCAM(model)(x, top_k=2)
    assert torch.equal(res.input_maps, ref.maps[0]) and res.class_ids == ref.targets[0].tolist()


def test_dicom_series_sorted_rescaled_with_ras_affine(tmp_path):
    vol = read_volume(_series(tmp_path / "ser", n=4, slope=(2.0, -1000.0)))
    raw = pydicom.dcmread(CT).pixel_array.astype(np.float32)
    assert vol.shape == (4, 128, 128) and torch.equal(vol.data[2], torch.from_numpy(raw * 2 - 1000))
    for z in range(4):  # voxel (0, 0, z) is the slice's ImagePositionPatient, LPS -> RAS (x, y negated)
        w = vol.affine @ torch.tensor([0.0, 0.0, z, 1.0], dtype=torch.float64)
        assert torch.allclose(
            w[:3], torch.tensor([158.135803, 179.035797, -75.7 + 5 * z], dtype=torch.float64)
        )
    assert vol.spacing == pytest.approx((5.0, 0.661468, 0.661468))


def test_single_dicom_file_and_npy(model, tmp_path):
    res = explain_volume(CT, model, out=str(tmp_path), window="abdomen")
    out = nib.load(res.files["nifti"][0])
    assert out.shape == (128, 128, 1)
    assert np.allclose(out.affine[:3, 3], [158.135803, 179.035797, -75.7])
    np.save(tmp_path / "v.npy", np.random.default_rng(0).normal(size=(6, 10, 8)).astype(np.float32))
    v = read_volume(str(tmp_path / "v.npy"), spacing=(3.0, 1.0, 2.0))
    assert v.shape == (6, 10, 8) and v.spacing == (3.0, 1.0, 2.0)


def test_multiframe_dicom_rt_dose():
    path = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "rtdose.dcm")
    v = read_volume(path)  # 15 frames of 10 x 10, GridFrameOffsetVector 0, 5, 10... mm, DoseGridScaling 1e-6
    assert v.shape == (15, 10, 10) and v.spacing == pytest.approx((5.0, 10.0, 10.0))
    assert float(v.data.max()) == pytest.approx(1.254) and v.world((0, 0, 2))[2] == pytest.approx(
        -761.87 + 10
    )


def test_window_resample_and_channels():
    d = torch.tensor([-1000.0, 0.0, 40.0, 80.0, 3000.0])
    assert apply_window(d, "brain").tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]  # (x - (40 - 40)) / 80, clamped
    assert torch.allclose(apply_window(d, "0,2000"), torch.tensor([0.0, 0.5, 0.52, 0.54, 1.0]))
    with pytest.raises(ValueError, match="preset"):
        apply_window(d, "liverish")
    v = Volume(torch.zeros(40, 64, 64), spacing_affine((2.5, 0.7, 0.7)))
    assert target_shape(v, spacing=(5.0, 1.4, 1.4)) == (20, 32, 32)
    assert model_input(v, size=(8, 16, 16), channels=3).shape == (1, 3, 8, 16, 16)


def test_box3d_largest_segment_exclusive_ends():
    m = torch.zeros(10, 12, 14)
    m[2:5, 3:9, 4:6] = 1.0  # 36 voxels
    m[7, 1, 1] = 0.9  # a lone voxel: smaller
    assert box3d(m, 0.5) == [4, 3, 2, 6, 9, 5]
    assert peak3d(m) == (4, 3, 2)
    assert box3d(torch.zeros(3, 3, 3), 0.5) is None
    big = torch.zeros(100, 20, 20)
    big[10:30, 5:15, 2:7] = 1.0  # segmented at <= 64 per side, edges scaled back outward
    x0, y0, z0, x1, y1, z1 = box3d(big, 0.5)
    got, true = (x0, y0, z0, x1, y1, z1), (2, 5, 10, 7, 15, 30)  # exact to 100 / 64 voxels (the coarse grid)
    assert all(0 <= t - g <= 2 for g, t in zip(got[:3], true[:3])) and all(
        0 <= g - t <= 2 for g, t in zip(got[3:], true[3:])
    )


def test_ten_odd_files_fail_with_a_reason_or_give_a_correct_map(model, tmp_path):
    good = _nifti(
        tmp_path / "good.nii.gz", np.random.default_rng(1).normal(size=(12, 10, 8)).astype(np.float32)
    )
    blob = open(good, "rb").read()
    with open(tmp_path / "truncated.nii.gz", "wb") as f:
        f.write(blob[: len(blob) // 2])
    raw = bytearray(gzip.decompress(blob))
    raw[344:348] = b"xyz\0"
    with open(tmp_path / "wrong_magic.nii", "wb") as f:
        f.write(bytes(raw))
    nan = np.random.default_rng(2).normal(size=(12, 10, 8)).astype(np.float32)
    nan[3, 4, 5] = np.nan
    _nifti(tmp_path / "nan.nii.gz", nan)
    _nifti(
        tmp_path / "int16_slope.nii.gz",
        np.arange(960).reshape(12, 10, 8),
        dtype=np.int16,
        slope=(0.5, -100.0),
    )
    np.save(tmp_path / "one_voxel.npy", np.ones((1, 1, 1), np.float32))
    huge = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    huge.header.set_data_shape((30000, 30000, 30000))
    with open(tmp_path / "huge_header.nii", "wb") as f:
        f.write(huge.header.binaryblock + b"\0" * 4 + b"\0" * 32)
    _series(tmp_path / "missing_slice", n=5, drop=2)
    _series(tmp_path / "two_series", n=4, uid2=pydicom.uid.generate_uid())
    os.makedirs(tmp_path / "no_pixels")
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    ds.save_as(tmp_path / "no_pixels" / "sr.dcm")
    expected = {
        "truncated.nii.gz": "truncated or damaged",
        "wrong_magic.nii": "not a readable NIfTI",
        "missing_slice": "a slice is missing: the gap between -70.70 mm and -60.70 mm is 10.00 mm",
        "two_series": "mixes 2 DICOM series",
        "no_pixels": "holds no pixel data",
        "example4d.nii.gz": "4-D NIfTI of shape (128, 96, 24, 2)",
        "huge_header.nii": "more than the limit",
    }
    out = tmp_path / "out"
    for name, why in expected.items():
        path = EX4D if name == "example4d.nii.gz" else str(tmp_path / name)
        with pytest.raises(VolumeError, match=why.replace("(", r"\(").replace(")", r"\)")):
            explain_volume(path, model, out=str(out))
    res = explain_volume(str(tmp_path / "nan.nii.gz"), model, out=str(out))
    assert res.volume.info["nonfinite_voxels"] == 1 and torch.isfinite(res.map(0)).all()
    assert res.volume.data[5, 4, 3] == res.volume.data.min()  # NaN -> the finite minimum
    v = read_volume(str(tmp_path / "int16_slope.nii.gz"))
    assert v.data[0, 0, 1] == 8 * 10 * 1 * 0.5 - 100 and v.data.dtype == torch.float32  # (i=1, j=0, k=0)
    with pytest.raises(VolumeError, match=r"cannot explain this 1x1x1 volume .* size=\(D, H, W\)"):
        explain_volume(str(tmp_path / "one_voxel.npy"), model, out=str(out))
    one = explain_volume(str(tmp_path / "one_voxel.npy"), model, out=str(out), size=(4, 4, 4))
    assert (
        one.map(0).shape == (1, 1, 1)
        and torch.isfinite(one.map(0)).all()
        and one.peaks in ([None], [[0, 0, 0]])
    )
    cls = one.classes[0].replace(" ", "_")
    assert sorted(os.listdir(out)) == sorted(
        f"{s}.{e}" for s in ("nan", "one_voxel") for e in ("json", f"{cls}.nii.gz", f"{cls}.montage.png")
    )
