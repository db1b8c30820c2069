"""Resolve the layer(s) an explanation is computed at.

A layer is given as ``"auto"``, a dotted module name (``"layer4"``, ``"features.28"``), a module
object, or a list of those. A module that the forward pass calls several times (a shared ``nn.ReLU``,
a weight-tied block) must be told which call to use: ``"name@k"`` picks the k-th call (0-based).
"""
from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Union

import torch
from torch import nn

log = logging.getLogger("gradcam")

LayerSpec = Union[str, nn.Module, Sequence[Union[str, nn.Module]]]


@dataclass(frozen=True)
class LayerRef:
    """One layer of a model: its dotted name, the module, and which of its calls (``None``: the only one)."""

    name: str
    module: nn.Module
    call: Optional[int] = None

    @property
    def spec(self) -> str:
        """The name as a user would write it, ``name@k`` when a call index is set."""
        return self.name if self.call is None else f"{self.name}@{self.call}"


def _names(model: nn.Module) -> dict:
    names = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        names.setdefault(id(mod), name)
    return names


def _split_call(spec: str):
    if "@" in spec:
        name, _, k = spec.rpartition("@")
        if not k.isdigit():
            raise ValueError(f"Layer '{spec}': the part after '@' must be a call index such as '{name}@0'.")
        return name, int(k)
    return spec, None


def resolve(model: nn.Module, layer: LayerSpec) -> List[LayerRef]:
    """Turn a layer specification (other than ``"auto"``) into a list of :class:`LayerRef`."""
    specs = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not specs:
        raise ValueError("layer=[] names no layer; pass a module name, a module, or 'auto'.")
    names = _names(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    out: List[LayerRef] = []
    for spec in specs:
        if isinstance(spec, nn.Module):
            if id(spec) not in names:
                raise ValueError(
                    f"The module {type(spec).__name__} passed as layer is not part of this model; pass a "
                    "submodule of the model you explain (e.g. model.layer4) or its dotted name."
                )
            out.append(LayerRef(names[id(spec)], spec))
        elif isinstance(spec, str):
            if spec == "auto":
                raise ValueError("'auto' cannot be mixed with other layers in a list; name each layer.")
            name, call = _split_call(spec)
            if name not in modules or name == "":
                close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
                hint = f" Closest names: {', '.join(close)}." if close else ""
                raise ValueError(
                    f"Unknown layer '{name}': the model has no submodule of that name.{hint} "
                    "List them with [n for n, _ in model.named_modules()]."
                )
            out.append(LayerRef(name, modules[name], call))
        else:
            raise TypeError(f"layer must be 'auto', a module name, a module or a list of them; got {type(spec).__name__}.")
    return out


def auto_candidates(
    model: nn.Module, x: torch.Tensor, reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
) -> List[LayerRef]:
    """Spatial layers of ``model`` for input ``x``, the last one to finish first.

    One forward pass without gradients records every submodule call whose output is a tensor
    (N, C, h, w) with h*w > 1; candidates come latest first, so the default Grad-CAM layer is the last
    spatial map before the model's head. A module called several times is returned as ``name@k``.
    """
    names = _names(model)
    events = []
    counts: dict = {}
    handles = []
    owner = threading.get_ident()

    def make_hook(mod):
        def hook(module, inputs, output):
            if threading.get_ident() != owner:  # another thread's forward of a shared model: not ours
                return None
            k = counts.get(id(module), 0)
            counts[id(module)] = k + 1
            t = output
            if isinstance(t, torch.Tensor) and reshape is not None and t.dim() != 4:
                try:
                    t = reshape(t)
                except Exception:  # noqa: BLE001 - a reshape that does not fit this tensor: not a candidate
                    return None
            if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[-1] * t.shape[-2] > 1:
                events.append((module, k))
            return None

        return hook

    try:
        for mod in model.modules():
            if mod is model:
                continue
            handles.append(mod.register_forward_hook(make_hook(mod)))
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    refs = []
    seen = set()
    for module, k in reversed(events):
        call = k if counts[id(module)] > 1 else None
        key = (id(module), call)
        if key in seen:
            continue
        seen.add(key)
        refs.append(LayerRef(names[id(module)], module, call))
    if not refs:
        raise ValueError(
            f"No submodule of {type(model).__name__} outputs a spatial map (N, C, h, w with h*w > 1) for an "
            f"input of shape {tuple(x.shape)}. Grad-CAM needs a convolutional feature map: pass layer=... "
            "naming one, and for token models (ViT) also reshape=gradcam.layers.tokens_to_grid(h, w)."
        )
    return refs


def tokens_to_grid(height: int, width: int, skip: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``reshape`` for token models: (N, skip + h*w, D) tokens -> (N, D, h, w) map.

    ``skip`` leading tokens (the class token of a ViT) are dropped.
    """

    def reshape(t: torch.Tensor) -> torch.Tensor:
        if t.dim() != 3 or t.shape[1] != skip + height * width:
            raise ValueError(
                f"tokens_to_grid({height}, {width}, skip={skip}) expects (N, {skip + height * width}, D) tokens, "
                f"got shape {tuple(t.shape)}."
            )
        return t[:, skip:].reshape(t.shape[0], height, width, t.shape[2]).permute(0, 3, 1, 2)

    return reshape
