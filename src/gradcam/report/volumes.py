"""Volumes in the report: slice strips (axial, coronal, sagittal through the peak) for each explained class.

``gradcam explain`` writes, per volume and class, a montage PNG (the three planes through the map's peak,
the map blended) and a NIfTI heatmap, and describes them in its JSON record (``OUT/<stem>.json`` with
``--json``: it carries ``shape_dhw`` and, per explanation, ``peak``, ``peak_mm``, ``box``, ``montage`` and
``nifti``) and in the results index (``overlay`` is the montage, ``maps`` the ``.nii.gz``). The report shows
each volume as one row of those strips with the peak in voxels and millimetres, the 3-D box and a link to
the heatmap; every string is escaped, and the page stays static.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from html import escape
from typing import List, Optional
from urllib.parse import quote


@dataclass
class Strip:
    """One explained class of one volume: its montage and where the map peaks."""

    cls: str
    probability: Optional[float]
    method: str
    peak: Optional[List[int]]
    peak_mm: Optional[List[float]]
    box: Optional[List[int]]
    montage: Optional[str]  # paths relative to the report folder, '/'-separated
    nifti: Optional[str]


@dataclass
class VolumeEntry:
    """One explained volume: its file, shape (D, H, W), voxel size (x, y, z) in mm and its strips."""

    file: str
    shape: Optional[List[int]]
    voxel_mm: Optional[List[float]]
    model: str = ""
    layer: str = ""
    strips: List[Strip] = field(default_factory=list)


def is_volume_record(rec) -> bool:
    """Whether a JSON record was written for a volume (``gradcam explain`` on NIfTI, DICOM or ``.npy``)."""
    return isinstance(rec, dict) and "shape_dhw" in rec and isinstance(rec.get("explanations"), list)


def is_volume_row(row) -> bool:
    """Whether a results-index row describes a volume (its ``maps`` is a NIfTI heatmap)."""
    return isinstance(row, dict) and str(row.get("maps") or "").endswith((".nii.gz", ".nii"))


def _found(folder: str, path) -> Optional[str]:
    """``path`` (as written: relative to the working folder, to ``folder``, or absolute) relative to
    ``folder`` when the file exists, '/'-separated; ``None`` otherwise."""
    if not path:
        return None
    p = str(path)
    for cand in (p, os.path.join(folder, p), os.path.join(folder, os.path.basename(p))):
        if os.path.isfile(cand):
            return os.path.relpath(os.path.abspath(cand), os.path.abspath(folder)).replace(os.sep, "/")
    return None


def _ints(v, n: int) -> Optional[List[int]]:
    if isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(a, (int, float)) for a in v):
        return [int(a) for a in v]
    return None


def _floats(v, n: int) -> Optional[List[float]]:
    if isinstance(v, (list, tuple)) and len(v) == n and all(isinstance(a, (int, float)) for a in v):
        return [float(a) for a in v]
    return None


def _num(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def entry_from_record(rec: dict, folder: str) -> VolumeEntry:
    """A :class:`VolumeEntry` from a volume's JSON record (see :meth:`gradcam.medical.VolumeResult.to_dict`)."""
    method = str(rec.get("method", ""))
    strips = [
        Strip(
            str(e.get("class", "")),
            _num(e.get("probability")),
            method,
            _ints(e.get("peak"), 3),
            _floats(e.get("peak_mm"), 3),
            _ints(e.get("box"), 6),
            _found(folder, e.get("montage")),
            _found(folder, e.get("nifti")),
        )
        for e in rec["explanations"]
        if isinstance(e, dict)
    ]
    return VolumeEntry(
        str(rec.get("file", "")),
        _ints(rec.get("shape_dhw"), 3),
        _floats(rec.get("voxel_size_mm_xyz"), 3),
        str(rec.get("model", "")),
        str(rec.get("layer", "")),
        strips,
    )


def entries_from_rows(rows: List[dict], folder: str) -> List[VolumeEntry]:
    """Volume entries from results-index rows (no millimetres there: the JSON record has them)."""
    out: dict = {}
    for row in rows:
        if not is_volume_row(row) or row.get("error"):
            continue
        file = str(row.get("file") or "")
        e = out.setdefault(
            file, VolumeEntry(file, None, None, str(row.get("model") or ""), str(row.get("layer") or ""))
        )
        e.strips.append(
            Strip(
                str(row.get("class", "")),
                _num(row.get("probability")),
                str(row.get("method") or ""),
                _ints(row.get("peak"), 3),
                None,
                _ints(row.get("box"), 6),
                _found(folder, row.get("overlay")),
                _found(folder, row.get("maps")),
            )
        )
    return list(out.values())


def read_volumes(folder: str, records: List[str], rows: Optional[List[dict]]) -> List[VolumeEntry]:
    """Every explained volume: from its JSON record (``records``: paths) when there is one, else from the
    index ``rows``; sorted by file name."""
    found = {}
    for path in records:
        try:
            with open(path, encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            continue
        if is_volume_record(rec):
            e = entry_from_record(rec, folder)
            found[e.file] = e
    for e in entries_from_rows(rows or [], folder):
        found.setdefault(e.file, e)
    return [found[k] for k in sorted(found)]


def _fmt(values, spec: str) -> str:
    return "(" + ", ".join(format(v, spec) for v in values) + ")"


def _caption(s: Strip) -> str:
    parts = [f"<b>{escape(s.cls)}</b>" + (f" {s.probability:.1%}" if s.probability is not None else "")]
    if s.peak is None:
        parts.append("flat map (no evidence)")
    else:
        mm = f" = {_fmt(s.peak_mm, '.1f')} mm" if s.peak_mm else ""
        parts.append(f'peak (x, y, z) <span class="peak">{_fmt(s.peak, "d")}</span>{mm}')
    if s.box:
        parts.append(f'box <span class="box3d">{_fmt(s.box, "d")}</span>')
    if s.nifti:
        parts.append(f'<a class="nifti" href="{escape(quote(s.nifti, safe="/"))}">NIfTI heatmap</a>')
    return "<br>".join(parts)


def _figure(s: Strip) -> str:
    img = (
        f'<img class="strip" src="{escape(quote(s.montage, safe="/"))}" loading="lazy" '
        f'alt="{escape(s.method)} for {escape(s.cls)}: axial, coronal and sagittal slices through the peak">'
        if s.montage
        else '<div class="empty">montage not found</div>'
    )
    return f'<figure class="volume-strip">{img}<figcaption>{_caption(s)}</figcaption></figure>'


def volumes_html(entries: List[VolumeEntry]) -> str:
    """The report's volume section: per volume, its name and shape, then one slice strip per explained
    class (axial, coronal and sagittal planes through the peak); empty when there are no volumes."""
    if not entries:
        return ""
    cards = []
    for v in entries:
        shape = f"{v.shape[2]}×{v.shape[1]}×{v.shape[0]} voxels" if v.shape else ""
        size = f", {_fmt(v.voxel_mm, 'g')} mm" if v.voxel_mm else ""
        head = (
            f'<div class="name">{escape(v.file)}</div><div class="meta">{escape(shape + size)}'
            f"{' · ' + escape(v.model) if v.model else ''}{' · layer ' + escape(v.layer) if v.layer else ''}</div>"
        )
        cards.append(f'<div class="volume">{head}{"".join(_figure(s) for s in v.strips)}</div>')
    n = len(entries)
    return (
        f'<section id="volumes"><h2>Volumes ({n})</h2><p class="note">Each strip: axial, coronal and '
        f"sagittal slices through the map's peak, the map blended (radiological view).</p>"
        f"{''.join(cards)}</section>"
    )
