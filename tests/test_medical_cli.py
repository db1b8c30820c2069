"""``gradcam explain`` on volumes: NIfTI, a DICOM series folder, pydicom's CT file; resume; failures."""

import json
import os

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

from medical_zoo import tiny3d  # noqa: E402

from gradcam.cli import main  # noqa: E402

CT = pydicom.data.get_testdata_file("CT_small.dcm")


def _scan(path, shape=(20, 16, 12)):
    arr = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    aff = np.array([[0.0, -0.8, 0.0, 10.0], [1.2, 0.0, 0.0, -20.0], [0.0, 0.0, 2.5, 5.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(arr, aff), str(path))
    return str(path), aff, shape


def test_nifti_dicom_folder_and_ct_file_then_resume(tmp_path, capsys):
    scan, aff, shape = _scan(tmp_path / "scan.nii.gz")
    torch.save(tiny3d().state_dict(), tmp_path / "w.pt")
    series = tmp_path / "series"
    series.mkdir()
    for i in range(3):
        ds = pydicom.dcmread(CT)
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * i]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(series / f"{i}.dcm")
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(open(scan, "rb").read()[:200])
    out = tmp_path / "out"
    args = [
        "explain",
        scan,
        str(series),
        CT,
        str(bad),
        "--model",
        "medical_zoo:tiny3d",
        "--weights",
        str(tmp_path / "w.pt"),
        "--out",
        str(out),
        "--json",
        "--window",
        "0,4",
    ]
    assert main(args) == 1  # one failure, the rest explained
    err = capsys.readouterr().err
    assert "explained 3 volumes, 1 failed" in err and "broken.nii.gz" in err
    rec = json.load(open(out / "scan.json"))
    e = rec["explanations"][0]
    nii = nib.load(e["nifti"])
    assert nii.shape == shape and np.array_equal(nii.affine, nib.load(scan).affine)  # sform: float32 on disk
    assert os.path.basename(e["nifti"]) == f"scan.{e['class'].replace(' ', '_')}.nii.gz"
    x, y, z = e["peak"]
    assert e["peak_mm"] == pytest.approx(list((aff @ [x, y, z, 1])[:3]), abs=1e-3)
    assert os.path.isfile(e["montage"]) and len(e["box"]) == 6
    s = json.load(open(out / "series.json"))
    assert s["shape_dhw"] == [3, 128, 128] and nib.load(s["explanations"][0]["nifti"]).shape == (128, 128, 3)
    assert json.load(open(out / "CT_small.json"))["shape_dhw"] == [1, 128, 128]
    assert json.load(open(out / "failures.json"))[0]["file"] == str(bad)
    bad.unlink()
    assert main(args[:4] + args[5:]) == 0  # the rerun skips the three intact volumes
    assert "3 already done" in capsys.readouterr().err


def test_volume_option_errors(tmp_path, capsys):
    scan, _, _ = _scan(tmp_path / "scan.nii")
    base = ["explain", scan, "--model", "medical_zoo:tiny3d", "--out", str(tmp_path / "o")]
    assert main(base + ["--window", "kidney"]) == 2
    assert "preset" in capsys.readouterr().err
    assert main(base + ["--size", "8,8"]) == 2
    assert main(base + ["--size", "8,8,8", "--spacing", "2"]) == 2


def test_report_shows_volumes_as_slice_strips(tmp_path, capsys):
    from test_report import Page

    scan, aff, shape = _scan(tmp_path / "scan.nii.gz")
    torch.save(tiny3d().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    base = ["explain", scan, "--model", "medical_zoo:tiny3d", "--weights", str(tmp_path / "w.pt")]
    assert main(base + ["--out", str(out), "--json", "--top", "2"]) == 0
    rec = json.load(open(out / "scan.json"))
    assert main(["report", str(out)]) == 0
    page = Page(open(out / "index.html", encoding="utf-8").read())
    strips = [dict(a) for t, a in page.tags if t == "img" and "strip" in (dict(a).get("class") or "")]
    # one strip per explained class: the montage written by explain (axial, coronal, sagittal through the peak)
    assert [s["src"] for s in strips] == [os.path.basename(e["montage"]) for e in rec["explanations"]]
    assert all("axial, coronal and sagittal slices through the peak" in s["alt"] for s in strips)
    text = "".join(page.text)
    for e in rec["explanations"]:
        assert f"peak (x, y, z) ({', '.join(map(str, e['peak']))})" in text
        assert "(" + ", ".join(f"{v:.1f}" for v in e["peak_mm"]) + ") mm" in text
        assert "box (" + ", ".join(map(str, e["box"])) + ")" in text
    links = [dict(a)["href"] for t, a in page.tags if t == "a" and dict(a).get("class") == "nifti"]
    assert links == [os.path.basename(e["nifti"]) for e in rec["explanations"]]
    assert "Volumes (1)" in text and "scan.nii.gz" in text
    assert page.data()["photos"] == []  # the volume is not also shown as a photo
    # without --json the index rows alone give the strips (no millimetres: the record has them)
    out2 = tmp_path / "out2"
    assert main(base + ["--out", str(out2)]) == 0
    assert main(["report", str(out2)]) == 0
    page2 = Page(open(out2 / "index.html", encoding="utf-8").read())
    assert [
        dict(a)["src"] for t, a in page2.tags if t == "img" and "strip" in (dict(a).get("class") or "")
    ] == ["scan." + rec["explanations"][0]["class"].replace(" ", "_") + ".montage.png"]
