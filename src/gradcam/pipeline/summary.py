"""The outcome of one folder job (:class:`Summary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple


@dataclass
class Summary:
    """The outcome of :func:`gradcam.pipeline.run` (and :func:`gradcam.distributed.explain_dataset`).

    ``found`` photos; ``explained`` this run; ``skipped`` (outputs already up to date); ``failed``: (path,
    reason) pairs; ``index``: the results table's path; ``seconds``: wall time; ``engine``; ``out``;
    ``methods``: the methods run (with several, the counts are of (photo, method) results); ``report``:
    the path of the HTML report when one was written; ``retries``: batches the Ray engine sent again after
    a worker died or a task failed (0 for the local engine); ``nodes``: the ids of the Ray nodes that
    explained photos (empty for the local engine).
    """

    engine: str
    found: int
    explained: int
    skipped: int
    failed: List[Tuple[str, str]] = field(default_factory=list)
    index: Optional[str] = None
    seconds: float = 0.0
    out: str = ""
    methods: List[str] = field(default_factory=lambda: ["gradcam"])
    report: Optional[str] = None
    retries: int = 0
    nodes: List[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every photo was explained (or already was), 1 when any failed (the CLI's rule)."""
        return 1 if self.failed else 0

    @property
    def images_per_second(self) -> float:
        """Photos explained or failed this run per second of wall time."""
        n = self.explained + len(self.failed)
        return n / self.seconds if self.seconds > 0 else 0.0

    def text(self) -> str:
        """The closing line: what was explained, skipped and failed, and where the outputs are."""
        unit = "image" if len(self.methods) <= 1 else "result"
        parts = [f"explained {self.explained} {unit}{'s' if self.explained != 1 else ''}"]
        if self.skipped:
            parts.append(f"{self.skipped} already done (same input, model and options; --force redoes them)")
        parts.append(f"{len(self.failed)} failed")
        if self.retries:
            parts.append(
                f"{self.retries} batch{'es' if self.retries != 1 else ''} retried after a worker failed"
            )
        methods = (
            f" ({len(self.methods)} methods: {', '.join(self.methods)})" if len(self.methods) > 1 else ""
        )
        return f"gradcam: {', '.join(parts)}{methods}; outputs in {self.out}"
