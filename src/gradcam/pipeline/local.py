"""The local executor: this process, three stages overlapping in threads.

Batch i + 1 is decoded in a background thread while batch i is explained, and batch i - 1's outputs are
written by another thread (:data:`WRITE_AHEAD`). Each batch is decoded once for every method of the job.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, List, Sequence, Set

from ..io import Item
from .job import Job, Outcome
from .kinds import compute, decode, write

WRITE_AHEAD = 1
"""Batches whose outputs a background thread may still be writing while the next batch is explained
(0: write synchronously). PNG encoding and file writes of batch i then overlap the explanation of batch
i + 1; at most this many explained batches wait in memory."""

OnOutcome = Callable[[Outcome, Job], None]


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
                for job, want in zip(jobs, wanted):
                    sub = [(it, d) for it, d in zip(chunk, decoded) if it in want]
                    if not sub:
                        continue
                    groups = compute([it for it, _ in sub], job, [d for _, d in sub])
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
