"""Files: finding images in folders, naming outputs, writing them atomically."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

# Extensions PIL reads; anything else inside a folder is ignored (a file named explicitly is always tried).
IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
    ".tga",
    ".ico",
    ".dib",
    ".jp2",
    ".j2k",
    ".psd",
    ".sgi",
    ".pcx",
    ".xbm",
    ".im",
)


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@dataclass(frozen=True)
class Item:
    """One input photo and the stem of its outputs (``out/<stem>.png``, ``out/<stem>.json``).

    ``stamp``: for an object in object storage, its resume stamp from the listing (size and ETag; see
    :func:`gradcam.storage.stamp_of`), so that no further request is needed; not part of equality.
    """

    path: str
    stem: str
    stamp: Optional[Dict[str, Any]] = field(default=None, compare=False, hash=False)


DEMO_PHOTO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "chelsea.png")


def demo_photo() -> str:
    """The path of the demo photo shipped in the package: ``gradcam/data/chelsea.png`` (scikit-image's
    "Chelsea the cat", 451 x 300, CC0 by the photographer; see ``data/chelsea.LICENSE.txt``)."""
    return DEMO_PHOTO


def find_images(
    paths: Sequence[str],
    exclude: Sequence[str] = (),
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    remote: Optional[Callable[[str], Iterable[Item]]] = None,
) -> List[Item]:
    """Image files among ``paths`` (files as given; folders searched recursively, sorted, hidden names skipped).

    A file given directly gets the output stem ``<name without extension>``; a file found in folder F gets
    ``<path relative to F without extension>``. Stems shared by several inputs (``cat.jpg`` and ``cat.png``)
    keep their extension (``cat_jpg``, ``cat_png``) so no output overwrites another. A path that does not
    exist raises ``FileNotFoundError``. Folders in ``exclude`` (the output folder) are not searched, so
    that explaining ``.`` twice does not explain the first run's overlays. ``extensions``: the file endings a
    folder search picks up (default :data:`IMAGE_EXTENSIONS`; the folder job adds its other input kinds').
    ``remote``: lists a URL path (``s3://...``; see :func:`gradcam.storage.list_items`); without it a URL is
    taken as a local path.
    """
    skip = {os.path.realpath(e) for e in exclude}
    wanted = tuple(e.lower() for e in extensions)
    found: List[Item] = []
    for p in paths:
        p = os.fspath(p)
        if remote is not None and _is_url(p):
            found.extend(remote(p))
        elif os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(
                    d
                    for d in dirs
                    if not d.startswith(".") and os.path.realpath(os.path.join(root, d)) not in skip
                )
                if os.path.realpath(root) in skip:
                    continue
                for f in sorted(files):
                    if f.startswith(".") or not f.lower().endswith(wanted):
                        continue
                    full = os.path.join(root, f)
                    found.append(Item(full, os.path.splitext(os.path.relpath(full, p))[0]))
        elif os.path.lexists(p):
            found.append(Item(p, os.path.splitext(os.path.basename(p))[0]))
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    return _unique_stems(_dedupe(found))


def _is_url(path: str) -> bool:
    head, sep, _ = path.partition("://")
    return bool(sep and head.isalnum() and head.lower() not in ("file", "local"))


def _dedupe(items: Iterable[Item]) -> List[Item]:
    seen, out = set(), []
    for it in items:
        key = it.path if _is_url(it.path) else os.path.realpath(it.path)
        if key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _unique_stems(items: List[Item]) -> List[Item]:
    counts: dict = {}
    for it in items:
        counts[it.stem] = counts.get(it.stem, 0) + 1
    out, used = [], set()
    for it in items:
        stem = it.stem
        if counts[stem] > 1:
            ext = os.path.splitext(it.path)[1].lstrip(".").lower()
            stem = f"{stem}_{ext}" if ext else stem
        base, k = stem, 2
        while stem in used:
            stem = f"{base}_{k}"
            k += 1
        used.add(stem)
        out.append(Item(it.path, stem, it.stamp))
    return out


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``.

    A reader (or a rerun after an interruption) sees either no file or the complete file, never a part.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
