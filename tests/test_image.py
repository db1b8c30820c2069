"""Loading every kind of image file as RGB, preprocessing, overlays, peaks and boxes."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from gradcam.image import (
    ImageLoadError,
    boxes,
    colorize,
    load_image,
    overlay,
    peaks,
    preprocess_image,
    resized_size,
    scale_box,
    scale_point,
)
from gradcam.regions import BOX_THRESHOLD, PAPER_BOX_THRESHOLD


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return str(path)


# -- modes ----------------------------------------------------------------------------------------


def test_grayscale_palette_cmyk_become_rgb(tmp_path):
    gray = load_image(_save(Image.new("L", (5, 4), 77), tmp_path / "g.png"))
    assert gray.mode == "RGB" and gray.size == (5, 4) and gray.getpixel((0, 0)) == (77, 77, 77)
    pal = Image.new("P", (3, 3))
    pal.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    assert load_image(_save(pal, tmp_path / "p.png")).getpixel((1, 1)) == (10, 20, 30)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red in CMYK
    got = load_image(_save(cmyk, tmp_path / "c.jpg", quality=100)).getpixel((2, 2))
    assert got[0] > 240 and got[1] < 15 and got[2] < 15


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (2, 1))
    rgba.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent red -> white
    rgba.putpixel((1, 0), (0, 0, 255, 128))  # half blue over white
    img = load_image(_save(rgba, tmp_path / "a.png"))
    assert img.getpixel((0, 0)) == (255, 255, 255)
    r, g, b = img.getpixel((1, 0))
    assert b == 255 and abs(r - 127) <= 1 and r == g


def test_transparency_is_composited_on_white_by_the_formula():
    a = np.random.default_rng(0).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    got = np.asarray(load_image(Image.fromarray(a, "RGBA"))).astype(float)
    alpha = a[..., 3:] / 255.0
    exact = a[..., :3] * alpha + 255.0 * (1 - alpha)  # a * rgb + (1 - a) * white
    assert np.abs(got - exact).max() <= 0.5 + 1e-9  # rounded to the nearest 8-bit value
    la = load_image(Image.fromarray(a[..., [0, 3]], "LA"))
    assert np.abs(np.asarray(la)[..., 0] - exact[..., 0]).max() <= 0.5 + 1e-9


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(a)
    assert img16.mode.startswith("I;16")
    img = load_image(_save(img16, tmp_path / "d.png"))
    assert [img.getpixel((i, 0))[0] for i in range(3)] == [0, 128, 255]
    as_int32 = Image.fromarray(a.astype(np.int32), "I")
    assert [load_image(as_int32).getpixel((i, 0))[0] for i in range(3)] == [0, 128, 255]
    small = Image.fromarray(np.array([[0, 100, 255]], np.int32), "I")  # 8-bit values in a 32-bit image
    assert [load_image(small).getpixel((i, 0))[0] for i in range(3)] == [0, 100, 255]


def test_dark_16bit_image_is_still_16bit(tmp_path):
    """A dark 16-bit photo (every value <= 255) is scaled by 255/65535 (near black), never read as 8-bit."""
    a = np.array([[0, 100, 255, 200]], dtype=np.uint16)
    for name in ("dark.png", "dark.tif"):
        img = load_image(_save(Image.fromarray(a), tmp_path / name))
        assert [img.getpixel((i, 0))[0] for i in range(4)] == [0, 0, 1, 1]  # round(v * 255 / 65535)


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (60, 40), (0, 0, 0))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red square at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display = stored rotated 90 degrees clockwise
    path = _save(stored, tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    img = load_image(path)
    assert img.size == (40, 60)
    r, g, b = img.getpixel((35, 4))  # stored top-left ends up at the displayed top-right
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "empty file (0 bytes)"),
        (b"this is not an image at all", "not an image (format not recognised)"),
    ],
)
def test_bad_files_raise_with_path_and_reason(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as e:
        load_image(str(path))
    assert e.value.path == str(path) and e.value.reason == reason
    assert str(e.value) == f"{path}: {reason}"


def test_truncated_and_missing_files(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "t.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match=r"t\.jpg: truncated or corrupt image data"):
        load_image(str(path))
    with pytest.raises(ImageLoadError, match=r"nope\.png: no such file"):
        load_image(str(tmp_path / "nope.png"))


def test_arrays_and_tensors():
    a = np.zeros((3, 4, 3), np.uint8)
    a[0, 0] = (1, 2, 3)
    assert load_image(a).getpixel((0, 0)) == (1, 2, 3)
    t = torch.zeros(3, 2, 2)
    t[:, 1, 1] = 1.0
    assert load_image(t).getpixel((1, 1)) == (255, 255, 255)
    with pytest.raises(ValueError, match=r"must have shape \(H, W\), \(H, W, 3\) or \(H, W, 4\)"):
        load_image(np.zeros((2, 2, 5), np.uint8))


# -- preprocessing ------------------------------------------------------------------------------------


def test_resized_size_keeps_aspect_and_rounds_to_stride():
    assert resized_size(451, 300, 256, 32) == (384, 256)
    assert resized_size(300, 451, 256, 32) == (256, 384)
    assert resized_size(640, 480, 256, 1) == (341, 256)
    assert resized_size(10, 1000, 256, 32) == (256, 25600)


def test_preprocess_formula():
    img = Image.fromarray(np.full((32, 64, 3), (0, 51, 255), np.uint8))
    x = preprocess_image(img, 64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 0.5))
    assert x.shape == (3, 64, 128)
    torch.testing.assert_close(x[:, 10, 10], torch.tensor([(0 - 0.5) / 0.25, (0.2 - 0.5) / 0.5, 1.0]))


# -- overlay --------------------------------------------------------------------------------------------


def test_overlay_size_and_blend_formula():
    photo = Image.fromarray(np.full((30, 50, 3), 200, np.uint8))
    m = torch.zeros(6, 10)
    m[:3] = 1.0  # top half hot
    out = overlay(photo, m, alpha=0.0)
    assert out.size == (50, 30) and np.array_equal(np.asarray(out), np.asarray(photo))
    out = np.asarray(overlay(photo, m, alpha=1.0, colormap="viridis")).astype(int)
    lut = matplotlib.colormaps["viridis"]
    assert np.abs(out[0, 0] - np.round(np.array(lut(1.0)[:3]) * 255)).max() <= 1
    assert np.abs(out[-1, -1] - np.round(np.array(lut(0.0)[:3]) * 255)).max() <= 1
    half = np.asarray(overlay(photo, m, alpha=0.5, colormap="viridis")).astype(int)
    expect = np.round(0.5 * 200 + 0.5 * np.array(lut(0.0)[:3]) * 255)
    assert np.abs(half[-1, -1] - expect).max() <= 1


def test_overlay_colorbar_and_errors():
    photo = Image.new("RGB", (80, 40))
    out = overlay(photo, torch.rand(5, 5), colorbar=True)
    assert out.size[1] == 40 and out.size[0] > 80
    with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]; got 1\.5"):
        overlay(photo, torch.rand(5, 5), alpha=1.5)
    with pytest.raises(ValueError, match=r"Unknown colormap 'virdis'\. Closest: viridis"):
        overlay(photo, torch.rand(5, 5), colormap="virdis")
    with pytest.raises(ValueError, match=r"A map must be \(H, W\)"):
        overlay(photo, torch.rand(2, 5, 5))


def test_colorize_uses_the_lookup_table():
    c = colorize(torch.tensor([[0.0, 1.0]]), "gray")
    torch.testing.assert_close(c, torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]))


# -- peaks and boxes ----------------------------------------------------------------------------------


def test_peaks_and_largest_segment_box():
    m = torch.zeros(2, 20, 30)
    m[0, 2:5, 3:6] = 1.0  # small but strongest blob
    m[0, 10:18, 12:25] = 0.2  # largest segment above 15% (below 45%: the threshold matters)
    m[0, 0, 29] = 0.1  # below 15% of the max: ignored
    m[1, 7, 8] = 0.3  # one pixel
    box, ok = boxes(m, threshold=PAPER_BOX_THRESHOLD)
    assert ok.tolist() == [True, True]
    assert box.tolist() == [[12, 10, 25, 18], [8, 7, 9, 8]]  # [x0, y0, x1, y1], exclusive ends
    # the default is the one user-facing threshold (0.45): only the strong blob is foreground
    assert BOX_THRESHOLD == 0.45 and boxes(m)[0].tolist() == [[3, 2, 6, 5], [8, 7, 9, 8]]
    assert peaks(m).tolist() == [[3, 2], [8, 7]]  # (x, y) of the first maximum


def test_flat_map_has_no_box():
    box, ok = boxes(torch.zeros(1, 8, 8))
    assert ok.tolist() == [False] and box.tolist() == [[0, 0, 0, 0]]


def test_scaling_boxes_and_points_between_sizes():
    # A box of pixels 8..15 (edges 8, 16) on a 32-wide map covers 1/4..1/2 of the width: 100..200 at 400 px.
    assert scale_box([8, 0, 16, 32], (32, 32), (400, 64)) == [100, 0, 200, 64]
    assert scale_box([0, 0, 32, 32], (32, 32), (451, 300)) == [0, 0, 451, 300]
    assert scale_box([1, 2, 3, 4], (10, 10), (15, 25)) == [
        1,
        5,
        5,
        10,
    ]  # 1.5 -> 1, 4.5 -> 5, 5 -> 5, 10 -> 10
    assert scale_box([3, 3, 7, 7], (10, 10), (10, 10)) == [3, 3, 7, 7]
    assert scale_point([0, 0], (32, 32), (320, 320)) == [5, 5]  # pixel centre 0.5 -> 5.0 - 0.5 -> 4.5 -> 5
    assert scale_point([31, 31], (32, 32), (64, 64)) == [63, 63]


def test_boxes_on_a_resampled_map_match_the_full_resolution_box_to_its_precision():
    m = torch.zeros(1, 256, 384)
    m[0, 40:200, 100:300] = 1.0
    full, _ = boxes(m)
    assert full.tolist() == [[100, 40, 300, 200]]
    coarse, ok = boxes(m, max_side=96)  # 4 input pixels per working pixel
    assert ok.tolist() == [True]
    assert (coarse - full).abs().max().item() <= 4
    x0, y0, x1, y1 = coarse[0].tolist()
    assert x0 <= 100 and y0 <= 40 and x1 >= 300 and y1 >= 200  # edges round outwards


# -- size limits ----------------------------------------------------------------------------------


def forged_jpeg(path, width: int, height: int) -> str:
    """A small real JPEG whose SOF header is rewritten to declare ``width`` x ``height`` (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline SOF0: marker, length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def test_declared_size_over_the_pixel_limit_is_refused_before_decoding(tmp_path, recwarn):
    import warnings

    import gradcam.image as gi

    warnings.simplefilter("always")
    bomb = forged_jpeg(tmp_path / "bomb.jpg", 12000, 8000)  # 96 MP: over PIL's warning threshold (89.5 MP)
    with pytest.raises(ImageLoadError) as e:
        load_image(bomb)
    assert e.value.reason == (
        "image too large: its header declares 12000x8000 = 96.0 megapixels, over the limit "
        "of 50 megapixels (raise it with --max-pixels N, or max_pixels= in Python)"
    )
    with pytest.raises(ImageLoadError, match="over the limit of 20 megapixels"):
        load_image(forged_jpeg(tmp_path / "b2.jpg", 5000, 5000), max_pixels=20_000_000)
    huge = forged_jpeg(tmp_path / "huge.jpg", 60000, 60000)  # over PIL's own refusal limit (2 x 89.5 MP)
    with pytest.raises(ImageLoadError, match="image too large: its header declares more than 179 megapixels"):
        load_image(huge, max_pixels=None)
    assert not [w for w in recwarn.list if issubclass(w.category, Image.DecompressionBombWarning)]
    assert gi.MAX_PIXELS == 50_000_000
    # Under the limit, the declared size is decoded (libjpeg pads the missing data: this is why a forged
    # header once cost gigabytes).
    assert load_image(forged_jpeg(tmp_path / "small.jpg", 400, 300)).size == (400, 300)


def test_long_side_of_the_model_input_is_capped():
    assert resized_size(10000, 50, 256, 32) == (51200, 256)  # no cap: what a 10000 x 50 photo used to cost
    assert resized_size(10000, 50, 256, 32, max_side=1024) == (1024, 32)  # s = 1024 / 10000; 5 px -> 32
    assert resized_size(50, 10000, 256, 32, max_side=1024) == (32, 1024)
    assert resized_size(451, 300, 256, 32, max_side=1024) == (384, 256)  # ordinary photos: no change
    assert resized_size(2000, 400, 256, 32, max_side=1024) == (
        1024,
        192,
    )  # 1280 x 256 capped: 204.8 = 6.4 x 32 -> 192
    x = preprocess_image(Image.new("RGB", (10000, 50), (255, 0, 0)), 256)
    assert x.shape == (3, 32, 1024)  # the default cap, MAX_SIDE = 1024
    assert preprocess_image(Image.new("RGB", (10000, 50)), 256, max_side=None).shape == (3, 256, 51200)
    import gradcam

    assert gradcam.load_model().preprocess(Image.new("RGB", (10000, 50))).shape == (3, 32, 1024)
