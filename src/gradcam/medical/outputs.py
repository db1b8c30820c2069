"""What a 3-D map gives: its peak and box in voxels, the peak in mm, and a montage of the three planes."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from ..image import overlay
from .volume import Volume

BOX_RESOLUTION = 64  # boxes are segmented on maps area-resampled to <= 64 voxels per side


def peak3d(m: torch.Tensor) -> Tuple[int, int, int]:
    """(x, y, z) voxel index of the maximum of a (D, H, W) map (the first one in (z, y, x) order)."""
    d, h, w = m.shape
    i = int(m.flatten().argmax())
    return (i % w, (i // w) % h, i // (h * w))


def components3d(fg: torch.Tensor) -> torch.Tensor:
    """Labels of the 26-connected segments of a bool (D, H, W) mask: 0 on the background, and on each
    segment its largest flat voxel index + 1 (max-propagation by 3x3x3 max-pooling, with pointer jumping)."""
    n = fg.numel()
    ids = torch.arange(1, n + 1, dtype=torch.float64).view(fg.shape)
    lab = torch.where(fg, ids, torch.zeros((), dtype=torch.float64))
    while True:
        new = F.max_pool3d(lab[None, None], 3, stride=1, padding=1)[0, 0] * fg
        flat = new.flatten()
        for _ in range(2):  # a label L names voxel L - 1 of the same segment: take the label it holds now
            flat = torch.maximum(flat, flat[(flat.long() - 1).clamp_min(0)] * (flat > 0))
        new = flat.view(fg.shape)
        if torch.equal(new, lab):
            return lab.long()
        lab = new


def box3d(m: torch.Tensor, threshold: float) -> Optional[list]:
    """(x0, y0, z0, x1, y1, z1), exclusive ends, of the largest 26-connected segment of ``m >= threshold * max``.

    Segmented on a copy area-resampled to at most :data:`BOX_RESOLUTION` voxels per side, the edges
    scaled back (x0 -> floor(x0 W / w'), x1 -> ceil(x1 W / w')); equal sizes: the segment holding the
    peak. ``None`` for a flat (all-zero) map.
    """
    d, h, w = m.shape
    if not float(m.max()) > 0:
        return None
    work = m.float()
    if max(d, h, w) > BOX_RESOLUTION:
        s = BOX_RESOLUTION / max(d, h, w)
        work = F.adaptive_avg_pool3d(work[None, None], tuple(max(1, round(v * s)) for v in (d, h, w)))[0, 0]  # type: ignore[arg-type]
    fg = (work >= threshold * work.max()) & (work > 0)
    lab = components3d(fg).flatten()
    counts = torch.bincount(lab, minlength=lab.numel() + 1).double()
    counts[0] = 0
    counts[lab[work.flatten().argmax()]] += 0.5
    sel = (lab == counts.argmax()).view(work.shape)
    wd, wh, ww = work.shape
    zs, ys, xs = (sel.any(dim=(1, 2)), sel.any(dim=(0, 2)), sel.any(dim=(0, 1)))
    out = []
    for ax, n_work, n_full in ((xs, ww, w), (ys, wh, h), (zs, wd, d)):
        idx = torch.nonzero(ax).flatten()
        out.append((int(idx[0]) * n_full // n_work, -(-(int(idx[-1]) + 1) * n_full // n_work)))
    (x0, x1), (y0, y1), (z0, z1) = out
    return [x0, y0, z0, x1, y1, z1]


def display_range(data: torch.Tensor, window=None) -> Tuple[float, float]:
    """Grey range for display: the window's [L - W/2, L + W/2], else the 0.5th-99.5th percentiles (sampled)."""
    from .preprocess import parse_window

    lw = parse_window(window)
    if lw is not None:
        return lw[0] - lw[1] / 2, lw[0] + lw[1] / 2
    flat = data.flatten()
    sample = flat[:: max(1, flat.numel() // 1_000_000)].float()
    lo, hi = torch.quantile(sample, torch.tensor([0.005, 0.995])).tolist()
    return (lo, hi) if hi > lo else (float(flat.min()), float(flat.max()))


def _tile(
    img: torch.Tensor, m: torch.Tensor, lohi, aspect: float, title: str, px: int, alpha: float
) -> Image.Image:
    """One plane (rows, cols) in grey with the map blended, scaled to ``px`` rows at physical ``aspect``."""
    lo, hi = lohi
    g = ((img.float() - lo) / max(hi - lo, 1e-6)).clamp(0, 1).mul(255).round().to(torch.uint8)
    grey = Image.fromarray(g.numpy()).convert("RGB")
    tile = overlay(grey, m, alpha=alpha)
    rows, cols = img.shape
    height = px
    width = min(3 * px, max(8, round(px * cols * aspect / rows)))  # a 1-slice plane stays a readable strip
    tile = tile.resize((width, height), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (width, height + 16), (255, 255, 255))
    canvas.paste(tile, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), title, fill=(0, 0, 0))
    return canvas


def _flips(volume: Volume) -> Tuple[bool, bool, bool]:
    """Per voxel axis (x, y, z): True when it runs toward +R, +A or +S (its dominant world direction)."""
    a = volume.affine[:3, :3]
    return tuple(bool(a[int(a[:, j].abs().argmax()), j] > 0) for j in range(3))  # type: ignore[return-value]


def _plane(t: torch.Tensor, flip_rows: bool, flip_cols: bool) -> torch.Tensor:
    dims = [d for d, f in ((0, flip_rows), (1, flip_cols)) if f]
    return t.flip(dims) if dims else t


def montage(
    volume: Volume, m: torch.Tensor, peak, window=None, px: int = 256, alpha: float = 0.5
) -> Image.Image:
    """Axial, coronal and sagittal slices through ``peak`` = (x, y, z), the map (D, H, W) blended on each.

    Radiological view: superior (axial: anterior) at the top, the patient's right on the left (sagittal:
    anterior on the left), read from the affine; each plane at its physical aspect (voxel sizes); a
    single-slice volume shows the axial plane only. Grey levels: ``window`` or the volume's 0.5-99.5% range.
    """
    x, y, z = peak
    sz, sy, sx = volume.spacing
    fx, fy, fz = _flips(volume)
    lohi = display_range(volume.data, window)
    v, mm = volume.data, m.float()
    planes = [
        (v[z], mm[z], fy, fx, sx / sy, f"axial z={z}"),
        (v[:, y, :], mm[:, y, :], fz, fx, sx / sz, f"coronal y={y}"),
        (v[:, :, x], mm[:, :, x], fz, fy, sy / sz, f"sagittal x={x}"),
    ]
    if volume.shape[0] == 1:  # one slice: the coronal and sagittal planes are a single row, so only axial
        planes = planes[:1]
    tiles = [
        _tile(_plane(img, fr, fc), _plane(mp, fr, fc), lohi, asp, title, px, alpha)
        for img, mp, fr, fc, asp, title in planes
    ]
    gap = 6
    out = Image.new(
        "RGB",
        (sum(t.width for t in tiles) + gap * (len(tiles) - 1), max(t.height for t in tiles)),
        (255, 255, 255),
    )
    left = 0
    for t in tiles:
        out.paste(t, (left, 0))
        left += t.width + gap
    return out
