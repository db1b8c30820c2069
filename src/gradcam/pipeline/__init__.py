"""The folder job: find -> decode (size limits) -> batch -> explain -> write (atomic) -> resume record -> index.

:func:`run` takes typed :class:`Options` and returns a :class:`Summary`; ``gradcam explain`` and
:func:`gradcam.distributed.explain_dataset` both call it. Two executors run the same per-batch steps
(:mod:`.steps`): the local one (threads overlap decoding, explaining and writing; :mod:`.local`) and Ray
(:mod:`.raydata`: a decode task per batch, a pool of model actors on one or many nodes). A :class:`Reporter` sees the progress (the terminal's: :class:`ConsoleReporter`).
"""

from __future__ import annotations

from .console import ConsoleReporter, Progress, Reporter
from .job import Job, Outcome, box_threshold_of, build_job, result_options
from .options import DEFAULT_METHOD, ENGINES, Options
from .run import find, plan, prepare, run
from .steps import compute_items, describe, explain_items, write_outcomes
from .summary import Summary

__all__ = [
    "ConsoleReporter",
    "DEFAULT_METHOD",
    "ENGINES",
    "Job",
    "Options",
    "Outcome",
    "Progress",
    "Reporter",
    "Summary",
    "box_threshold_of",
    "build_job",
    "compute_items",
    "describe",
    "explain_items",
    "find",
    "plan",
    "prepare",
    "result_options",
    "run",
    "write_outcomes",
]
