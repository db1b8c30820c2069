"""Photos in and pictures out: loading any image file as RGB, model preprocessing, heatmap overlays,
and the peak / bounding box of a map.

- :func:`load_image`: any PIL-readable file -> RGB (EXIF orientation applied; grayscale, palette, CMYK,
  RGBA/LA (composited on white), 16-bit and float images converted correctly). Failures raise
  :class:`ImageLoadError` with the path and the reason.
- :func:`preprocess_image`: the whole photo (no crop), short side resized, normalised.
- :func:`overlay`: heatmap (matplotlib colormap, no OpenCV) blended on the photo at the photo's size.
- :func:`peaks` and :func:`boxes`: the maximum of each map ``(x, y)`` and the bounding box of its evidence
  above a threshold (:mod:`gradcam.regions`), batched on tensors.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .regions import BOX_THRESHOLD, DEFAULT_BOX_RULE, map_boxes
from .regions import peaks as _peaks

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray, torch.Tensor]

# Size limits (see the README's "Size limits"): a file whose header declares more pixels than MAX_PIXELS
# is refused before anything is decoded; the model input's long side is capped at MAX_SIDE pixels.
MAX_PIXELS = 50_000_000
MAX_SIDE = 1024


class ImageLoadError(ValueError):
    """A file could not be read as an image; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit images (and 32-bit integer ones with values above 255) are scaled by 255/65535, not clipped;
    32-bit integer images whose values all lie in 0..255 are taken as 8-bit; float images in [0, 1] are
    scaled by 255; images with transparency (RGBA, LA, palette with a transparent colour) are composited
    on white; CMYK, YCbCr, LAB, HSV, 1-bit, L and P go through PIL's own conversion.
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        a = np.asarray(img, dtype=np.float64)
        if mode == "F" and a.size and float(np.nanmax(a)) <= 1.0:
            a = a * 255.0
        elif mode.startswith("I;16") or (a.size and float(a.max()) > 255.0):
            a = a * (255.0 / 65535.0)
        a = np.nan_to_num(a).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))  # out = a * rgb + (1 - a) * white, without RGBA copies
        return out
    return img.convert("RGB")


def _too_large(w: int, h: int, max_pixels: int) -> str:
    return (
        f"image too large: its header declares {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of "
        f"{max_pixels / 1e6:g} megapixels (raise it with --max-pixels N, or max_pixels= in Python)"
    )


def _upright(img: Image.Image) -> Image.Image:
    """``img`` with its EXIF orientation applied; the image itself (no copy) when it has none to apply."""
    if img.getexif().get(0x0112, 1) in (1, None):
        return img
    return ImageOps.exif_transpose(img) or img


def load_image(source: ImageLike, max_pixels: Optional[int] = MAX_PIXELS) -> Image.Image:
    """Read ``source`` (a path, a PIL image, a uint8 HxW[xC] array or a [0,1] (3,H,W) tensor) as an RGB PIL image.

    Files: the whole file is decoded (truncated files fail), EXIF orientation is applied
    (``ImageOps.exif_transpose``), the first frame of animations is used. Any failure raises
    :class:`ImageLoadError` naming the path and the reason (empty file, not an image, truncated, unreadable).
    A file whose header declares more than ``max_pixels`` pixels (default :data:`MAX_PIXELS`, 50 M;
    ``None``: no limit of ours) is refused before any pixel is decoded, so a forged header cannot make it
    allocate gigabytes; PIL's own ``DecompressionBombWarning`` is replaced by this check (PIL still
    refuses files over twice ``PIL.Image.MAX_IMAGE_PIXELS``, reported with the same reason).
    """
    if isinstance(source, Image.Image):
        return to_rgb(_upright(source))
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.dim() == 3 and t.shape[0] in (1, 3):
            t = t.expand(3, -1, -1) if t.shape[0] == 1 else t
            a = (t.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            return Image.fromarray(a, "RGB")
        raise ValueError(
            f"An image tensor must have shape (3, H, W) or (1, H, W) in [0, 1]; got {tuple(t.shape)}."
        )
    if isinstance(source, np.ndarray):
        a = source
        if a.dtype != np.uint8:
            if np.issubdtype(a.dtype, np.floating) and a.size and float(np.nanmax(a)) <= 1.0:
                a = a * 255.0
            a = np.nan_to_num(a.astype(np.float64)).clip(0, 255).round().astype(np.uint8)
        if a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3, 4)):
            return to_rgb(Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a))
        raise ValueError(f"An image array must have shape (H, W), (H, W, 3) or (H, W, 4); got {a.shape}.")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"Cannot read an image from {type(source).__name__}; pass a path, a PIL image or an array."
        )
    path = os.fspath(source)
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise ImageLoadError(path, "no such file") from None
    except OSError as e:
        raise ImageLoadError(path, f"cannot read the file ({e.strerror or e})") from None
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    return _decode(path, path, max_pixels)


def load_image_bytes(data: bytes, name: str, max_pixels: Optional[int] = MAX_PIXELS) -> Image.Image:
    """:func:`load_image` of a file's content ``data`` (e.g. an object read from object storage); ``name``
    (its URL) names it in errors. The same checks, reasons and decoding as for a file on disk."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    import io

    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Any, path: str, max_pixels: Optional[int]) -> Image.Image:
    """Open ``source`` (a path or a binary file object) with PIL, check its header's size, decode it whole."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check below replaces it
            img_cm = Image.open(source)
        with img_cm as img:
            w, h = img.size  # from the header: nothing decoded yet
            if max_pixels is not None and w * h > max_pixels:
                raise ImageLoadError(path, _too_large(w, h, max_pixels))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img.load()
            return to_rgb(_upright(img))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageLoadError(
            path,
            f"image too large: its header declares more than {limit / 1e6:.0f} megapixels, "
            "PIL's own limit (PIL.Image.MAX_IMAGE_PIXELS)",
        ) from None
    except PermissionError:
        raise ImageLoadError(path, "permission denied") from None
    except IsADirectoryError:
        raise ImageLoadError(path, "is a directory") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(path, "not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason.lower():
            reason = f"truncated or corrupt image data ({reason})"
        else:
            reason = f"corrupt image ({reason})"
        raise ImageLoadError(path, reason) from None


def resized_size(
    width: int, height: int, size: Optional[int], multiple: int = 1, max_side: Optional[int] = None
) -> Tuple[int, int]:
    """(W', H') with the short side ``size`` and the aspect ratio kept, each rounded to a ``multiple``.

    s = size / min(W, H), lowered to max_side / max(W, H) when the long side would exceed ``max_side``;
    W' = max(multiple, multiple * round(W s / multiple)); likewise H'. ``size=None`` keeps the size
    (s = 1, still capped and rounded). The cap bounds the memory of extreme aspect ratios: a 10000 x 50
    photo becomes 1024 x 32, not 51200 x 256.
    """
    scale = 1.0 if size is None else size / min(width, height)
    if max_side is not None and max(width, height) * scale > max_side:
        scale = max_side / max(width, height)
    w = max(multiple, int(round(width * scale / multiple)) * multiple)
    h = max(multiple, int(round(height * scale / multiple)) * multiple)
    return w, h


def preprocess_image(
    image: Image.Image,
    size: Optional[int] = 224,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
    multiple: int = 32,
    max_side: Optional[int] = MAX_SIDE,
) -> torch.Tensor:
    """The whole photo as a (3, H', W') float tensor: x = (rgb / 255 - mean) / std.

    The short side is resized to ``size`` (bicubic, antialiased), keeping the aspect ratio, the long side
    capped at ``max_side`` (default :data:`MAX_SIDE`, 1024; ``None``: no cap); both sides are rounded to a
    multiple of ``multiple`` (32, the network's stride, so that the layer's grid covers the input exactly
    and the map aligns with the photo). No centre crop: objects at the border stay in.
    """
    image = to_rgb(image)
    w, h = resized_size(image.width, image.height, size, multiple, max_side)
    if (w, h) != image.size:
        image = image.resize((w, h), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


# -- colormaps and overlays ---------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def colormap_lut(name: str = "jet") -> torch.Tensor:
    """The matplotlib colormap ``name`` as a (256, 3) float tensor in [0, 1].

    ``jet`` (the default) is built here, value for value as matplotlib builds it (:func:`_jet_lut`), so
    that ``gradcam explain`` starts without importing matplotlib (about 0.2 s); other names ask matplotlib.
    """
    if name == "jet":
        return _jet_lut()
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(matplotlib.colormaps), n=5)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise ValueError(
            f"Unknown colormap {name!r}.{hint} Any matplotlib colormap name works (jet, turbo, viridis...)."
        ) from None
    return torch.from_numpy(cmap(np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32))


# matplotlib's segment data of jet (matplotlib/_cm.py: _jet_data): per channel rows (x, y0, y1).
_JET_SEGMENTS = (
    ((0.00, 0, 0), (0.35, 0, 0), (0.66, 1, 1), (0.89, 1, 1), (1.00, 0.5, 0.5)),
    ((0.000, 0, 0), (0.125, 0, 0), (0.375, 1, 1), (0.640, 1, 1), (0.910, 0, 0), (1.000, 0, 0)),
    ((0.00, 0.5, 0.5), (0.11, 1, 1), (0.34, 1, 1), (0.65, 0, 0), (1.00, 0, 0)),
)


def _jet_lut() -> torch.Tensor:
    """matplotlib's ``colormaps["jet"](np.linspace(0, 1, 256))[:, :3]`` as float32, without matplotlib.

    As ``matplotlib.colors._create_lookup_table`` (N = 256, gamma 1): with x scaled by N - 1 and
    x_i = (N - 1) t_i, entry j is y1[i-1] + (j - x_{i-1}) / (x_i - x_{i-1}) (y0[i] - y1[i-1]) for the
    segment i holding j, the ends y1[0] and y0[-1]; the colormap's lookup of linspace(0, 1, 256) then reads
    entries 0..255 in order (index floor(256 t), 256 -> 255). tests/test_folder_pipeline.py compares it
    with matplotlib bit for bit.
    """
    n = 256
    channels = []
    for seg in _JET_SEGMENTS:
        a = np.array(seg, dtype=float)
        x, y0, y1 = a[:, 0] * (n - 1), a[:, 1], a[:, 2]
        xind = (n - 1) * np.linspace(0, 1, n) ** 1.0
        ind = np.searchsorted(x, xind)[1:-1]
        distance = (xind[1:-1] - x[ind - 1]) / (x[ind] - x[ind - 1])
        lut = np.concatenate([[y1[0]], distance * (y0[ind] - y1[ind - 1]) + y1[ind - 1], [y0[-1]]])
        channels.append(np.clip(lut, 0.0, 1.0))
    xa = np.linspace(0.0, 1.0, 256) * n
    xa[xa == n] = n - 1
    idx = xa.astype(int)
    return torch.from_numpy(np.stack(channels, axis=1)[idx].astype(np.float32))


def colorize(m: torch.Tensor, colormap: str = "jet") -> torch.Tensor:
    """Map values in [0, 1] (..., H, W) to colours (..., H, W, 3) in [0, 1] via a 256-entry lookup table."""
    lut = colormap_lut(colormap).to(m.device)
    idx = (m.clamp(0, 1) * 255).round().long()
    return lut[idx]


def _map_tensor(m) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(m) if not isinstance(m, torch.Tensor) else m).detach().float().cpu()
    while t.dim() > 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 2:
        raise ValueError(f"A map must be (H, W) (or (1, H, W)); got shape {tuple(t.shape)}.")
    return t


def resize_map(m: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (..., h, w) map to ``size`` = (H, W) (align_corners=False), clamped to [0, 1]."""
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    lead = m.shape[:-2]
    out = F.interpolate(
        m.reshape(-1, 1, *m.shape[-2:]).float(), size=tuple(size), mode="bilinear", align_corners=False
    )
    return out.reshape(*lead, *size).clamp(0, 1)


def _heat_image(m: torch.Tensor, colormap: str) -> Image.Image:
    """An RGB PIL image of cmap(m) for a (H, W) map in [0, 1]: 8-bit indices through a 256-colour palette."""
    return _heat_from_indices((m.clamp(0, 1) * 255).round().to(torch.uint8).numpy(), colormap)


def _heat_from_indices(idx: np.ndarray, colormap: str) -> Image.Image:
    lut = (colormap_lut(colormap) * 255).round().to(torch.uint8).flatten().tolist()
    heat = Image.fromarray(idx, "L").convert("P")
    heat.putpalette(lut)
    return heat.convert("RGB")


_STRIP_PIXELS = 1 << 22  # overlays of large photos are made in strips of about 4 M pixels


def _map_indices(m: torch.Tensor, size: Tuple[int, int]) -> np.ndarray:
    """round(255 * resize_map(m, size)) as (H, W) uint8, without an (H, W) float tensor: bilinear is separable,
    so the width is resized once on the small map and the height in column chunks (an identity along x)."""
    h, w = size
    if tuple(m.shape) == (h, w):
        return (m.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    rows = F.interpolate(m[None, None].float(), size=(m.shape[0], w), mode="bilinear", align_corners=False)
    out = np.empty((h, w), np.uint8)
    step = max(1, _STRIP_PIXELS // max(h, 1))
    for c0 in range(0, w, step):
        part = F.interpolate(
            rows[..., c0 : c0 + step],
            size=(h, rows[..., c0 : c0 + step].shape[-1]),
            mode="bilinear",
            align_corners=False,
        )[0, 0]
        out[:, c0 : c0 + step] = (part.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return out


def overlay(
    image: ImageLike,
    map: Union[torch.Tensor, np.ndarray],  # noqa: A002 - the public name
    alpha: float = 0.5,
    colormap: str = "jet",
    colorbar: bool = False,
) -> Image.Image:
    """Blend a heatmap on a photo at the photo's own size: out = (1 - alpha) * photo + alpha * cmap(map).

    ``map`` (h, w) in [0, 1] (any size: it is resized bilinearly to the photo); ``alpha`` in [0, 1];
    ``colormap`` any matplotlib name (quantised to 256 colours). ``colorbar=True`` appends a vertical colour
    bar (low at the bottom). The blend runs on 8-bit images in PIL, so a 12-megapixel photo needs
    about 50 MB, not gigabytes of float tensors; large photos are blended in strips of rows, so the extra
    memory is the output image plus one 8-bit map (a 49-megapixel photo: about 0.2 GB on top of itself).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1]; got {alpha!r}.")
    photo = load_image(image)
    w, h = photo.size
    idx = _map_indices(_map_tensor(map).clamp(0, 1), (h, w))
    if h * w <= _STRIP_PIXELS:
        out = Image.blend(photo, _heat_from_indices(idx, colormap), float(alpha))
    else:
        out = Image.new("RGB", (w, h))
        step = max(1, _STRIP_PIXELS // w)
        for y0 in range(0, h, step):
            y1 = min(h, y0 + step)
            part = Image.blend(
                photo.crop((0, y0, w, y1)), _heat_from_indices(idx[y0:y1], colormap), float(alpha)
            )
            out.paste(part, (0, y0))
    if colorbar:
        bar_w = max(6, w // 40)
        gap = max(2, bar_w // 3)
        ramp = torch.linspace(1.0, 0.0, h).view(h, 1).expand(h, bar_w)
        canvas = Image.new("RGB", (w + gap + bar_w, h), (255, 255, 255))
        canvas.paste(out, (0, 0))
        canvas.paste(_heat_image(ramp.contiguous(), colormap), (w + gap, 0))
        out = canvas
    return out


# -- peak and box -------------------------------------------------------------------------------


def peaks(maps: torch.Tensor) -> torch.Tensor:
    """(..., 2) integer (x, y) of each (..., H, W) map's maximum (the first one in row-major order)."""
    return _peaks(maps, dims=2)


def boxes(
    maps: torch.Tensor,
    threshold: float = BOX_THRESHOLD,
    max_side: Optional[int] = None,
    rule: str = DEFAULT_BOX_RULE,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Bounding boxes of ``maps >= threshold * max`` around the segment(s) ``rule`` picks (batched, tensors only).

    ``maps`` (N, H, W). Returns ``(box, valid)``: box (N, 4) integer ``[x0, y0, x1, y1]`` with exclusive
    ends (pixel edges: 0 <= x0 < x1 <= W, area (x1 - x0) * (y1 - y0)), and valid (N,) False for a flat
    (all-zero) map, whose box is zeros. ``threshold`` defaults to :data:`gradcam.regions.BOX_THRESHOLD`
    (0.45); ``rule`` is ``"largest"`` (the Grad-CAM paper's largest 8-connected segment, Sec. 4.1),
    ``"peak"`` (the segment holding the maximum) or ``"all"`` (every segment); see
    :func:`gradcam.regions.map_boxes`.

    ``max_side``: segment a copy of the maps area-resampled so that its longer side is at most this many
    pixels, and scale the box back (edges: x0 -> floor(x0 W / w'), x1 -> ceil(x1 W / w')). The
    labelling costs one 3x3 pass per pixel of segment length, so this bounds its cost; the box is then exact
    to W / max_side pixels, well inside the resolution of a CAM map (the layer's stride).
    """
    n, h, w = maps.shape
    work = maps
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        work = F.interpolate(maps.unsqueeze(1).float(), size=size, mode="area").squeeze(1)
    b = map_boxes(work, threshold, rule)
    valid = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    x0, y0, x1, y1 = b.unbind(1)
    wh, ww = work.shape[-2:]
    if (wh, ww) != (h, w):
        x0 = torch.div(x0 * w, ww, rounding_mode="floor")
        y0 = torch.div(y0 * h, wh, rounding_mode="floor")
        x1 = -torch.div(-x1 * w, ww, rounding_mode="floor")  # ceil(x1_excl * W / w')
        y1 = -torch.div(-y1 * h, wh, rounding_mode="floor")
    box = torch.stack((x0, y0, x1.clamp(max=w), y1.clamp(max=h)), dim=1)
    return torch.where(valid.view(-1, 1), box, torch.zeros_like(box)), valid


def scale_box(box: Sequence[int], src: Tuple[int, int], dst: Tuple[int, int]) -> list:
    """Map a box ``[x0, y0, x1, y1]`` (exclusive ends, pixel edges) from an image of size src=(W, H) to dst=(W', H').

    Edges scale linearly and round outwards, in exact integer arithmetic: x0' = floor(x0 W'/W),
    x1' = ceil(x1 W'/W) (y likewise), clamped to [0, W'] x [0, H'].
    """
    (sw, sh), (dw, dh) = src, dst
    x0, y0, x1, y1 = (int(v) for v in box)
    out = [x0 * dw // sw, y0 * dh // sh, -(-x1 * dw // sw), -(-y1 * dh // sh)]
    out[0] = min(max(out[0], 0), dw)
    out[2] = min(max(out[2], out[0]), dw)
    out[1] = min(max(out[1], 0), dh)
    out[3] = min(max(out[3], out[1]), dh)
    return out


def scale_point(xy: Sequence[int], src: Tuple[int, int], dst: Tuple[int, int]) -> list:
    """Map a pixel (x, y) between image sizes through pixel centres: x' = floor((x + 0.5) W'/W - 0.5 + 0.5)."""
    import math

    x = math.floor((xy[0] + 0.5) * dst[0] / src[0])
    y = math.floor((xy[1] + 0.5) * dst[1] / src[1])
    return [min(max(x, 0), dst[0] - 1), min(max(y, 0), dst[1] - 1)]


# -- volumes: overlays of chosen slices ------------------------------------------------------


def overlay_slices(
    volume: torch.Tensor,
    map: torch.Tensor,  # noqa: A002 - same name as overlay()
    slices: Optional[Sequence[int]] = None,
    axis: int = 0,
    alpha: float = 0.5,
    colormap: str = "jet",
) -> Image.Image:
    """Overlays of chosen slices of a volume, side by side: one :func:`overlay` per slice.

    ``volume`` (D, H, W) grey or (C, D, H, W) with C = 1 or 3, any range (each slice shown min-max
    scaled over the whole volume); ``map`` (D, H, W) in [0, 1] at the volume's size (e.g. ``res.maps[i, k]``
    of a 3-D model). ``axis`` picks the slicing axis of (D, H, W) (0: axial D, 1: H, 2: W); ``slices``
    the indices along it (default: 5 evenly spaced, and always the slice holding the map's maximum).
    """
    v = torch.as_tensor(volume).detach().float().cpu()
    m = torch.as_tensor(map).detach().float().cpu()
    if v.dim() == 4:
        if v.shape[0] not in (1, 3):
            raise ValueError(f"volume (C, D, H, W) needs C = 1 or 3; got shape {tuple(v.shape)}.")
    elif v.dim() == 3:
        v = v.unsqueeze(0)
    else:
        raise ValueError(f"volume must be (D, H, W) or (C, D, H, W); got shape {tuple(v.shape)}.")
    if m.shape != v.shape[1:]:
        raise ValueError(
            f"map must be (D, H, W) = {tuple(v.shape[1:])}, the volume's size; got {tuple(m.shape)}."
        )
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (of D, H, W); got {axis!r}.")
    size = m.shape[axis]
    if slices is None:
        peak = int(torch.nonzero(m == m.max())[0, axis])
        slices = sorted(set(torch.linspace(0, size - 1, 5).round().long().tolist()) | {peak})
    slices = list(slices)
    bad = [s for s in slices if not -size <= s < size]
    if not slices or bad:
        raise ValueError(
            f"slices {bad or slices} are out of range for axis {axis} of size {size} (0..{size - 1})."
        )
    lo, hi = v.min(), v.max()
    v = (v - lo) / (hi - lo) if hi > lo else torch.zeros_like(v)
    tiles = []
    for s in slices:
        img = v.select(axis + 1, s)
        rgb = (img.expand(3, -1, -1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        tiles.append(overlay(Image.fromarray(rgb), m.select(axis, s), alpha=alpha, colormap=colormap))
    gap = 4
    out = Image.new(
        "RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1), tiles[0].height), (255, 255, 255)
    )
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + gap
    return out
