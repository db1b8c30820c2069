"""Where the folder job reads and writes: local paths, or object storage through fsspec URLs.

A *remote* path is a URL whose protocol is not ``file`` (``s3://bucket/photos``, ``gs://...``, ``az://...``,
``memory://...``); a plain path or a ``file://`` URL is a local path, and every local operation is the one
the folder job has always done (atomic rename on write, ``os.stat`` stamps), so local outputs are byte for
byte what they were. Remote operations go through ``fsspec`` with the run's *storage options* (for S3,
s3fs's keyword arguments such as ``{"endpoint_url": ..., "key": ..., "secret": ...}``); credentials and
endpoints may as well come from the backend's standard environment (for S3: ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

- :func:`iter_files` lists the objects under a prefix as a stream (one page of at most :data:`PAGE` keys
  in memory at a time; never the whole listing), each with its :func:`stamp`;
- :func:`read_bytes`, :func:`write_bytes` (a whole object in one request: object stores have no rename, a
  reader sees the old object or the new one, never a part), :func:`exists`, :func:`remove`, :func:`size`;
- :func:`stamp`: what identifies one version of an input for resume: size and ETag (or modification time).

Each function takes ``storage_options`` (``None``: the process default set by :func:`configure`, which the
folder job sets at the start of a run and each Ray worker at its start).
"""

from __future__ import annotations

import os
import posixpath
import threading
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

PAGE = 1000
"""Keys fetched per listing request (S3's own page size): the most a listing holds at once."""

_DEFAULT: Dict[str, Any] = {}
_LOCK = threading.Lock()
_EXTRAS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
}


def configure(storage_options: Optional[Mapping[str, Any]]) -> None:
    """Set the process default storage options (what ``storage_options=None`` means in this module)."""
    with _LOCK:
        _DEFAULT.clear()
        _DEFAULT.update(dict(storage_options or {}))


def default_options() -> Dict[str, Any]:
    """A copy of the process default storage options (see :func:`configure`)."""
    with _LOCK:
        return dict(_DEFAULT)


def protocol(path: str) -> Optional[str]:
    """The URL protocol of ``path`` (``"s3"``), or ``None`` for a plain path."""
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head and head.replace("+", "").replace("-", "").isalnum() else None


def is_remote(path: Any) -> bool:
    """True for a URL of a protocol other than ``file`` (object storage, memory, ...)."""
    return protocol(os.fspath(path)) not in (None, "file", "local")


def local_path(path: Any) -> str:
    """``path`` as a plain local path (a ``file://`` URL loses its scheme; anything else is unchanged)."""
    path = os.fspath(path)
    return path[len("file://") :] if protocol(path) in ("file", "local") else path


def join(base: str, *parts: str) -> str:
    """``base`` joined with ``parts``: ``/``-separated for URLs, the OS's rule for local paths."""
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def filesystem(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> Tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` for a URL; the error names the extra to install."""
    opts = default_options() if storage_options is None else dict(storage_options)
    try:
        import fsspec.core
    except ImportError as e:  # pragma: no cover - fsspec is a core dependency
        raise ImportError("Object storage URLs need fsspec: pip install fsspec.") from e
    try:
        return fsspec.core.url_to_fs(path, **opts)
    except ImportError as e:
        extra = _EXTRAS.get(protocol(path) or "")
        hint = f'pip install "gradcam[{extra}]"' if extra else f"install fsspec's backend for {path}"
        raise ImportError(f"Reading {path} needs fsspec's backend for it: {hint} ({e}).") from e


def read_bytes(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> bytes:
    """The whole content of a file or object."""
    if not is_remote(path):
        with open(local_path(path), "rb") as f:
            return f.read()
    fs, p = filesystem(path, storage_options)
    return fs.cat_file(p)


def write_bytes(path: str, data: bytes, storage_options: Optional[Mapping[str, Any]] = None) -> None:
    """Write ``data`` to ``path`` whole: locally a temporary file renamed over it (atomic); on an object
    store one PUT of the whole object (a reader sees the old object or the new one, never a part)."""
    if not is_remote(path):
        from .io import atomic_write

        atomic_write(local_path(path), data)
        return
    fs, p = filesystem(path, storage_options)
    fs.pipe_file(p, data)


def exists(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> bool:
    """True when the file or object exists (a local dangling symlink counts, as ``os.path.lexists``)."""
    if not is_remote(path):
        return os.path.lexists(local_path(path))
    fs, p = filesystem(path, storage_options)
    return bool(fs.exists(p))


def remove(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> None:
    """Delete a file or object; one that is already gone is no error."""
    if not is_remote(path):
        try:
            os.unlink(local_path(path))
        except FileNotFoundError:
            pass
        return
    fs, p = filesystem(path, storage_options)
    try:
        fs.rm_file(p)
    except FileNotFoundError:
        pass


def size(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> Optional[int]:
    """The size in bytes of a file or object, ``None`` when it does not exist."""
    try:
        if not is_remote(path):
            return os.stat(local_path(path)).st_size
        fs, p = filesystem(path, storage_options)
        return int(fs.info(p)["size"])
    except (FileNotFoundError, KeyError):
        return None


def _version(info: Mapping[str, Any]) -> Dict[str, Any]:
    """What identifies one version of an object in its listing/HEAD info: the ETag, else its modification time."""
    for key in ("ETag", "etag"):
        if info.get(key):
            return {"etag": str(info[key]).strip('"')}
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            return {"mtime": str(info[key])}
    return {}


def stamp_of(url: str, info: Mapping[str, Any]) -> Dict[str, Any]:
    """The resume stamp of the remote object ``url`` from its listing or HEAD ``info``: ``{"path", "size",
    "etag"}`` (``"mtime"`` on stores without ETags). The listing's and HEAD's stamps of one object are equal."""
    return {"path": url, "size": int(info.get("size", info.get("Size", 0)) or 0), **_version(info)}


def stamp(url: str, storage_options: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The resume stamp of a remote object (one HEAD request); ``{"path", "missing": True}`` when absent."""
    fs, p = filesystem(url, storage_options)
    try:
        info = fs.info(p)
    except FileNotFoundError:
        return {"path": url, "missing": True}
    return stamp_of(url, info)


def _url(fs: Any, root_url: str, root: str, name: str) -> str:
    """The URL of listed ``name`` (a path within ``fs``), spelled like ``root_url``."""
    rel = name[len(root) :].lstrip("/") if name.startswith(root) else name
    return posixpath.join(root_url.rstrip("/"), rel) if rel else root_url


def iter_files(
    url: str, storage_options: Optional[Mapping[str, Any]] = None
) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """``(url, info)`` of every object under the prefix ``url`` (recursively), streamed.

    On S3 one ``ListObjectsV2`` page (:data:`PAGE` keys) is fetched at a time, in key order; on other stores
    one folder at a time (``fs.walk``). Never the whole listing in memory, and nothing cached.
    """
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    if hasattr(fs, "_iterdir") and hasattr(fs, "split_path"):  # s3fs: ListObjectsV2 pages
        yield from _s3_pages(fs, url, root)
        return
    for folder, _dirs, files in fs.walk(root, detail=True):
        for name in sorted(files):
            info = files[name]
            full = info.get("name") or posixpath.join(folder, name)
            yield _url(fs, url, root, full), info


def _s3_pages(fs: Any, url: str, root: str) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """The keys under ``root`` page by page: each page is fetched on fsspec's event loop when the last ran out."""
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(root)
    try:  # the prefix may be one object: list it alone
        info = fs.info(root)
        if info.get("type") == "file":
            yield url, info
            return
    except FileNotFoundError:
        pass
    prefix = key + "/" if key else ""
    agen = fs._iterdir(bucket, delimiter="", prefix=prefix)

    async def page() -> list:
        got = []
        async for info in agen:
            got.append(info)
            if len(got) >= PAGE:
                break
        return got

    while True:
        batch = sync(fs.loop, page)
        for info in batch:
            if info.get("type") == "file":
                yield _url(fs, url, root, info["name"]), info
        if len(batch) < PAGE:
            return


def is_folder(path: str, storage_options: Optional[Mapping[str, Any]] = None) -> bool:
    """True for a local folder, or a remote prefix that is not a single object."""
    if not is_remote(path):
        return os.path.isdir(local_path(path))
    fs, p = filesystem(path, storage_options)
    try:
        return fs.info(p).get("type") != "file"
    except FileNotFoundError:
        return False


def list_names(folder: str, storage_options: Optional[Mapping[str, Any]] = None) -> list:
    """The names (not paths) of the files directly in ``folder``, sorted; ``[]`` when it does not exist."""
    if not is_remote(folder):
        p = local_path(folder)
        return sorted(os.listdir(p)) if os.path.isdir(p) else []
    fs, p = filesystem(folder, storage_options)
    try:
        found = fs.ls(p, detail=True, refresh=True) if _takes_refresh(fs) else fs.ls(p, detail=True)
    except FileNotFoundError:
        return []
    return sorted(posixpath.basename(i["name"].rstrip("/")) for i in found if i.get("type") == "file")


def _takes_refresh(fs: Any) -> bool:
    import inspect

    try:
        return "refresh" in inspect.signature(fs.ls).parameters
    except (TypeError, ValueError):
        return False


def list_items(
    url: str,
    exclude: Sequence[str] = (),
    extensions: Sequence[str] = (),
    storage_options: Optional[Mapping[str, Any]] = None,
) -> Iterator[Any]:
    """The inputs under the prefix ``url`` as :class:`gradcam.io.Item` s, streamed from :func:`iter_files`.

    As a local folder search: keys whose name ends with one of ``extensions`` (any key when empty), names
    with a hidden part (``.gradcam/...``) and keys under an ``exclude`` prefix (the output folder) skipped;
    the stem is the key relative to ``url`` without its extension. Each item carries its listing
    :func:`stamp_of`. A ``url`` that is one object is that object (whatever its extension).
    """
    from .io import Item

    wanted = tuple(e.lower() for e in extensions)
    skip = tuple(e.rstrip("/") + "/" for e in exclude if is_remote(e))
    root = url.rstrip("/")
    for key_url, info in iter_files(url, storage_options):
        if key_url == root:
            name = posixpath.basename(root)
            yield Item(key_url, posixpath.splitext(name)[0], stamp_of(key_url, info))
            continue
        rel = key_url[len(root) + 1 :]
        if key_url.startswith(skip) or any(part.startswith(".") for part in rel.split("/")):
            continue
        if wanted and not rel.lower().endswith(wanted):
            continue
        yield Item(key_url, posixpath.splitext(rel)[0], stamp_of(key_url, info))
