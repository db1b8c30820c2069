"""One index of all results of an output folder: a table with one row per photo and explained class.

Both engines of ``gradcam explain`` (the local loop and Ray) keep it. While a run goes, every finished batch
adds a small part file under ``<out>/.gradcam-index/`` (written atomically), so an interrupted run keeps
what it did; at the end of a run :func:`compact` merges the parts into ``<out>/index.parquet`` (or
``<out>/index.jsonl`` when pyarrow is not installed), where the newest rows of a photo (by its output
stem) replace its older ones, and removes the parts. :func:`read_index` reads the index and any parts
left by an interrupted run, newest rows winning, so it is always up to date.

Columns (see :data:`COLUMNS`): ``file``, ``stem`` (the outputs' name), ``width``, ``height``, ``rank``
(1 = the first explained class), ``class``, ``class_id``, ``score`` (the logit), ``probability``,
``peak`` ``[x, y]``, ``box`` ``[x0, y0, x1, y1]`` (``None`` for a flat map), ``box_fraction`` (box area /
photo area), ``layer``, ``method``, ``model``, ``overlay``, ``record`` and ``maps`` (output paths), ``error`` (the
failure reason; a photo that failed has one row with ``error`` set and no class) and ``updated`` (unix
time the row was written) and ``predictions`` (the photo's top-5 as a JSON string of
``[{"class", "id", "probability"}]``, so that a report needs no per-photo record).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Sequence

from . import storage
from .io import atomic_write

PARTS = ".gradcam-index"
COLUMNS = (
    "file",
    "stem",
    "width",
    "height",
    "rank",
    "class",
    "class_id",
    "score",
    "probability",
    "peak",
    "box",
    "box_fraction",
    "layer",
    "method",
    "model",
    "overlay",
    "record",
    "maps",
    "error",
    "updated",
    "predictions",
)


def has_parquet() -> bool:
    """True when pyarrow is installed (the index is then Parquet, otherwise JSON Lines). Looked up, not imported:
    importing pyarrow costs some 0.25-0.4 s, which a run pays only when it writes its first index part."""
    return importlib.util.find_spec("pyarrow") is not None


def index_path(out: str, parquet: Optional[bool] = None) -> str:
    """``<out>/index.parquet`` (pyarrow installed) or ``<out>/index.jsonl``."""
    parquet = has_parquet() if parquet is None else parquet
    return storage.join(out, "index.parquet" if parquet else "index.jsonl")


def result_rows(
    res, stem: str, overlays: Sequence[str], record: Optional[str], maps: Optional[str] = None
) -> List[Dict]:
    """The index rows of one explained photo (an :class:`gradcam.api.ImageResult`): one per explained class.

    ``box_fraction`` = (x1 - x0) * (y1 - y0) / (W * H) of the class's box (0 for a flat map).
    """
    w, h = res.size
    now = time.time()
    top5 = json.dumps(
        [{"class": c, "id": int(i), "probability": round(float(q), 6)} for c, i, q in res.predictions]
    )
    rows = []
    for r, (c, cid, s, p, pk, bx) in enumerate(
        zip(res.classes, res.class_ids, res.scores, res.probabilities, res.peaks, res.boxes)
    ):
        frac = 0.0 if bx is None else (bx[2] - bx[0]) * (bx[3] - bx[1]) / float(w * h)
        rows.append(
            {
                "file": res.source,
                "stem": stem,
                "width": int(w),
                "height": int(h),
                "rank": r + 1,
                "class": c,
                "class_id": int(cid),
                "score": float(s),
                "probability": float(p),
                "peak": None if pk is None else [int(v) for v in pk],
                "box": None if bx is None else [int(v) for v in bx],
                "box_fraction": float(frac),
                "layer": res.layer,
                "method": res.method,
                "model": res.model,
                "overlay": overlays[r] if r < len(overlays) else None,
                "record": record,
                "maps": maps,
                "error": None,
                "updated": now,
                "predictions": top5,
            }
        )
    return rows


def failure_row(path: str, stem: str, reason: Optional[str], model: str = "", method: str = "") -> Dict:
    """The index row of a photo that could not be explained (``error`` = the reason)."""
    row = dict.fromkeys(COLUMNS)
    row.update(file=path, stem=stem, error=reason, model=model, method=method, updated=time.time())
    return row


def _schema():
    import pyarrow as pa

    ints = pa.list_(pa.int64())
    return pa.schema(
        [
            ("file", pa.string()),
            ("stem", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("rank", pa.int64()),
            ("class", pa.string()),
            ("class_id", pa.int64()),
            ("score", pa.float64()),
            ("probability", pa.float64()),
            ("peak", ints),
            ("box", ints),
            ("box_fraction", pa.float64()),
            ("layer", pa.string()),
            ("method", pa.string()),
            ("model", pa.string()),
            ("overlay", pa.string()),
            ("record", pa.string()),
            ("maps", pa.string()),
            ("error", pa.string()),
            ("updated", pa.float64()),
            ("predictions", pa.string()),
        ]
    )


def _encode(rows: Sequence[Dict], parquet: bool) -> bytes:
    lines = "".join(json.dumps({c: r.get(c) for c in COLUMNS}) + "\n" for r in rows).encode()
    if not parquet:
        return lines
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(_arrow_table(rows, lines), buf)
    return buf.getvalue()


def _arrow_table(rows: Sequence[Dict], lines: bytes):
    """The rows as an Arrow table of :func:`_schema`, parsed from their JSON lines by Arrow's own reader: building
    it from Python objects (``Table.from_pylist``) makes pyarrow import pandas, when installed, to check each value's
    type (0.4-0.7 s, once per process). Values JSON cannot carry exactly (NaN) take the Python-object path."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        options = pj.ParseOptions(explicit_schema=_schema(), unexpected_field_behavior="error")
        return pj.read_json(io.BytesIO(lines), parse_options=options)
    except pa.ArrowInvalid:
        return pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows], schema=_schema())


def _decode(path: str, storage_options: Any = None) -> List[Dict]:
    if storage.is_remote(path):
        data = storage.read_bytes(path, storage_options)
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            return pq.ParquetFile(io.BytesIO(data)).read().to_pylist()
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        # one file: ParquetFile, not read_table, which imports pyarrow.dataset (0.4 s) to read a dataset
        return pq.ParquetFile(path).read().to_pylist()
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def append(out: str, rows: Sequence[Dict], storage_options: Any = None) -> Optional[str]:
    """Add ``rows`` (one finished batch) to ``out``'s index as a new part file, atomically; returns its path.

    Safe from many processes at once (each part has a unique name); nothing is written for no rows. With
    ``out`` in object storage the part is one whole object (``storage_options``: see :mod:`gradcam.storage`).
    """
    if not rows:
        return None
    parquet = has_parquet()
    name = (
        f"part-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.{'parquet' if parquet else 'jsonl'}"
    )
    path = storage.join(out, PARTS, name)
    if storage.is_remote(path):
        storage.write_bytes(path, _encode(rows, parquet), storage_options)
    else:
        atomic_write(path, _encode(rows, parquet))
    return path


def _parts(out: str, storage_options: Any = None) -> List[str]:
    folder = storage.join(out, PARTS)
    # Names start with the write time in ns: sorted names are in write order.
    return [
        storage.join(folder, f)
        for f in storage.list_names(folder, storage_options)
        if f.startswith("part-") and f.endswith((".parquet", ".jsonl"))
    ]


def _merge(tables: Iterable[List[Dict]]) -> List[Dict]:
    """Rows of tables given oldest first; a stem's rows in a later table replace all its earlier rows."""
    by_stem: Dict[str, List[Dict]] = {}
    for rows in tables:
        fresh: Dict[str, List[Dict]] = {}
        for r in rows:
            fresh.setdefault(r["stem"], []).append(r)
        by_stem.update(fresh)
    merged = [r for stem in sorted(by_stem) for r in sorted(by_stem[stem], key=lambda r: r.get("rank") or 0)]
    return [{c: r.get(c) for c in COLUMNS} for r in merged]


def _content(rows: List[Dict]) -> List[Dict]:
    """Rows as compared by :func:`compact`: a failure retried with the same reason is no change."""
    return [{c: v for c, v in r.items() if c != "updated" or r.get("error") is None} for r in rows]


def read_index(out: str, storage_options: Any = None) -> List[Dict]:
    """All index rows of ``out`` (the compacted index plus parts of a run in progress), sorted by stem, rank.

    ``out`` may be a URL (``s3://bucket/results``; ``storage_options``: see :mod:`gradcam.storage`)."""
    so = storage_options
    tables = [
        _decode(p, so) for p in (index_path(out, True), index_path(out, False)) if storage.exists(p, so)
    ]
    return _merge(tables + [_decode(p, so) for p in _parts(out, so)])


def compact(out: str, storage_options: Any = None) -> Optional[str]:
    """Merge ``out``'s part files into its one index file (newest rows of a photo win); remove the parts.

    Returns the index's path (``None`` when there is nothing to index). Run once at the end of a run. When
    the merged rows equal the index's (failures retried with the same reasons, nothing explained), the file
    is left untouched.
    """
    so = storage_options
    parts = _parts(out, so)
    rows = read_index(out, so)
    if not rows and not parts:
        return None
    parquet = has_parquet()
    path = index_path(out, parquet)
    old = _merge([_decode(path, so)]) if storage.exists(path, so) else None
    if old is None or _content(old) != _content(rows):  # a rerun that only retried failures leaves it alone
        if storage.is_remote(path):
            storage.write_bytes(path, _encode(rows, parquet), so)
        else:
            atomic_write(path, _encode(rows, parquet))
    other = index_path(out, not parquet)
    if storage.exists(other, so):
        storage.remove(other, so)
    for p in parts:
        storage.remove(p, so)
    if not storage.is_remote(out):
        try:
            os.rmdir(os.path.join(out, PARTS))
        except OSError:
            pass
    return path
