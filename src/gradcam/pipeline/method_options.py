"""The options of the perturbation methods a folder job may set, and their checks (no other pipeline imports)."""

from __future__ import annotations

from typing import Sequence

#: The options of the perturbation methods a folder job may set (``Options.method_options``).
METHOD_OPTIONS = {
    "scorecam": ("batch_size",),
    "ablationcam": ("batch_size",),
    "rise": ("batch_size", "n_masks"),
    "occlusion": ("batch_size",),
}


def method_kwargs(name: str, method_options: dict) -> dict:
    """The ``method_options`` that method ``name`` takes (see :data:`METHOD_OPTIONS`)."""
    return {k: v for k, v in method_options.items() if k in METHOD_OPTIONS.get(name, ())}


def check_method_options(methods: Sequence[str], method_options: dict) -> None:
    """Raise ``ValueError`` for an option that none of ``methods`` takes."""
    for k in method_options:
        takers = [m for m, opts in METHOD_OPTIONS.items() if k in opts]
        if not any(m in takers for m in methods):
            flag = {"batch_size": "--perturbation-batch-size", "n_masks": "--masks"}.get(k, k)
            raise ValueError(
                f"{flag} is an option of {', '.join(takers)}; it does nothing for "
                f"{', '.join(methods)}. Drop it, or add one of those methods."
            )
        v = method_options[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{k} must be a positive int; got {v!r}.")
