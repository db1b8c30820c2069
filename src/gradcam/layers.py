"""Resolve the layer(s) an explanation is computed at.

A layer is given as ``"auto"``, a dotted module name (``"layer4"``, ``"features.28"``), a module
object, or a list of those. A module that the forward pass calls several times (a shared ``nn.ReLU``,
a weight-tied block) must be told which call to use: ``"name@k"`` picks the k-th call (0-based).
"""

from __future__ import annotations

import difflib
import logging
import math
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

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
    # Set by ``"auto"``: how the layer's output becomes a map (token grid, channels-last), and whether it
    # is sequence-first (T, N, C). Not part of the layer's identity.
    reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = field(default=None, compare=False, repr=False)
    seq_first: bool = field(default=False, compare=False)

    @property
    def spec(self) -> str:
        """The name as a user would write it, ``name@k`` when a call index is set."""
        return self.name if self.call is None else f"{self.name}@{self.call}"


COMPILED_PREFIX = "_orig_mod."  # torch.compile's wrapper holds the original model as ``_orig_mod``


def _plain(name: str) -> str:
    """A layer name without torch.compile's ``_orig_mod.`` prefix (the name in the original model)."""
    return name[len(COMPILED_PREFIX) :] if name.startswith(COMPILED_PREFIX) else name


def _names(model: nn.Module) -> dict:
    """id(module) -> its dotted name, as in the original model for a ``torch.compile``'d one."""
    names: Dict[int, str] = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        names.setdefault(id(mod), _plain(name))
    return names


def _modules(model: nn.Module) -> dict:
    """Dotted name -> module; a ``torch.compile``'d model answers to its original names and to the
    ``_orig_mod.`` ones."""
    modules = dict(model.named_modules(remove_duplicate=False))
    for name, mod in list(modules.items()):
        if name.startswith(COMPILED_PREFIX):
            modules.setdefault(_plain(name), mod)
    return modules


def _split_call(spec: str):
    if "@" in spec:
        name, _, k = spec.rpartition("@")
        if not k.isdigit():
            raise ValueError(f"Layer '{spec}': the part after '@' must be a call index such as '{name}@0'.")
        return name, int(k)
    return spec, None


def resolve_layers(model: nn.Module, layer: LayerSpec) -> List[LayerRef]:
    """Turn a layer specification (other than ``"auto"``) into a list of :class:`LayerRef`.

    Names are dotted module names; a ``torch.compile``'d model takes the original model's names (``"c2"``)
    as well as the wrapper's (``"_orig_mod.c2"``), and results are named by the original ones.
    """
    specs = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    if not specs:
        raise ValueError("layer=[] names no layer; pass a module name, a module, or 'auto'.")
    names = _names(model)
    modules = _modules(model)
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
            out.append(LayerRef(_plain(name), modules[name], call))
        else:
            raise TypeError(
                f"layer must be 'auto', a module name, a module or a list of them; got {type(spec).__name__}."
            )
    return out


# Modules that only pass their input on in eval mode: never a candidate (the producer of their input is).
_PASSTHROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
MAX_PREFIX_TOKENS = 8  # class + distillation + register tokens dropped in front of a token grid


def _grid_fits(grid: Sequence[int], size: Sequence[int]) -> bool:
    """Whether ``grid`` (h, w) is a plausible feature grid for an input of spatial ``size`` (H, W).

    One common stride s = (H + W) / (h + w) must give every side within one cell: |h - H/s| < 1 and
    |w - W/s| < 1 (convolutions and patch embeddings round up or down), and h <= H, w <= W.
    """
    if any(g < 1 or g > s for g, s in zip(grid, size)):
        return False
    return _deviation(grid, size) < 1.0


def _deviation(grid: Sequence[int], size: Sequence[int]) -> float:
    """The largest |g - S/s| over the sides, s = (H + W) / (h + w) the common stride."""
    stride = sum(size) / sum(grid)
    return max(abs(g - s / stride) for g, s in zip(grid, size))


def infer_grid(tokens: int, size: Sequence[int]) -> Optional[Tuple[int, int, int]]:
    """(skip, h, w) for ``tokens`` tokens of an input of spatial size (H, W), or ``None``.

    Leading tokens (class, distillation, register tokens: up to ``MAX_PREFIX_TOKENS``) are dropped so
    that the rest, T - skip = h * w, forms a grid with one stride s along both sides (|h - H/s| < 1 and
    |w - W/s| < 1, see :func:`_grid_fits`); of all (skip, h, w) the one closest to an exact grid wins,
    ties going to fewer dropped tokens.
    """
    H, W = int(size[-2]), int(size[-1])
    best = None
    for skip in range(0, min(MAX_PREFIX_TOKENS, tokens - 2) + 1):
        n = tokens - skip
        for h in range(1, int(math.isqrt(n)) + 1):
            if n % h:
                continue
            for gh, gw in ((h, n // h), (n // h, h)):
                if gh * gw > 1 and _grid_fits((gh, gw), (H, W)):
                    key = (round(_deviation((gh, gw), (H, W)), 9), skip)
                    if best is None or key < best[0]:
                        best = (key, (skip, gh, gw))
    return None if best is None else best[1]


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.permute(0, t.dim() - 1, *range(1, t.dim() - 1))


def _aspect_error(grid: Sequence[int], size: Sequence[int]) -> float:
    """|log((h / w) / (H / W))|: how far a grid's aspect ratio is from the input's (0: the same shape)."""
    return abs(math.log((grid[0] / grid[1]) / (size[0] / size[1])))


def read_4d(
    shape: Sequence[int], size: Sequence[int]
) -> Optional[Tuple[Optional[Callable[[torch.Tensor], torch.Tensor]], bool]]:
    """How to read a 4-D layer output (N, a, b, c) for an input of spatial ``size`` (H, W).

    Returns ``(reshape, ambiguous)`` or ``None`` (not a map). The channels-first reading takes (b, c) as
    the grid, the channels-last one (a, b) (Swin and ConvNeXt blocks, a ``Linear`` on the last axis).
    A reading fits when one stride gives both sides within a cell (:func:`_grid_fits`). When both fit, the
    one whose grid has the input's aspect ratio and an integer stride wins; ``ambiguous`` is True when
    the two stay equally good (e.g. (N, 8, 8, 8) for a square input), and channels-first is taken.
    """
    first = _grid_fits(shape[2:], size) and shape[2] * shape[3] > 1
    last = _grid_fits(shape[1:3], size) and shape[1] * shape[2] > 1
    if first and last:

        def cost(grid):
            strides = [s / g for s, g in zip(size, grid)]
            return round(
                _aspect_error(grid, size) + sum(abs(v - round(v)) for v in strides) / len(strides), 6
            )

        cf, cl = cost(shape[2:]), cost(shape[1:3])
        if cf == cl:
            return None, True
        return (None, False) if cf < cl else (_channels_last, False)
    if first:
        return None, False
    if last:
        return _channels_last, False
    if shape[2] * shape[3] > 1 and shape[2] <= size[0] and shape[3] <= size[1]:
        return None, False  # non-uniform strides: a map inside the input
    return None


_ELEMENTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Hardswish,
    nn.Sigmoid,
    nn.Tanh,
) + _PASSTHROUGH
_CHANNELS_FIRST = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.BatchNorm2d,
    nn.InstanceNorm2d,
    nn.GroupNorm,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Upsample,
)
_CHANNELS_LAST = (nn.Linear, nn.LayerNorm)


def layout_hint(module: nn.Module) -> Optional[str]:
    """``"first"`` / ``"last"`` when the module's kind tells a 4-D output's layout (a convolution, batch norm or
    pooling is channels-first; a ``Linear`` or ``LayerNorm`` acts on the last axis), else ``None``. A
    ``Sequential`` is judged by its last module that is not element-wise (activations, dropout)."""
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module)):
            if not isinstance(child, _ELEMENTWISE):
                return layout_hint(child)
        return None
    if isinstance(module, _CHANNELS_FIRST):
        return "first"
    if isinstance(module, _CHANNELS_LAST):
        return "last"
    return None


def infer_layout(
    shape: Sequence[int], input_shape: Sequence[int]
) -> Optional[Tuple[Optional[Callable[[torch.Tensor], torch.Tensor]], bool]]:
    """How a layer output of ``shape`` becomes a map for an input of ``input_shape`` (N, C, *spatial).

    Returns ``(reshape, seq_first)`` (``reshape=None``: already a channels-first map) or ``None`` when
    the output is not a map. Recognised, for 2-D inputs (N, C, H, W):

    - (N, C, h, w) maps whose grid fits the input (one stride for both sides, see ``_grid_fits``);
    - channels-last (N, h, w, C) maps (Swin, ConvNeXt blocks), when only that reading fits;
    - tokens (N, T, C) and sequence-first tokens (T, N, C) (``nn.Transformer*`` with
      ``batch_first=False``): the grid is inferred by :func:`infer_grid`, leading tokens dropped.

    For 3-D inputs (N, C, D, H, W) a (N, C, d, h, w) output with every side <= the input's is a map.
    A 4-D output that fits neither reading but lies inside the input (non-uniform strides) stays a map.
    """
    n = int(input_shape[0])
    size = [int(s) for s in input_shape[2:]]
    shape = [int(s) for s in shape]
    if len(size) == 3:
        ok = (
            len(shape) == 5 and all(1 <= g <= s for g, s in zip(shape[2:], size)) and math.prod(shape[2:]) > 1
        )
        return (None, False) if ok else None
    if len(shape) == 4:
        reading = read_4d(shape, size)
        return None if reading is None else (reading[0], False)
    if len(shape) == 3 and shape[2] > 1:
        seq_first = shape[0] != n and shape[1] == n
        found = infer_grid(shape[0] if seq_first else shape[1], size)
        if found is None:
            return None
        skip, h, w = found
        return tokens_to_grid(h, w, skip), seq_first
    return None


def auto_candidates(
    model: nn.Module,
    x: torch.Tensor,
    reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    forward_kwargs: Optional[dict] = None,
) -> List[LayerRef]:
    """Layers of ``model`` whose output is a map for input ``x``, the last one to finish first.

    One forward pass without gradients records every submodule call whose output is a map (see
    :func:`infer_layout`: (N, C, h, w), channels-last (N, h, w, C), tokens (N, T, C) or (T, N, C) with
    an inferred grid, (N, C, d, h, w) for volumes); candidates come latest first, so the default layer is
    the last map before the model's head. The model's own dense output (a layer whose (N, C) equal those
    of a segmenter's class-score map, before or after resizing) is not a feature map and is skipped, as
    are Dropout/Identity modules and, for tokens, ``nn.Linear``
    projections (queries, keys, values, MLP units) are skipped. Each candidate carries its reshape. The
    method then takes the first candidate whose map positions receive the target's gradient (for a ViT
    the final norm's patch tokens get none: only the class token reaches the head). A module called
    several times is returned as ``name@k``. (:func:`gradcam.engine.search_capture` records the same
    candidates inside the capture's own forward: see :class:`CandidateRecorder`.)
    """
    rec = CandidateRecorder(model, x, reshape)
    out = _forward_with_hooks(model, x, rec.make_hook, forward_kwargs)
    return [r for r, _ in rec.refs(out)]


class CandidateRecorder:
    """Records, during a forward of ``model`` on ``x``, every submodule call whose output is a map (the
    candidates of ``layer="auto"``, see :func:`auto_candidates`): ``make_hook(module)`` gives the forward
    hook to register on each submodule; after the forward, ``refs(output)`` orders them, latest first, each
    with the index of its event (``events[i]``: the call recorded i-th). A hook that records appends one
    event, so a caller wrapping it sees ``len(events)`` grow."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        reshape: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ):
        self.names = _names(model)
        self.model_name = type(model).__name__
        self.x = x
        self.reshape = reshape
        # (module, call index, reshape, seq_first, (N, C) of the output, ambiguous layout, output shape)
        self.events: List[Tuple[Any, ...]] = []
        self.counts: dict = {}
        self.layouts: dict = {}
        self.ambiguous: dict = {}
        self.owner = threading.get_ident()

    def make_hook(self, mod: nn.Module) -> Callable:
        """The forward hook of ``mod``: counts its calls and records a map output as an event."""
        return self.hook

    def hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if threading.get_ident() != self.owner:  # another thread's forward of a shared model: not ours
            return None
        x, reshape, counts, events = self.x, self.reshape, self.counts, self.events
        k = counts.get(id(module), 0)
        counts[id(module)] = k + 1
        if not isinstance(output, torch.Tensor) or isinstance(module, _PASSTHROUGH):
            return None
        if reshape is not None:
            t = output
            if t.dim() != x.dim():
                try:
                    t = reshape(t)
                except Exception:  # noqa: BLE001 - a reshape that does not fit this tensor: not a candidate
                    return None
            if t.dim() == x.dim() and math.prod(t.shape[2:]) > 1:
                events.append((module, k, None, False, None, False, None))
            return None
        shape = tuple(output.shape)
        layout = self.layouts.get(shape, False)
        if layout is False:  # many outputs share a shape: read each shape once
            layout = self.layouts[shape] = infer_layout(shape, x.shape)
        if layout is None or (output.dim() == 3 and isinstance(module, nn.Linear)):
            return None
        if not layout[1] and output.shape[0] != x.shape[0]:
            return None  # not one map per image (a detector's per-proposal features)
        amb = False
        if output.dim() == 4 and x.dim() == 4:
            known = self.ambiguous.get(shape)
            if known is None:
                known = self.ambiguous[shape] = bool((read_4d(shape, x.shape[2:]) or (None, False))[1])
            if known:  # both readings fit: the module's kind may tell
                layout, amb = _resolve_ambiguous(module, output, x, layout)
        events.append((module, k, layout[0], layout[1], tuple(output.shape[:2]), amb, tuple(output.shape)))
        return None

    def refs(self, output: Any) -> List[Tuple[LayerRef, int]]:
        """The candidates, latest first, each with its event's index; a clear error when there is none."""
        refs = _order_candidates(self.events, self.counts, self.names, _tensors(output), self.x)
        if not refs:
            raise ValueError(
                f"No submodule of {self.model_name} outputs a spatial map (N, C, h, w with h*w > 1) for an "
                f"input of shape {tuple(self.x.shape)}. Grad-CAM needs a convolutional feature map: pass layer=... "
                "naming one, and for token models (ViT) also reshape=gradcam.layers.tokens_to_grid(h, w)."
            )
        return refs


def _resolve_ambiguous(
    module: nn.Module, output: torch.Tensor, x: torch.Tensor, layout: Tuple[Any, bool]
) -> Tuple[Tuple[Any, bool], bool]:
    """``layout`` settled by the module's kind where both 4-D readings fit; and whether it stays ambiguous."""
    amb = output.dim() == 4 and x.dim() == 4 and (read_4d(output.shape, x.shape[2:]) or (None, False))[1]
    if amb:  # both readings fit equally: the module's kind may tell (a Linear is channels-last)
        hint = layout_hint(module)
        amb = hint is None
        if hint == "last":
            layout = (_channels_last, False)
    return layout, bool(amb)


def _forward_with_hooks(
    model: nn.Module,
    x: torch.Tensor,
    make_hook: Callable[[nn.Module], Callable],
    forward_kwargs: Optional[dict],
) -> Any:
    """Run ``model(x)`` without gradients, ``make_hook(mod)`` on every submodule (removed after)."""
    handles = []
    try:
        for mod in model.modules():
            if mod is model:
                continue
            handles.append(mod.register_forward_hook(make_hook(mod)))
        with torch.no_grad():
            return model(x, **(forward_kwargs or {}))
    finally:
        for h in handles:
            h.remove()


def _order_candidates(
    events: list, counts: dict, names: dict, outputs: List[torch.Tensor], x: torch.Tensor
) -> List[Tuple[LayerRef, int]]:
    """The recorded map outputs as :class:`LayerRef`, latest first, each module call once; the model's own
    dense output skipped; layers whose layout stays ambiguous last (with a warning when only they remain);
    each with the index of its event."""
    dense = {tuple(t.shape[:2]) for t in outputs if t.dim() == x.dim()}
    refs: List[Tuple[LayerRef, Any, int]] = []
    ambiguous: List[Tuple[LayerRef, Any, int]] = []
    seen = set()
    for i in range(len(events) - 1, -1, -1):
        module, k, shaper, seq_first, lead, amb, shape = events[i]
        if shaper is None and lead in dense:
            continue  # the model's own dense output (a segmenter's class-score map), not a feature map
        call = k if counts[id(module)] > 1 else None
        key = (id(module), call)
        if key in seen:
            continue
        seen.add(key)
        ref = LayerRef(names[id(module)], module, call, shaper, seq_first)
        (ambiguous if amb else refs).append((ref, shape, i))
    if refs and ambiguous:
        log.debug("gradcam: layer='auto' tries %d layer(s) of ambiguous layout last", len(ambiguous))
    elif ambiguous:
        ref, shape, _ = ambiguous[0]
        warnings.warn(
            f"layer='auto': layer '{ref.spec}' outputs {shape}, which reads as channels-first (N, C, h, w) or "
            f"channels-last (N, h, w, C) equally well for an input of {tuple(x.shape)}; it is read as "
            "channels-first. If that is wrong, pass layer=... with reshape=lambda t: t.permute(0, 3, 1, 2).",
            RuntimeWarning,
            stacklevel=4,
        )
    return [(r, i) for r, _, i in refs + ambiguous]


def _tensors(output, depth: int = 0) -> List[torch.Tensor]:
    """The tensors inside a model output (tensor, dict, list/tuple, an object with ``.logits``)."""
    if isinstance(output, torch.Tensor):
        return [output]
    if depth > 2:
        return []
    if isinstance(output, dict):
        items = list(output.values())
    elif isinstance(output, (list, tuple)):
        items = list(output)
    else:
        items = [getattr(output, "logits", None)]
    return [t for v in items for t in _tensors(v, depth + 1)]


def gradient_reaches(gradient: torch.Tensor) -> torch.Tensor:
    """(N, K) bool: whether any position of each map received a non-zero gradient dy/dA."""
    return gradient.flatten(2).ne(0).any(-1)


def check_autograd(x: torch.Tensor, needs_gradients: bool = True) -> None:
    """Raise a clear error when gradients are needed but cannot be computed: inside
    ``torch.inference_mode()``, or for an input tensor created there (an inference tensor).
    ``torch.no_grad()`` is fine: the engine turns gradients on for its own pass. Called at the start of
    every capture (it also forgets a zero score explained by an earlier call's target)."""
    _zero_reason.pending = False  # a new call: no target has explained a zero score yet
    if not needs_gradients:
        return
    fix = (
        "Call the explanation outside the `with torch.inference_mode():` block, or pass a tensor cloned "
        "outside it (x = x.clone() after the block)."
    )
    if torch.is_inference_mode_enabled():
        raise RuntimeError(
            "Gradients cannot be computed inside torch.inference_mode(), and gradient-based "
            f"explanations need them. {fix} (torch.no_grad() is fine.)"
        )
    if isinstance(x, torch.Tensor) and x.is_inference():
        raise RuntimeError(
            "The input was created inside torch.inference_mode() (an inference tensor), so no "
            f"gradient can flow through it. {fix}"
        )


_SETTLED: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
_zero_reason = threading.local()


def note_zero_target(message: str) -> None:
    """A target says why its score is zero (e.g. no detection matched its box): warn with that reason, and
    skip the generic "no gradient reaches" warning for the flat map that follows in this thread."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)
    _zero_reason.pending = True


def _take_zero_reason(peek: bool = False) -> bool:
    pending = bool(getattr(_zero_reason, "pending", False))
    if not peek:
        _zero_reason.pending = False
    return pending


def settle_without_gradient(cache: dict, lock, key: tuple, candidates: List[LayerRef], capture: Any) -> Any:
    """``layer="auto"`` found no layer that receives a gradient: the model's output does not depend on its
    input (e.g. a zero classifier head). Say so plainly, cache the outcome (later calls of this input shape
    try one layer, not the whole list) and return ``capture`` (all-zero maps)."""
    if _take_zero_reason(peek=True):  # the target explained its zero score itself (no detection matched)
        return capture
    ref = capture.layers[0]
    warnings.warn(
        f"The model's output does not depend on its input: the target's gradient is zero at each of the "
        f"layers that layer='auto' tried ({min(len(candidates), 24)}), so every map is all zero (layer '{ref.spec}' is "
        "returned). Typical cause: a classifier head whose weights are zero (untrained or re-initialised); "
        "load trained weights or explain another output.",
        RuntimeWarning,
        stacklevel=4,
    )
    for g in capture.gradients:
        _SETTLED[id(g)] = g
    with lock:
        if cache.get(key) is candidates:
            cache[key] = [ref]
    return capture


def warn_if_no_gradient(gradient: Optional[torch.Tensor], layer: str) -> None:
    """Warn when a target's gradient is zero at every position of ``layer``: its map is all zero.

    Typical cause: a token model's final norm (only the class token reaches the head), a layer after the
    explained output, or a score that is a constant (e.g. a segmentation class predicted nowhere).
    """
    if gradient is None or _SETTLED.get(id(gradient)) is gradient or _take_zero_reason():
        return
    reached = gradient_reaches(gradient)
    if bool(reached.all()):
        return
    bad = (~reached).nonzero().tolist()
    warnings.warn(
        f"The map(s) (image, target) {bad[:5]}{' ...' if len(bad) > 5 else ''} are all zero: no gradient of the "
        f"target reaches any position of layer '{layer}'. Pick a layer the score depends on position by position: "
        "layer='auto' does this; for a ViT pass a layer inside the last block (e.g. 'blocks.11.norm1', not the "
        "final norm, whose patch tokens never reach the head); for a dense target check that its mask or box "
        "is not empty.",
        RuntimeWarning,
        stacklevel=3,
    )


def resolve(model: nn.Module, layer: LayerSpec) -> List[LayerRef]:
    """Deprecated alias of :func:`resolve_layers` (two functions were named ``resolve``)."""
    warnings.warn(
        "gradcam.layers.resolve is renamed resolve_layers; the old name will be removed.",
        DeprecationWarning,
        stacklevel=2,
    )
    return resolve_layers(model, layer)


def tokens_to_grid(height: int, width: int, skip: int = 1) -> Callable[[torch.Tensor], torch.Tensor]:
    """A ``reshape`` for token models: (N, skip + h*w, D) tokens -> (N, D, h, w) map.

    ``skip`` leading tokens (the class token of a ViT) are dropped. ``"auto"`` and layers named
    without ``reshape=`` infer ``h``, ``w`` and ``skip`` themselves (:func:`infer_grid`).
    """

    def reshape(t: torch.Tensor) -> torch.Tensor:
        if t.dim() != 3 or t.shape[1] != skip + height * width:
            raise ValueError(
                f"tokens_to_grid({height}, {width}, skip={skip}) expects (N, {skip + height * width}, D) tokens, "
                f"got shape {tuple(t.shape)}."
            )
        return t[:, skip:].reshape(t.shape[0], height, width, t.shape[2]).permute(0, 3, 1, 2)

    return reshape
