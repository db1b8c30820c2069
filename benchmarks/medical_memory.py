"""Peak memory and time of gradcam.medical on a CT-sized volume (512 x 512 x 400, int16 NIfTI, synthetic).

    OMP_NUM_THREADS=1 python benchmarks/medical_memory.py [--slices 400] [--model tiny|densenet121]

Writes a synthetic CT (air -1000 HU, a soft-tissue ellipsoid 40 HU, a 100 HU sphere) as an uncompressed
``.nii`` in a temporary folder, then runs ``explain_volume(path, model, window="abdomen", size=(96, 96,
96), out=...)`` (read, window, resample, Grad-CAM, the heatmap upsampled to the full 512 x 512 x 400 grid,
NIfTI + montage + JSON written). Reports the peak resident memory of the call above the resident size
before it (Linux VmHWM, reset through /proc/self/clear_refs), and in units of the volume's float32 size.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def _kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def synthetic_ct(path: str, shape=(512, 512, 400)) -> None:
    """An int16 NIfTI (I, J, K) = ``shape`` at 0.7 x 0.7 x 1.25 mm, written slice by slice."""
    import nibabel as nib

    i, j = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    arr = np.empty(shape, np.int16)
    for k in range(shape[2]):
        body = ((i - 256) / 200.0) ** 2 + ((j - 256) / 150.0) ** 2 <= 1
        lesion = (i - 300) ** 2 + (j - 220) ** 2 + ((k - shape[2] * 0.6) * 1.8) ** 2 <= 30**2
        arr[:, :, k] = np.where(lesion, 100, np.where(body, 40, -1000))
    nib.save(nib.Nifti1Image(arr, np.diag([0.7, 0.7, 1.25, 1.0])), path)


class Tiny3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 16, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=400)
    p.add_argument("--model", choices=("tiny", "densenet121"), default="tiny")
    args = p.parse_args(argv)
    from gradcam.medical import explain_volume

    torch.manual_seed(0)
    if args.model == "tiny":
        model = Tiny3D().eval()
    else:
        from monai.networks.nets import DenseNet121

        model = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "ct.nii")
        t = time.perf_counter()
        synthetic_ct(src, (512, 512, args.slices))
        made = time.perf_counter() - t
        volume_mb = 512 * 512 * args.slices * 4 / 2**20
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _kb("VmRSS:")
        t = time.perf_counter()
        res = explain_volume(src, model, window="abdomen", size=(96, 96, 96), out=os.path.join(tmp, "out"))
        took = time.perf_counter() - t
        peak = (_kb("VmHWM:") - before) / 1024
        sizes = {os.path.basename(f): os.path.getsize(f) / 2**20 for fs in res.files.values() for f in fs}
    print(
        f"volume 512 x 512 x {args.slices} int16 ({volume_mb / 2:.0f} MB on disk, {volume_mb:.0f} MB as float32); "
        f"model {args.model}, input {res.input_shape}, torch threads {torch.get_num_threads()}"
    )
    print(f"synthetic file written in {made:.1f} s")
    print(
        f"explain_volume (read, window, resample, Grad-CAM, full-size map, NIfTI + montage + JSON): {took:.1f} s"
    )
    print(f"peak extra resident memory: {peak:.0f} MB = {peak / volume_mb:.2f} x the float32 volume")
    print(
        f"peak (x, y, z) {res.peaks[0]}, box {res.boxes[0]}, files (MB): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sizes.items())
    )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
