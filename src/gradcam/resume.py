"""Resume: is a photo's output up to date, or must it be recomputed?

``gradcam explain`` skips a photo only when the *record* next to its outputs says they were made from
the same input file, the same model and weights, and the same result-changing options, and every output
it lists is still there, of the recorded size and readable. Anything else (a changed option, a touched
input, a replaced weights file, a missing, empty, truncated or unreadable output, a missing or unreadable
record) recomputes that photo.

The record of ``OUT/<stem>.png`` is ``OUT/.gradcam/<stem>.json`` (a hidden folder, so that folder searches
never take it for input), written atomically after the outputs, with or without ``--json``::

    {"fingerprint": {"input": {...}, "options": {...}, "version": 1},
     "outputs": {"cat.png": 123456, "cat.json": 2345}}

Files are identified by ``(resolved path, size, mtime_ns)`` (:func:`file_stamp`), not by a content hash:
an edit that keeps size and modification time to the nanosecond is not detected. Objects in object storage
(``s3://...``, see :mod:`gradcam.storage`) by ``(URL, size, ETag)`` (the modification time on stores
without ETags); their outputs are checked by size (an object is written whole, never in part).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from . import storage

RECORD_DIR = ".gradcam"
FORMAT = 1  # bump when the meaning of a record changes: every old record then reads as stale
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def file_stamp(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """``{"path": realpath, "size": bytes, "mtime_ns": ns}`` of a file, ``None`` for ``None``.

    A path that does not exist gets ``{"path": path, "missing": True}`` (still a stable key).
    """
    if path is None:
        return None
    path = os.fspath(path)
    if storage.is_remote(path):
        return storage.stamp(path)
    try:
        st = os.stat(path)
    except OSError:
        return {"path": path, "missing": True}
    return {"path": os.path.realpath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def fingerprint(
    path: Optional[str], options: Mapping[str, Any], stamp: Optional[Mapping[str, Any]] = None
) -> Dict[str, Any]:
    """What made an output: the input file's :func:`file_stamp` (or the given ``stamp``, e.g. an object's
    from its listing) and every result-changing option.

    ``options`` must be JSON-ready (strings, numbers, bools, None, lists, dicts); put file stamps of
    model/weights files in it (see :func:`file_stamp`). The returned dict round-trips through JSON
    unchanged, so ``fingerprint(...) == json.loads(json.dumps(fingerprint(...)))``.
    """
    fp = {
        "version": FORMAT,
        "input": file_stamp(path) if stamp is None else dict(stamp),
        "options": dict(options),
    }
    return json.loads(json.dumps(fp, sort_keys=True))  # normalise (tuples -> lists, key order)


def record_path(out: str, stem: str) -> str:
    """The record of the outputs of ``stem`` in folder ``out``: ``out/.gradcam/<stem>.json``."""
    return storage.join(out, RECORD_DIR, stem + ".json")


def output_ok(path: str, size: Optional[int] = None) -> bool:
    """``path`` exists, is non-empty, has ``size`` bytes (when given) and is readable as what it claims.

    PNG: signature at the start and the ``IEND`` chunk at the end (a cut file lacks it); JSON: parses.
    Other files: non-empty and of the recorded size. An object in object storage: non-empty and of the
    recorded size (one HEAD request; objects are written whole).
    """
    if storage.is_remote(path):
        try:
            n = storage.size(path)
        except OSError:
            return False
        return bool(n) and (size is None or n == size)
    try:
        st = os.stat(path)
        if st.st_size == 0 or (size is not None and st.st_size != size):
            return False
        with open(path, "rb") as f:
            if path.lower().endswith(".png"):
                head = f.read(8)
                f.seek(-8, os.SEEK_END)
                return head == _PNG_SIGNATURE and f.read(8) == _PNG_END
            if path.lower().endswith(".json"):
                json.loads(f.read().decode("utf-8"))
        return True
    except (OSError, ValueError):
        return False


def is_up_to_date(record: str, fp: Mapping[str, Any], outputs: Sequence[str]) -> bool:
    """True when ``record`` was written for fingerprint ``fp`` and exactly ``outputs``, all still intact.

    ``outputs`` are the paths the current options would write (next to the record's folder); each must
    pass :func:`output_ok` with the size recorded when it was written.
    """
    try:
        rec = json.loads(storage.read_bytes(record).decode("utf-8"))
        if rec.get("fingerprint") != fp:
            return False
        sizes = rec["outputs"]
        if sorted(sizes) != sorted(os.path.basename(p) for p in outputs):
            return False
        return all(output_ok(p, sizes[os.path.basename(p)]) for p in outputs)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def write_record(
    record: str,
    fp: Mapping[str, Any],
    outputs: Sequence[str],
    sizes: Optional[Mapping[str, int]] = None,
    storage_options: Optional[Mapping[str, Any]] = None,
) -> None:
    """Write ``record`` (whole, atomically on disk) for outputs already written: the fingerprint and each
    output's size (``sizes`` by path when known, else read from the files)."""
    got = {os.path.basename(p): (sizes[p] if sizes and p in sizes else storage.size(p)) for p in outputs}
    data = json.dumps({"fingerprint": dict(fp), "outputs": got}, indent=1, sort_keys=True) + "\n"
    storage.write_bytes(record, data.encode(), storage_options)
