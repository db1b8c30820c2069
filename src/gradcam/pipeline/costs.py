"""What an expensive method will cost, said before it starts.

Perturbation methods run many forward passes per photo (Score-CAM: one per channel of the layer; Ablation-CAM:
one per channel through the layers after it; RISE: one per mask; occlusion: one per window). When a method
of the job needs more than :data:`EXPENSIVE` forward passes per photo, :func:`announce` tells the reporter
its cost and a time estimate from one timed forward pass of the model on this device.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

from .job import Job
from .method_options import METHOD_OPTIONS, check_method_options, method_kwargs  # noqa: F401  (re-exported)

EXPENSIVE = 8  # forward passes per photo above which the cost is announced


@dataclass(frozen=True)
class Cost:
    """``passes`` forward passes per photo (``what``: per what), ``per_batch`` inputs per pass."""

    method: str
    passes: int
    what: str
    per_batch: int


def cost_of(job: Job, probe: Optional[Any] = None) -> Optional[Cost]:
    """The :class:`Cost` of ``job``'s method on a photo at the model's input size (``None``: one or a few passes).

    ``probe``: the layer output's shape ``(N, C, ...)`` from a forward pass (for the channel methods).
    """
    m, name = job.method, job.method_name
    bs = int(getattr(m, "batch_size", 1) or 1)
    if type(m).__name__ == "ScoreCAM" and getattr(m, "batch_size", 1) is None:
        from ..methods.perturbation import auto_batch_size  # its default: the inputs that fit a pixel budget

        side = int(job.loaded.size or 224)
        bs = auto_batch_size((side, side))
    if hasattr(m, "n_masks"):
        return Cost(name, int(m.n_masks), "one per random mask", bs)
    if hasattr(m, "window") and hasattr(m, "stride"):
        from ..methods.occlusion import window_positions

        size = int(job.loaded.size)
        per = [len(window_positions(size, w, s)) for w, s in zip(m.window, m.stride)]
        return Cost(name, per[0] * per[1], f"one per {m.window[0]}x{m.window[1]} window, at least", bs)
    if type(m).__name__ in ("ScoreCAM", "AblationCAM") and probe is not None:
        what = "one per channel of the layer" + (
            ", through the layers after it" if "Ablation" in type(m).__name__ else ""
        )
        return Cost(name, int(probe[1]), what, bs)
    return None


def _probe(job: Job) -> tuple:
    """(seconds per photo of one forward pass, the method's layer output shape or None), on a zero photo."""
    import torch

    loaded, m = job.loaded, job.method
    size = int(loaded.size)
    device = next(loaded.model.parameters(), torch.empty(0)).device
    x = torch.zeros(1, 3, size, size, device=device)
    shape: List[Any] = []
    layers = getattr(m, "_layers", None)
    handle = None
    if layers:
        handle = layers[0].module.register_forward_hook(lambda mod, i, o: shape.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            loaded.model(x)
            seconds = time.perf_counter() - t0
    finally:
        if handle is not None:
            handle.remove()
    return seconds, (shape[0] if shape else None)


def _duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def announce(jobs: Sequence[Job], todo: Sequence[Any], reporter: Any) -> List[Cost]:
    """Tell ``reporter`` the cost of each expensive method of ``jobs`` before the work starts; returns them."""
    costs = []
    for job in jobs:
        if not todo or job.method is None:
            continue
        known = cost_of(job)
        channels = type(job.method).__name__ in ("ScoreCAM", "AblationCAM")
        if (known is None and not channels) or (known is not None and known.passes <= EXPENSIVE):
            continue
        seconds, shape = _probe(job)
        cost = cost_of(job, shape)
        if cost is None or cost.passes <= EXPENSIVE:
            continue
        costs.append(cost)
        total = seconds * cost.passes * len(todo)
        reporter.note(
            f"gradcam: {cost.method} costs {cost.passes} forward passes per photo ({cost.what}; "
            f"{cost.per_batch} per batch): about {_duration(seconds * cost.passes)} per photo, "
            f"{_duration(total)} for {len(todo)} photo{'s' if len(todo) != 1 else ''} (estimated from one "
            f"timed forward pass at {job.loaded.size} px; --perturbation-batch-size sets the batch)"
        )
    return costs
