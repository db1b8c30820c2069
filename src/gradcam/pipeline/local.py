"""The local executor: this process, three stages overlapping in threads.

Batch i + 1 is decoded in a background thread while batch i is explained, and batch i - 1's outputs are
written by another thread (:data:`WRITE_AHEAD`). Each batch is decoded once for every method of the job.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from ..io import Item
from .job import Job, Outcome
from .kinds import compute_many, decode, write

WRITE_AHEAD = 1
"""Batches whose outputs a background thread may still be writing while the next batch is explained
(0: write synchronously). PNG encoding and file writes of batch i then overlap the explanation of batch
i + 1; at most this many explained batches wait in memory."""

OnOutcome = Callable[[Outcome, Job], None]


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


def run_local(
    chunks: Sequence[Sequence[Item]], jobs: Sequence[Job], wanted: Sequence[Set[Item]], on_outcome: OnOutcome
) -> None:
    """Explain ``chunks`` (batches of photos) with every job; ``wanted[j]``: the photos job ``j`` must do.

    Photos are reported (``on_outcome(outcome, job)``, in batch, job and photo order) only once their
    outputs and record are written; on any exit, Ctrl-C included, the writes already started are finished
    and reported first.
    """
    max_pixels = jobs[0].max_pixels if jobs else None

    def load_all(chunk: Sequence[Item]) -> List[tuple]:
        return [decode(it, max_pixels) for it in chunk]

    writing: List[Any] = []  # (future of kinds.write, job), oldest first

    def flush_one() -> None:
        fut, job = writing.pop(0)
        for o in fut.result():
            on_outcome(o, job)

    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam-writer") as writer,
    ):
        try:
            pending: Future = pool.submit(load_all, chunks[0]) if chunks else None  # type: ignore[assignment]
            for ci, chunk in enumerate(chunks):
                decoded = pending.result()
                if ci + 1 < len(chunks):
                    pending = pool.submit(load_all, chunks[ci + 1])
                for job, groups in _compute_chunk(chunk, decoded, jobs, wanted):
                    if WRITE_AHEAD <= 0:
                        for o in write(groups, job):
                            on_outcome(o, job)
                        continue
                    while len(writing) >= WRITE_AHEAD:
                        flush_one()
                    writing.append((writer.submit(write, groups, job), job))
        finally:
            while writing:  # flush: finished photos keep (and report) their outputs, even on Ctrl-C
                flush_one()
