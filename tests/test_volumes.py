"""Volumes (N, C, D, H, W): trilinear upsampling of maps and overlays of chosen slices (issue 12)."""

import pytest
import torch
from PIL import Image

from gradcam.explanation import normalize, upsample
from gradcam.image import overlay, overlay_slices


def _linear_1d(t: torch.Tensor, axis: int, out: int) -> torch.Tensor:
    """Linear interpolation along one axis, half-pixel centres (align_corners=False), edges clamped."""
    n = t.shape[axis]
    src = ((torch.arange(out, dtype=torch.float64) + 0.5) * n / out - 0.5).clamp(0, n - 1)
    lo = src.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (src - lo).reshape([-1 if d == axis else 1 for d in range(t.dim())])
    return t.index_select(axis, lo) * (1 - frac) + t.index_select(axis, hi) * frac


def test_trilinear_upsampling_is_linear_along_each_axis():
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 3, 4, 5, dtype=torch.float64)
    up = upsample(maps, (7, 9, 10))
    ref = _linear_1d(_linear_1d(_linear_1d(maps, 2, 7), 3, 9), 4, 10)
    assert up.shape == (2, 3, 7, 9, 10) and (up - ref).abs().max() < 1e-12
    assert torch.equal(upsample(maps, (3, 4, 5)), maps)
    with pytest.raises(ValueError, match="no 3-D form"):
        upsample(maps, (7, 9, 10), "bicubic")


def test_normalize_volume_over_all_three_axes():
    m = torch.zeros(1, 1, 2, 2, 2)
    m[0, 0, 1, 1, 1] = 4.0
    m[0, 0, 0, 0, 0] = 2.0
    out = normalize(m, dims=3)
    assert out.max() == 1.0 and out[0, 0, 0, 0, 0] == 0.5 and out[0, 0, 0, 1, 0] == 0.0
    assert torch.equal(normalize(torch.zeros(1, 1, 2, 2, 2), dims=3), torch.zeros(1, 1, 2, 2, 2))


def test_overlay_slices_tiles_are_overlays_of_the_chosen_slices():
    torch.manual_seed(0)
    vol = torch.rand(6, 10, 8) * 100 - 50
    cam = torch.rand(6, 10, 8) * 0.5
    cam[3, 4, 2] = 1.0  # the peak lies in axial slice 3
    img = overlay_slices(vol, cam, slices=[1, 3], alpha=0.4)
    assert img.size == (8 * 2 + 4, 10)
    scaled = (vol - vol.min()) / (vol.max() - vol.min())
    for j, s in enumerate([1, 3]):
        grey = (
            (scaled[s].expand(3, -1, -1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        )
        expected = overlay(Image.fromarray(grey), cam[s], alpha=0.4)
        assert img.crop((j * 12, 0, j * 12 + 8, 10)).tobytes() == expected.tobytes()
    default = overlay_slices(vol, cam)  # 5 evenly spaced slices (0, 1, 2, 4, 5 after rounding) + the peak, 3
    assert default.size == (8 * 6 + 4 * 5, 10)
    side = overlay_slices(vol, cam, slices=[2], axis=2)
    assert side.size == (10, 6)
    with pytest.raises(ValueError, match=r"slices \[6\] are out of range for axis 0 of size 6"):
        overlay_slices(vol, cam, slices=[6])
    with pytest.raises(ValueError, match="map must be"):
        overlay_slices(vol, cam[:3])


def test_tokens_to_volume_inverts_a_patch_embedding_flatten():
    from gradcam.volumes import tokens_to_volume

    grid = torch.randn(2, 5, 3, 4, 6)  # (N, C, d, h, w), as a strided Conv3d patch embedding gives it
    tokens = torch.cat([torch.zeros(2, 1, 5), grid.flatten(2).transpose(1, 2)], dim=1)  # class token first
    assert torch.equal(tokens_to_volume(3, 4, 6, skip=1)(tokens), grid)
    with pytest.raises(ValueError, match=r"expects \(N, 73, C\) tokens"):
        tokens_to_volume(3, 4, 6, skip=1)(tokens[:, 1:])
