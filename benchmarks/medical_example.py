"""The worked example of docs/guides/medical.md: pydicom's CT slice and nibabel's anatomical MRI, explained.

    PYTHONPATH=src:benchmarks python benchmarks/medical_example.py [--out docs/figures]

``bright_region(threshold)`` is a hand-set 3-D "model" with a known answer, so that the figure can be
checked: an in-plane 3x3 mean filter of the windowed input minus ``threshold``, a ReLU (the layer ``features``), the
mean over the volume as the score of class 0 ("bright") and its negative as class 1. Grad-CAM for
"bright" is then the ReLU'd feature map itself: high exactly where the windowed intensity is above the
threshold. The script asserts that (the CT peak lies in bone, above 300 HU) and writes the montages.
The same model works from the command line::

    PYTHONPATH=benchmarks gradcam explain CT_small.dcm --model medical_example:bone_model --window bone \\
        --out OUT --json
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile

import torch
from torch import nn


class BrightRegion(nn.Module):
    """score_0 = mean ReLU(mean3x3(x) - threshold) (an in-plane 3x3 mean: works on one slice too); score_1 = -score_0."""

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(1, 1, (1, 3, 3), padding=(0, 1, 1)), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.fill_(1 / 9)
            self.features[0].bias.fill_(-threshold)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def bone_model() -> nn.Module:
    """For ``--window bone`` (400, 1800): windowed values above 0.6 are above 580 HU, i.e. bone."""
    return BrightRegion(0.6).eval()


def main(argv=None) -> None:
    import nibabel
    import pydicom

    from gradcam.medical import explain_volume

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join("docs", "figures"))
    args = p.parse_args(argv)
    ct = pydicom.data.get_testdata_file("CT_small.dcm")
    anat = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "anatomical.nii")
    with tempfile.TemporaryDirectory() as tmp:
        res = explain_volume(ct, bone_model(), target=0, window="bone", out=tmp)
        x, y, z = res.peaks[0]
        hu = float(res.volume.data[z, y, x])
        print(
            f"CT_small.dcm: {res.volume.shape} (D, H, W), voxels {res.volume.spacing} mm, layer {res.layer}"
        )
        print(
            f"  peak (x, y, z) = {res.peaks[0]} = {res.peaks_mm[0]} mm (RAS), {hu:.0f} HU; box {res.boxes[0]}"
        )
        assert hu > 300, "the peak of the bone detector must lie in bone"
        shutil.copy(res.files["montage"][0], os.path.join(args.out, "medical-ct-montage.png"))
        res = explain_volume(anat, BrightRegion(0.6).eval(), target=0, window="8000,16000", out=tmp)
        print(f"anatomical.nii: {res.volume.shape} (D, H, W), voxels {res.volume.spacing} mm")
        print(f"  peak (x, y, z) = {res.peaks[0]} = {res.peaks_mm[0]} mm (RAS); box {res.boxes[0]}")
        print(f"  files: {sorted(os.path.basename(f) for fs in res.files.values() for f in fs)}")
        shutil.copy(res.files["montage"][0], os.path.join(args.out, "medical-anatomical-montage.png"))


if __name__ == "__main__":
    main()
