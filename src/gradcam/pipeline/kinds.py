"""Input kinds: how the folder job decodes, explains and writes one kind of file.

Every executor runs a batch through :func:`compute` and :func:`write`, which group the batch's files by
kind and call that kind's steps. The built-in kind is ``photo`` (:data:`PHOTO`: PIL decoding with size
limits, :func:`gradcam.pipeline.steps.compute_items`, :func:`gradcam.pipeline.steps.write_outcomes`). A new
kind (volumes, say) is one :func:`register_kind` call::

    register_kind(Kind("volume", (".nii", ".nii.gz", ".dcm", ".npy"), decode=load_volume,
                       compute=explain_volumes, write=write_volume_outcomes))

``decode(item, max_pixels) -> (data, reason)`` (``data`` ``None`` when the file cannot be read, ``reason``
saying why); ``compute(items, job, decoded) -> [Outcome]`` in the items' order; ``write(outcomes, job) ->
outcomes`` (outputs atomically, then resume records, then the index rows; a write error is that file's
failure). Folders are searched for every registered kind's extensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..io import IMAGE_EXTENSIONS, Item
from .decode import load
from .job import Job, Outcome
from .steps import compute_items, compute_items_many, write_outcomes


@dataclass(frozen=True)
class Kind:
    """One kind of input file: its ``name``, file ``extensions`` (lower case, with the dot) and its steps."""

    name: str
    extensions: Tuple[str, ...]
    decode: Callable[[Item, Optional[int]], Tuple[Any, Optional[str]]]
    compute: Callable[[Sequence[Item], Job, Sequence[tuple]], List[Outcome]]
    write: Callable[[List[Outcome], Job], List[Outcome]]


PHOTO = Kind("photo", IMAGE_EXTENSIONS, load, compute_items, write_outcomes)
KINDS: Dict[str, Kind] = {PHOTO.name: PHOTO}


def register_kind(kind: Kind) -> None:
    """Make the folder job handle files with ``kind.extensions`` by ``kind``'s steps (replaces a same-named kind)."""
    KINDS[kind.name] = kind


def extensions() -> Tuple[str, ...]:
    """Every registered kind's extensions (what a folder search picks up)."""
    return tuple(e for k in KINDS.values() for e in k.extensions)


def kind_of(path: str) -> Kind:
    """The kind whose longest extension ends ``path`` (``photo`` when none does: a file named explicitly is tried
    as a photo)."""
    low = path.lower()
    best, length = PHOTO, 0
    for k in KINDS.values():
        for e in k.extensions:
            if low.endswith(e) and len(e) > length and k is not PHOTO:
                best, length = k, len(e)
    return best


def decode(item: Item, max_pixels: Optional[int]) -> Tuple[Any, Optional[str]]:
    """Decode ``item`` with its kind's decoder."""
    return kind_of(item.path).decode(item, max_pixels)


def compute(items: Sequence[Item], job: Job, decoded: Sequence[tuple]) -> List[Tuple[Kind, List[Outcome]]]:
    """Explain a batch: its files grouped by kind (in order of first appearance), each group by its kind."""
    groups: Dict[str, List[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(kind_of(it.path).name, []).append(i)
    return [
        (KINDS[name], KINDS[name].compute([items[i] for i in idx], job, [decoded[i] for i in idx]))
        for name, idx in groups.items()
    ]


def compute_many(
    items: Sequence[Item], jobs: Sequence[Job], decoded: Sequence[tuple]
) -> List[List[Tuple[Kind, List[Outcome]]]]:
    """:func:`compute` for several jobs on the same batch (one per method): photos explained once for all of them
    (:func:`gradcam.pipeline.steps.compute_items_many`: one forward where the methods share it); a batch with
    files of another kind goes job by job. One list of groups per job."""
    if len(jobs) == 1 or any(kind_of(it.path) is not PHOTO for it in items):
        return [compute(items, job, decoded) for job in jobs]
    return [[(PHOTO, outcomes)] for outcomes in compute_items_many(items, jobs, decoded)]


def write(groups: List[Tuple[Kind, List[Outcome]]], job: Job) -> List[Outcome]:
    """Write a computed batch, each group by its kind; the outcomes in group order."""
    return [o for kind, outcomes in groups for o in kind.write(outcomes, job)]
