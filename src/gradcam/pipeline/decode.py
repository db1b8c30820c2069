"""Decode one input file within the job's size limits, without leaving PIL's global limit changed.

PIL refuses any file over twice ``PIL.Image.MAX_IMAGE_PIXELS`` (a module global, about 179 megapixels by
default). When the job allows more (``max_megapixels``), :func:`pil_limit` raises PIL's limit only while
one file is opened and puts the old value back afterwards (under a lock, counted, so overlapping decodes
in several threads restore it once the last one ends).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Optional, Tuple

from ..io import Item

_LOCK = threading.Lock()


class _Active:
    count: int = 0  # open pil_limit blocks that raised the limit
    saved: Optional[int] = None  # PIL's limit before the first of them


@contextlib.contextmanager
def pil_limit(max_pixels: Optional[int]) -> Iterator[None]:
    """Within the block, PIL opens files of up to ``max_pixels`` pixels (when that exceeds its own limit).

    Outside every such block ``PIL.Image.MAX_IMAGE_PIXELS`` has the value it had before: nothing is left set.
    """
    from PIL import Image

    raise_it = max_pixels is not None and max_pixels > 2 * (Image.MAX_IMAGE_PIXELS or 0)
    if not raise_it:
        yield
        return
    with _LOCK:
        if _Active.count == 0:
            _Active.saved = Image.MAX_IMAGE_PIXELS
        _Active.count += 1
        Image.MAX_IMAGE_PIXELS = max(int(max_pixels or 0), Image.MAX_IMAGE_PIXELS or 0)
    try:
        yield
    finally:
        with _LOCK:
            _Active.count -= 1
            if _Active.count == 0:
                Image.MAX_IMAGE_PIXELS = _Active.saved


def load(item: Item, max_pixels: Optional[int]) -> Tuple[Any, Optional[str]]:
    """``(RGB PIL image, None)`` of a photo, or ``(None, reason)`` when it cannot be read.

    A file whose header declares more than ``max_pixels`` pixels is refused before decoding (``None``: no
    limit of ours); any decoder failure is this file's failure, never the run's. A URL (``s3://...``) is
    read whole from its store here, by whoever decodes it (a Ray task, the local decode thread).
    """
    from .. import storage
    from ..image import ImageLoadError, load_image, load_image_bytes

    try:
        if storage.is_remote(item.path):
            data, reason = _read(item.path)
            if data is None:
                return None, reason
            with pil_limit(max_pixels):
                return load_image_bytes(data, item.path, max_pixels=max_pixels), None
        with pil_limit(max_pixels):
            return load_image(item.path, max_pixels=max_pixels), None
    except ImageLoadError as e:
        return None, e.reason
    except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem, not the run's
        return None, f"cannot read ({type(e).__name__}: {e})"


def _read(url: str) -> Tuple[Optional[bytes], Optional[str]]:
    """``(bytes, None)`` of an object, or ``(None, reason)`` when it cannot be read (the process's storage
    options: :func:`gradcam.storage.configure`)."""
    from .. import storage

    try:
        return storage.read_bytes(url), None
    except FileNotFoundError:
        return None, "no such file"
    except Exception as e:  # noqa: BLE001 - a store error is this file's problem, not the run's
        return None, f"cannot read the file ({type(e).__name__}: {e})"
