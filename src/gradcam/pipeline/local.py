"""The local executor: this process, three stages overlapping in threads.

A background thread decodes and preprocesses up to ``prefetch`` batches ahead of the one being explained
(:data:`PREFETCH` by default), the explain step runs in the calling thread, and another background thread
writes the outputs of up to :data:`WRITE_AHEAD` explained batches (PNG encoding, JSON, maps, records,
index). PIL releases the GIL while it decodes, resizes and encodes, and torch while it computes, so the
three overlap on separate cores. Each batch is decoded once for every method of the job. ``prefetch=0``
runs everything in the calling thread, one batch after the other (the serial path; same outputs).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Set, Tuple

from ..io import Item
from .job import Job, Outcome
from .kinds import KINDS, PHOTO, compute_many, decode, kind_of, write

PREFETCH = 2
"""Batches decoded and preprocessed ahead of the one being explained (``gradcam explain --prefetch``; 0: no
background threads). Memory: at most this many batches of decoded photos and their model inputs wait."""

WRITE_AHEAD = 1
"""Batches whose outputs a background thread may still be writing while the next batch is explained
(0: write synchronously). PNG encoding and file writes of batch i then overlap the explanation of batch
i + 1; at most this many explained batches wait in memory."""

OnOutcome = Callable[[Outcome, Job], None]


def prepare_one(item: Item, max_pixels: Optional[int], loaded: Any) -> tuple:
    """Decode ``item`` and, for a photo, preprocess it for ``loaded``'s model: ``(image, reason, x)``.

    ``x = loaded.preprocess(image)`` is what :func:`gradcam.photos.explain_batch` would compute itself, done
    here so that it runs in the prefetch thread. Another kind's file, a file that cannot be read, or a
    photo whose preprocessing raises gives ``(data, reason)``: the explain step then does (and reports)
    what it always did.
    """
    d = decode(item, max_pixels)
    if (
        d[0] is None
        or loaded is None
        or KINDS.get(PHOTO.name) is not PHOTO
        or kind_of(item.path) is not PHOTO
    ):
        return d
    try:
        return (d[0], d[1], loaded.preprocess(d[0]))
    except Exception:  # noqa: BLE001 - redone (and raised or reported) by the explain step, as before
        return d


def run_local(
    chunks: Sequence[Sequence[Item]],
    jobs: Sequence[Job],
    wanted: Sequence[Set[Item]],
    on_outcome: OnOutcome,
    prefetch: int = PREFETCH,
) -> None:
    """Explain ``chunks`` (batches of photos) with every job; ``wanted[j]``: the photos job ``j`` must do.

    Photos are reported (``on_outcome(outcome, job)``, in batch, job and photo order) only once their
    outputs and record are written; on any exit, Ctrl-C included, the writes already started are finished
    and reported first. ``prefetch``: batches decoded ahead in a background thread (0: serial).
    """
    max_pixels = jobs[0].max_pixels if jobs else None
    loaded = jobs[0].loaded if jobs and all(j.loaded is jobs[0].loaded for j in jobs) else None

    def load_all(chunk: Sequence[Item]) -> List[tuple]:
        return [prepare_one(it, max_pixels, loaded) for it in chunk]

    if prefetch <= 0:
        for chunk in chunks:
            _explain_chunk(chunk, load_all(chunk), jobs, wanted, on_outcome, None, deque())
        return
    writing: Deque[Any] = deque()  # (future of kinds.write, job), oldest first
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam-decoder") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam-writer") as writer,
    ):
        pending: Deque[Future] = deque()
        try:
            for ci, chunk in enumerate(chunks):
                while len(pending) <= prefetch and ci + len(pending) < len(chunks):
                    pending.append(pool.submit(load_all, chunks[ci + len(pending)]))
                decoded = pending.popleft().result()
                _explain_chunk(chunk, decoded, jobs, wanted, on_outcome, writer, writing)
        finally:
            for fut in pending:  # not started yet: dropped (Ctrl-C or an error)
                fut.cancel()
            while writing:  # flush: finished photos keep (and report) their outputs, even on Ctrl-C
                _flush_one(writing, on_outcome)


def _flush_one(writing: Deque[Any], on_outcome: OnOutcome) -> None:
    fut, job = writing.popleft()
    for o in fut.result():
        on_outcome(o, job)


def _explain_chunk(
    chunk: Sequence[Item],
    decoded: List[tuple],
    jobs: Sequence[Job],
    wanted: Sequence[Set[Item]],
    on_outcome: OnOutcome,
    writer: Optional[ThreadPoolExecutor],
    writing: Deque[Any],
) -> None:
    """Explain one decoded batch with every job; write it synchronously (no ``writer``) or hand it to
    ``writer``, waiting first while :data:`WRITE_AHEAD` batches are still being written."""
    for job, groups in _compute_chunk(chunk, decoded, jobs, wanted):
        if writer is None or WRITE_AHEAD <= 0:
            for o in write(groups, job):
                on_outcome(o, job)
            continue
        while len(writing) >= WRITE_AHEAD:
            _flush_one(writing, on_outcome)
        writing.append((writer.submit(write, groups, job), job))


def _compute_chunk(
    chunk: Sequence[Item], decoded: List[tuple], jobs: Sequence[Job], wanted: Sequence[Set[Item]]
) -> List[Tuple[Job, Any]]:
    """Explain one batch for every job, in job order: the jobs that must do the same photos of it (all of them,
    unless some are resumed) together (:func:`compute_many`: one forward where the methods share it)."""
    subs: Dict[Tuple[int, ...], List[int]] = {}
    for j, want in enumerate(wanted):
        key = tuple(i for i, it in enumerate(chunk) if it in want)
        if key:
            subs.setdefault(key, []).append(j)
    done: Dict[int, Any] = {}
    for key, js in subs.items():
        items, dec = [chunk[i] for i in key], [decoded[i] for i in key]
        for j, groups in zip(js, compute_many(items, [jobs[j] for j in js], dec)):
            done[j] = groups
    return [(jobs[j], done[j]) for j in sorted(done)]
