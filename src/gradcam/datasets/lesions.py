"""Synthetic CT-like volumes with a planted lesion and its exact mask (the 3-D benchmark's data).

Each volume is a cube of ``size`` voxels (default 32³) cut from an organ in Hounsfield units, as a liver
in the portal venous phase: parenchyma (40 HU) with a smooth low-frequency texture (±20 HU), two or
three contrast-filled vessels (bright tubes, +150 to +250 HU, radius 1.2 to 2 voxels, straight through
the cube along a random axis), and Gaussian noise (σ = 12 HU). Half of the volumes (``label`` 1) carry a
lesion: a hypodense ball (40 to 120 HU below the parenchyma, as a metastasis or a cyst) of radius 2 to
4.5 voxels, its centre uniform in the cube a voxel away from the faces, with a partial-volume edge one
voxel wide. Its mask is the ball (voxels whose centre lies within the radius); its box
``(x0, y0, z0, x1, y1, z1)`` (exclusive ends) is the mask's extent.

Every volume also has its ``healthy`` twin: the same parenchyma, vessels, texture and noise without the lesion,
so that deletion and insertion can remove or restore exactly the lesion's voxels. The model input is the
CT window level 40 HU, width 400 HU, scaled to [0, 1]. Everything is drawn from one seeded
:class:`torch.Generator`: the same ``seed`` gives the same volumes on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

CLASSES = ("normal", "lesion")
WINDOW = (40.0, 400.0)  # level, width (HU): the abdomen window


@dataclass
class LesionVolumes:
    """``volumes`` and ``healthy`` (N, 1, S, S, S) in [0, 1] (windowed), ``labels`` (N,) 0/1, ``masks``
    (N, S, S, S) bool (all False without a lesion), ``boxes`` (N, 6) int64 (zeros without a lesion),
    ``radius`` and ``contrast`` (HU, negative) of each lesion (0 without)."""

    volumes: torch.Tensor
    healthy: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    radius: torch.Tensor
    contrast: torch.Tensor


def _u(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def _axes(size: int, n: int):
    """Voxel centre coordinates (z, y, x), each shaped to broadcast over (N, S, S, S)."""
    r = torch.arange(size, dtype=torch.float32)
    return r.view(1, -1, 1, 1), r.view(1, 1, -1, 1), r.view(1, 1, 1, -1)


def _sq(zyx, p: torch.Tensor, scale=None):
    """Per axis (z, y, x) squared offsets from points ``p`` (N, 3), optionally divided by ``scale`` (N, 3)."""
    n = p.shape[0]
    s = torch.ones_like(p) if scale is None else scale
    return [((zyx[a] - p[:, a].view(n, 1, 1, 1)) / s[:, a].view(n, 1, 1, 1)) ** 2 for a in range(3)]


def _vessels(gen: torch.Generator, n: int, size: int, zyx) -> torch.Tensor:
    """HU added by 2-3 straight tubes per volume (each along a random axis through the cube)."""
    hu = torch.zeros(n, size, size, size)
    count = 2 + (torch.rand(n, generator=gen) < 0.5).long()
    for j in range(3):
        axis = torch.randint(0, 3, (n,), generator=gen)
        pos = torch.stack([_u(gen, n, 0.3, 0.7) * size for _ in range(3)], 1)
        rad = _u(gen, n, 1.2, 2.0)
        amp = _u(gen, n, 150, 250) * (count > j)
        sq = _sq(zyx, pos)
        t = [torch.where((axis == a).view(n, 1, 1, 1), torch.zeros(()), sq[a]) for a in range(3)]
        d2 = t[0] + t[1] + t[2]
        edge = (rad.view(n, 1, 1, 1) + 0.5 - d2.sqrt()).clamp(0, 1)  # partial volume, one voxel wide
        hu += amp.view(n, 1, 1, 1) * edge
    return hu


def _texture(gen: torch.Generator, n: int, size: int) -> torch.Tensor:
    coarse = torch.rand(n, 1, 4, 4, 4, generator=gen) * 40 - 20
    return F.interpolate(coarse, size=(size,) * 3, mode="trilinear", align_corners=False)[:, 0]


def _lesions(gen: torch.Generator, n: int, size: int, zyx):
    """Lesion centres (N, 3) (z, y, x), radii and contrasts (HU, negative: hypodense)."""
    radius = _u(gen, n, 2.0, 4.5)
    contrast = -_u(gen, n, 40, 120)  # hypodense
    lo = radius.view(n, 1) + 1
    pos = lo + torch.rand(n, 3, generator=gen) * (size - 1 - 2 * lo)  # uniform, a voxel from the faces
    dz, dy, dx = _sq(zyx, pos)
    return pos, radius, contrast, (dz + dy + dx).sqrt()


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, 6) (x0, y0, z0, x1, y1, z1) extents of the masks (zeros for an empty one)."""
    out = torch.zeros(masks.shape[0], 6, dtype=torch.long)
    for axis_box, dims in ((0, (1, 2)), (1, (1, 3)), (2, (2, 3))):  # x: over (z, y); y: (z, x); z: (y, x)
        present = masks.any(dim=dims)
        idx = torch.arange(present.shape[1])
        lo = torch.where(present, idx, present.shape[1]).amin(1)
        hi = torch.where(present, idx + 1, 0).amax(1)
        ok = present.any(1)
        out[:, axis_box] = torch.where(ok, lo, 0)
        out[:, axis_box + 3] = torch.where(ok, hi, 0)
    return out


def window(hu: torch.Tensor) -> torch.Tensor:
    """Hounsfield units -> [0, 1] through the abdomen window (level 40, width 400), float32."""
    level, width = WINDOW
    return ((hu - (level - width / 2)) / width).clamp(0, 1).float()


def make_lesions(n: int, seed: int, size: int = 32) -> LesionVolumes:
    """``n`` volumes of ``size``³ voxels, half with a lesion (labels in random order), seeded by ``seed``."""
    if n < 1 or size < 12:
        raise ValueError(f"make_lesions needs n >= 1 and size >= 12; got n={n}, size={size}.")
    gen = torch.Generator().manual_seed(seed)
    zyx = _axes(size, n)
    hu = 40.0 + _texture(gen, n, size) + _vessels(gen, n, size, zyx)
    hu = hu + 12 * torch.randn(n, size, size, size, generator=gen)
    labels = (torch.randperm(n, generator=gen) % 2).long()
    pos, radius, contrast, d = _lesions(gen, n, size, zyx)
    present = labels.bool().view(n, 1, 1, 1)
    edge = (radius.view(n, 1, 1, 1) + 0.5 - d).clamp(0, 1) * present
    masks = (d <= radius.view(n, 1, 1, 1)) & present
    healthy = window(hu)[:, None]
    volumes = window(hu + contrast.view(n, 1, 1, 1) * edge)[:, None]
    return LesionVolumes(
        volumes=volumes,
        healthy=healthy,
        labels=labels,
        masks=masks,
        boxes=_boxes(masks),
        radius=(radius * labels).float(),
        contrast=(contrast * labels).float(),
    )
