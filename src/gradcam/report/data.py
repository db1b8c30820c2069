"""Reading a results folder: the per-photo JSON records, the results index, the failure list, the evaluation.

A folder written by ``gradcam explain --json`` holds one JSON record per photo (see
:meth:`gradcam.api.ImageResult.to_dict`) beside its overlay PNGs, and ``failures.json`` (the files that could
not be explained, with the reason). A results index (``index.jsonl`` or ``index.parquet``, one row per photo
and explained class) is read instead of the records when present and readable. ``gradcam evaluate --out``
writes ``evaluation.json``. Everything here is tolerant: unknown keys are ignored, missing ones are left out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from .volumes import is_volume_record, is_volume_row

INDEX_NAMES = ("index.jsonl", "index.parquet")
FAILURES = "failures.json"
EVALUATION = "evaluation.json"
SKIP_DIRS = ("report-thumbs",)


@dataclass
class Frame:
    """One explained class of one photo by one method: its overlay and where the map peaks."""

    method: str
    cls: str
    cid: Optional[int]
    probability: Optional[float]
    score: Optional[float]
    peak: Optional[List[int]]
    box: Optional[List[int]]
    overlay: Optional[str]  # path relative to the results folder, '/'-separated


@dataclass
class Photo:
    """One photo: its name, size, top-5 predictions and every frame (method x class) explained for it."""

    file: str
    size: Optional[Tuple[int, int]]
    predictions: List[Tuple[str, Optional[int], Optional[float]]]
    frames: List[Frame] = field(default_factory=list)
    model: str = ""
    layer: str = ""


def _rel(folder: str, path: str) -> str:
    return os.path.relpath(path, folder).replace(os.sep, "/")


def _num(v, kind=float):
    try:
        return None if v is None else kind(v)
    except (TypeError, ValueError):
        return None


def _pair(v) -> Optional[List[int]]:
    if isinstance(v, (list, tuple)) and len(v) in (2, 4) and all(isinstance(a, (int, float)) for a in v):
        return [int(a) for a in v]
    return None


def _record_files(folder: str) -> Iterable[str]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for f in sorted(files):
            if f.endswith(".json") and f not in (FAILURES, EVALUATION):
                yield os.path.join(root, f)


def _guess_overlays(json_path: str, k: int) -> List[str]:
    base = os.path.splitext(json_path)[0]
    if os.path.basename(os.path.dirname(json_path)) == ".gradcam":  # a hidden record beside the outputs
        base = os.path.join(os.path.dirname(os.path.dirname(json_path)), os.path.basename(base))
    return [base + ".png"] if k == 1 else [f"{base}.top{r + 1}.png" for r in range(k)]


def photo_from_record(rec: dict, folder: str, json_path: str) -> Optional[Photo]:
    """A :class:`Photo` from one per-photo JSON record (``None`` if it is not an explain record)."""
    if not isinstance(rec, dict) or not isinstance(rec.get("explanations"), list) or is_volume_record(rec):
        return None  # a volume's record is shown as slice strips (gradcam.report.volumes)
    exps = [e for e in rec["explanations"] if isinstance(e, dict)]
    names = rec.get("overlays")
    here = os.path.dirname(json_path)
    if isinstance(names, list) and len(names) == len(exps):
        up = os.path.dirname(here)  # a record in a hidden folder (.gradcam/) names outputs beside that folder
        paths = [
            os.path.join(here, str(n))
            if os.path.isfile(os.path.join(here, str(n))) or not os.path.basename(here).startswith(".")
            else os.path.join(up, str(n))
            for n in names
        ]
    else:
        paths = _guess_overlays(json_path, len(exps))
    method = str(rec.get("method", ""))
    frames = [
        Frame(
            method,
            str(e.get("class", "")),
            _num(e.get("id"), int),
            _num(e.get("probability")),
            _num(e.get("score")),
            _pair(e.get("peak")),
            _pair(e.get("box")),
            _rel(folder, p) if os.path.isfile(p) else None,
        )
        for e, p in zip(exps, paths)
    ]
    preds = [
        (str(p.get("class", "")), _num(p.get("id"), int), _num(p.get("probability")))
        for p in rec.get("predictions") or []
        if isinstance(p, dict)
    ]
    size = _pair(rec.get("size"))
    return Photo(
        str(rec.get("file") or os.path.basename(json_path)),
        (size[0], size[1]) if size else None,
        preds,
        frames,
        str(rec.get("model", "")),
        str(rec.get("layer", "")),
    )


def _merge(photos: Iterable[Photo]) -> List[Photo]:
    """Photos with the same file name become one (their frames side by side); duplicate frames are dropped."""
    out: Dict[str, Photo] = {}
    for p in photos:
        have = out.get(p.file)
        if have is None:
            out[p.file] = p
            continue
        seen = {(f.method, f.cid, f.cls): i for i, f in enumerate(have.frames)}
        for f in p.frames:
            i = seen.get((f.method, f.cid, f.cls))
            if i is None:
                have.frames.append(f)
            elif have.frames[i].overlay is None:  # the same frame from another record that found its overlay
                have.frames[i] = f
        have.predictions = have.predictions or p.predictions
    return list(out.values())


def read_records(folder: str) -> List[Photo]:
    """Every explained photo under ``folder`` from its per-photo JSON records (recursively)."""
    photos = []
    for path in _record_files(folder):
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        p = photo_from_record(rec, folder, path)
        if p is not None:
            photos.append(p)
    return _merge(photos)


def _index_rows(folder: str) -> Optional[List[dict]]:
    for name in INDEX_NAMES:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            if name.endswith(".jsonl"):
                with open(path, encoding="utf-8") as f:
                    return [json.loads(line) for line in f if line.strip()]
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).read().to_pylist()  # not read_table: it imports pyarrow.dataset
        except (ImportError, OSError, ValueError):
            continue
    return None


def _first(row: dict, *keys):
    for k in keys:
        if row.get(k) is not None:
            return row[k]
    return None


def photos_from_index(rows: List[dict], folder: str) -> Tuple[List[Photo], List[Tuple[str, str]]]:
    """Photos and failures from index rows (one per photo and explained class; failed photos carry a reason).

    Columns read (others are ignored): ``file``, ``size``, ``method``, ``model``, ``layer``, ``class``, ``id``,
    ``probability``, ``score``, ``peak``, ``box``, ``overlay`` (or ``output``), ``predictions`` (a list of
    {class, id, probability} or a JSON string of one), ``error`` (or ``failure``/``reason``).
    """
    photos: Dict[str, Photo] = {}
    failed: List[Tuple[str, str]] = []
    for row in rows:
        if not isinstance(row, dict) or is_volume_row(row):
            continue  # a volume's rows are shown as slice strips (gradcam.report.volumes)
        file = str(_first(row, "file", "path", "source") or "")
        reason = _first(row, "error", "failure", "reason")
        if reason:
            failed.append((file, str(reason)))
            continue
        if _first(row, "class", "class_name") is None:
            continue
        preds = row.get("predictions")
        if isinstance(preds, str):
            try:
                preds = json.loads(preds)
            except ValueError:
                preds = None
        p = photos.get(file)
        if p is None:
            size = _pair(row.get("size")) or _pair([row.get("width"), row.get("height")])
            p = photos[file] = Photo(
                file,
                (size[0], size[1]) if size else None,
                [],
                [],
                str(row.get("model") or ""),
                str(row.get("layer") or ""),
            )
        if not p.predictions and isinstance(preds, list):
            p.predictions = [
                (str(q.get("class", "")), _num(q.get("id"), int), _num(q.get("probability")))
                for q in preds
                if isinstance(q, dict)
            ]
        ov = _first(row, "overlay", "output", "png")
        if isinstance(ov, (list, tuple)):
            ov = ov[0] if ov else None
        ov_path = ov if ov is None or os.path.isabs(str(ov)) else os.path.join(folder, str(ov))
        if ov is not None and not os.path.isfile(ov_path) and os.path.isfile(str(ov)):
            ov_path = str(ov)  # a path relative to the working folder
        p.frames.append(
            Frame(
                str(row.get("method") or ""),
                str(_first(row, "class", "class_name")),
                _num(_first(row, "id", "class_id"), int),
                _num(row.get("probability")),
                _num(row.get("score")),
                _pair(row.get("peak")),
                _pair(row.get("box")),
                _rel(folder, ov_path) if ov_path and os.path.isfile(ov_path) else None,
            )
        )
    for p in photos.values():  # without top-5 predictions, the explained classes stand in for them
        if not p.predictions:
            p.predictions = [
                (f.cls, f.cid, f.probability)
                for f in sorted(p.frames, key=lambda f: -(f.probability or 0))[:5]
            ]
    return list(photos.values()), failed


def read_failures(folder: str) -> List[Tuple[str, str]]:
    """(file, reason) of every photo listed in ``failures.json`` (``[{"file":..., "reason":...}]``)."""
    path = os.path.join(folder, FAILURES)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    items = data.get("failures", []) if isinstance(data, dict) else data
    return [(str(d.get("file", "")), str(d.get("reason", ""))) for d in items if isinstance(d, dict)]


def read_evaluation(folder: str) -> Optional[dict]:
    """The contents of ``evaluation.json`` (``gradcam evaluate --out``), or ``None``."""
    try:
        with open(os.path.join(folder, EVALUATION), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("results"), dict) else None


def read_folder(folder: str) -> Tuple[List[Photo], List[Tuple[str, str]], Optional[dict]]:
    """(photos, failures, evaluation) of a results folder; the index is preferred to the records if present."""
    rows = _index_rows(folder)
    photos, failed = photos_from_index(rows, folder) if rows else ([], [])
    if not photos or not all(any(f.overlay for f in p.frames) for p in photos):
        photos = read_records(folder)  # no index, or one whose rows do not lead to the overlays
    seen = {f for f, _ in failed}
    failed += [(f, r) for f, r in read_failures(folder) if f not in seen]
    return photos, failed, read_evaluation(folder)
