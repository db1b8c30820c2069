"""The per-batch steps of the folder job, shared by every executor: explain (:func:`compute_items`), then
write the outputs atomically, the resume records and the index rows (:func:`write_outcomes`)."""

from __future__ import annotations

import io
import json
import os
from typing import Any, List, Optional, Sequence, Tuple

from .. import storage
from ..io import Item, atomic_write, demo_photo
from ..resume import write_record
from .decode import load
from .job import Job, Outcome


def compute_items(
    items: Sequence[Item], job: Job, decoded: Optional[Sequence[tuple]] = None
) -> List[Outcome]:
    """The compute half of a batch: load -> preprocess -> explain; nothing is written (see :func:`write_outcomes`).

    ``decoded``: the ``(image, reason)`` of each item when already loaded (a background thread), else
    the items are loaded here; ``(image, reason, x)`` with ``x = job.loaded.preprocess(image)`` when also
    preprocessed (a Ray Data task). Returns one :class:`Outcome` per item, in the items' order: a result,
    or the reason the file could not be read.
    """
    return compute_items_many(items, [job], decoded)[0]


def compute_items_many(
    items: Sequence[Item], jobs: Sequence[Job], decoded: Optional[Sequence[tuple]] = None
) -> List[List[Outcome]]:
    """:func:`compute_items` for several jobs of one run (one per method, the same model and options) on the same
    items: each photo loaded and preprocessed once, the methods that can share a capture sharing one forward and
    one backward per batch (:func:`gradcam.photos.explain_batch_many`). One list of outcomes per job."""
    from .. import photos

    decoded = list(decoded) if decoded is not None else [load(it, jobs[0].max_pixels) for it in items]
    failed, good, images, xs = [], [], [], []
    for it, (img, reason, *x) in zip(items, decoded):
        if img is None:
            failed.append(Outcome(it, reason=reason))
        else:
            good.append(it)
            images.append(img)
            xs += x
    job = jobs[0]
    paths, inputs = [it.path for it in good], (xs if len(xs) == len(images) and xs else None)
    if len(jobs) == 1:  # one method: explain_batch itself (the same result as explain_batch_many of one)
        per_method = [
            photos.explain_batch(
                images,
                job.loaded,
                job.method,
                job.target,
                job.k,
                paths,
                inputs,
                job.box_threshold,
                job.box_rule,
            )
        ]
    else:
        methods = [j.method for j in jobs]
        per_method = photos.explain_batch_many(
            images, job.loaded, methods, job.target, job.k, paths, inputs, job.box_threshold, job.box_rule
        )
    order = {id(it): i for i, it in enumerate(items)}
    out = []
    for results in per_method:
        outcomes = [Outcome(o.item, reason=o.reason) for o in failed]
        outcomes += [Outcome(it, res) for it, res in zip(good, results)]
        outcomes.sort(key=lambda o: order[id(o.item)])
        out.append(outcomes)
    return out


def png_bytes(img: Any) -> bytes:
    """Lossless PNG, zlib level 1 with the run-length strategy (``Z_RLE``): on photo overlays about 1.7x faster
    to encode than plain level 1 and about 10% smaller (measured in docs/results/benchmarks-distributed.md)."""
    import zlib

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buf.getvalue()


def write_one(o: Outcome, job: Job) -> None:
    """Write one explained photo's overlays, JSON and maps whole (atomically on disk; one PUT each in object
    storage), then its resume record (last)."""
    import torch

    it, res = o.item, o.result
    pngs, js = job.outputs(it)
    rec = job.record(it)
    opts = job.storage_options
    storage.remove(rec, opts)
    sizes = {}

    def put(path: str, data: bytes) -> None:
        if storage.is_remote(path):
            storage.write_bytes(path, data, opts)
        else:
            atomic_write(path, data)
        sizes[path] = len(data)

    for r, png in enumerate(pngs):
        put(png, png_bytes(res.overlay(r, alpha=job.alpha, colormap=job.colormap, colorbar=job.colorbar)))
    if js:
        res.extra["overlays"] = [os.path.basename(p) for p in pngs]
        put(js, (json.dumps(res.to_dict(), indent=1) + "\n").encode())
    mp = job.maps_path(it)
    if mp:
        buf = io.BytesIO()
        torch.save(res.input_maps.contiguous(), buf)
        put(mp, buf.getvalue())
    write_record(rec, job.fingerprint(it), pngs + [f for f in (js, mp) if f], sizes, opts)
    o.pngs, o.json = pngs, js


def write_outcomes(outcomes: List[Outcome], job: Job) -> List[Outcome]:
    """The write half of a batch: each explained photo's outputs, then its resume record; the index rows.

    Each photo's old record is removed before its outputs are replaced and the new one written after them,
    so an interruption never leaves a record that vouches for other outputs. An error while writing a
    photo's outputs (disk full, permissions, ...) makes that photo a failure (``reason``: "cannot write its
    outputs (...)"; no record, so a rerun redoes it), never the whole batch's. Safe to run in a background
    thread: it touches only ``outcomes`` and the files of their photos.
    """
    from .. import index

    for o in outcomes:
        if o.result is None:
            continue
        try:
            write_one(o, job)
        except Exception as e:  # noqa: BLE001 - this photo's failure, reported as such
            o.result, o.pngs, o.json = None, [], None
            o.reason = f"cannot write its outputs ({type(e).__name__}: {e})"
    index.append(job.out, [row for o in outcomes for row in _index_rows(o, job)], job.storage_options)
    return outcomes


def _index_rows(o: Outcome, job: Job) -> List[dict]:
    """The index rows of one outcome: one per explained class, or one failure row."""
    from .. import index

    stem = job.stem(o.item)
    if o.result is None:
        return [
            index.failure_row(
                o.item.path, stem, str(o.reason), job.loaded.name, job.options.get("method", "")
            )
        ]
    return index.result_rows(o.result, stem, o.pngs, o.json, job.maps_path(o.item))


def explain_items(
    items: Sequence[Item], job: Job, decoded: Optional[Sequence[tuple]] = None
) -> List[Outcome]:
    """The per-batch step: :func:`compute_items` (load -> preprocess -> explain) then :func:`write_outcomes`
    (overlays, JSON, maps, resume records, results index rows; a write error is that photo's failure)."""
    return write_outcomes(compute_items(items, job, decoded), job)


def describe(item: Item, res: Any, pngs: List[str], names: Any = None) -> str:
    """The printed description of one explained photo: size, top-5, and per class its peak, box and overlay."""
    w, h = res.size
    name = "chelsea.png (demo)" if item.path == demo_photo() else item.path
    lines = [f"{name} ({w}x{h})"]
    for cls, cid, p in res.predictions:
        lines.append(f"  {p:7.2%}  {cls} ({cid})")
    for r, png in enumerate(pngs):
        box = res.boxes[r]
        where = f"peak (x, y) = {tuple(res.peaks[r])}, box = {box}" if box else "flat map (no evidence)"
        lines.append(f"  {res.method} for '{res.classes[r]}' at {res.layer or 'the input'}: {where} -> {png}")
        if names is not None:
            lines += _neuron_lines(res, r, names)
    return "\n".join(lines)


def _neuron_lines(res: Any, r: int, names: Any) -> List[str]:
    from ..neurons import describe as describe_channels

    if res.weights is None:
        return [f"  (--neurons: method {res.method} has no channel weights)"]
    text = describe_channels(res.weights[r], names).replace("the target", f"'{res.classes[r]}'")
    text = text.replace("Channels", f"Channels of layer '{res.layer}'", 1)
    return ["    " + ln for ln in text.splitlines()]


def outcome_text(o: Outcome, names: Any = None) -> str:
    """The line(s) printed for ``o``: its description, or ``gradcam: skipped PATH: REASON``."""
    if o.result is None:
        return f"gradcam: skipped {o.item.path}: {o.reason}"
    return describe(o.item, o.result, o.pngs, names)


def write_failures(out: str, failed: List[Tuple[str, str]], storage_options: Any = None) -> None:
    """OUT/failures.json: ``[{"file": path, "reason": why}]`` of this run's failed files (``[]`` when none)."""
    path = storage.join(out, "failures.json")
    data = (json.dumps([{"file": f, "reason": r} for f, r in failed], indent=1) + "\n").encode()
    try:
        if storage.read_bytes(path, storage_options) == data:
            return  # unchanged: a rerun leaves the folder untouched
    except OSError:
        if not failed:
            return
    storage.write_bytes(path, data, storage_options)
