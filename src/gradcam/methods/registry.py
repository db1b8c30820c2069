"""Methods by name, for the CLI and the evaluation suite.

``METHODS[name](model, layer=...)`` builds a callable ``m(x, target=None, top_k=None) -> Explanation``.
Modules that add a method register it here with :func:`register`.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict

from .cam import CAM
from .gradcam import GradCAM

METHODS: Dict[str, Callable] = {}


def register(name: str, factory: Callable) -> None:
    """Make ``factory(model, layer=..., **kw)`` available as method ``name``."""
    METHODS[name] = factory


class _Counterfactual(GradCAM):
    """Grad-CAM with negated gradients as a method of its own (for tables and the CLI)."""

    name = "counterfactual"

    def __call__(self, x, target=None, top_k=None, *, counterfactual: bool = True, **options):
        return super().__call__(x, target, top_k, counterfactual=True, **options)


register("gradcam", GradCAM)
register("counterfactual", _Counterfactual)
register("cam", CAM)


def get(name: str) -> Callable:
    """The factory of method ``name``; a clear error lists the known names."""
    _load_optional()
    if name not in METHODS:
        raise ValueError(f"Unknown method {name!r}; choose one of: {', '.join(sorted(METHODS))}.")
    return METHODS[name]


@functools.cache
def _load_optional() -> None:
    # Methods defined in other modules register themselves on import.
    import importlib

    for mod in ("gradcam.methods.guided", "gradcam.methods.gradient", "gradcam.methods.occlusion", "gradcam.methods.family"):
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
