"""One method's share of the folder job: :class:`Job` (output names, resume key, options) and
:class:`Outcome` (what happened to one photo)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .. import storage
from ..io import Item
from ..resume import file_stamp, fingerprint, is_up_to_date, record_path
from .options import DEFAULT_METHOD, Options

MAX_PIXELS = 50_000_000  # gradcam.image.MAX_PIXELS (not imported here: building a job needs no torch)


def output_names(out: str, stem: str, k: int, with_json: bool) -> Tuple[List[str], Optional[str]]:
    """The overlay PNGs (``<stem>.png``, or ``<stem>.topR.png`` for K > 1) and the JSON path (or ``None``)."""
    base = storage.join(out, stem)
    pngs = [base + ".png"] if k == 1 else [f"{base}.top{r + 1}.png" for r in range(k)]
    return pngs, (base + ".json" if with_json else None)


@dataclass
class Job:
    """Everything one method of the folder job needs per batch (built once by :func:`gradcam.pipeline.run`).

    ``loaded``/``method``: the model and the method object (``None`` in a template sent to a Ray actor,
    which loads its own); ``target`` (class id) or the top ``k``; ``out``; ``options``: the resume key's
    options (:func:`result_options`); ``method_name``: the registered name; outputs of a method other than
    ``gradcam`` carry it (``<stem>.<method>.png``), so several methods share one output folder.
    """

    loaded: Any
    method: Any
    target: Optional[int]
    k: int
    out: str
    options: Dict[str, Any]
    alpha: float = 0.5
    colormap: str = "jet"
    colorbar: bool = False
    json: bool = False
    max_pixels: Optional[int] = MAX_PIXELS
    maps: bool = False
    box_threshold: float = (
        0.45  # gradcam.photos.BOX_THRESHOLD (not imported here: the CLI starts without torch)
    )
    box_rule: str = "largest"  # gradcam.regions.DEFAULT_BOX_RULE
    method_name: str = DEFAULT_METHOD
    layer: Optional[str] = None
    method_kwargs: Dict[str, Any] = field(default_factory=dict)
    storage_options: Dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"

    def stem(self, item: Item) -> str:
        """The outputs' stem of ``item``: its own, plus ``.<method>`` for a method other than ``gradcam``."""
        return item.stem if self.method_name == DEFAULT_METHOD else f"{item.stem}.{self.method_name}"

    def maps_path(self, item: Item) -> Optional[str]:
        """``out/<stem>.maps.pt`` with ``maps`` (else ``None``)."""
        return storage.join(self.out, self.stem(item) + ".maps.pt") if self.maps else None

    def outputs(self, item: Item) -> Tuple[List[str], Optional[str]]:
        """The overlay PNGs and the JSON path (or ``None``) of ``item``."""
        return output_names(self.out, self.stem(item), self.k, self.json)

    def record(self, item: Item) -> str:
        """The resume record of ``item``'s outputs (see :mod:`gradcam.resume`)."""
        return record_path(self.out, self.stem(item))

    def fingerprint(self, item: Item) -> Dict[str, Any]:
        """The resume key of ``item`` (see :mod:`gradcam.resume`; an object's stamp from its listing when known)."""
        return fingerprint(item.path, self.options, item.stamp)

    def up_to_date(self, item: Item) -> bool:
        """True when ``item``'s outputs exist, are intact, and were made by this job's model and options."""
        pngs, js = self.outputs(item)
        files = pngs + [f for f in (js, self.maps_path(item)) if f]
        return is_up_to_date(self.record(item), self.fingerprint(item), files)


@dataclass
class Outcome:
    """What happened to one photo: its result and outputs, or why it failed (``reason``)."""

    item: Item
    result: Any = None
    pngs: List[str] = field(default_factory=list)
    json: Optional[str] = None
    reason: Optional[str] = None


def model_stamp(model: str) -> Optional[Dict[str, Any]]:
    """A file stamp for ``model`` when it names a file (TorchScript) or a module (``package.module:factory``)."""
    if os.path.exists(model):
        return file_stamp(model)
    if ":" in model and "." in model.split(":")[0]:
        import importlib.util

        try:
            spec = importlib.util.find_spec(model.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        return file_stamp(spec.origin) if spec is not None and spec.origin else None
    return None


def box_threshold_of(options: Options, loaded: Any) -> float:
    """The explain box's threshold: ``box_threshold``, else the one measured for the model or its ``quality``
    preset (``loaded.box_threshold``), else :data:`gradcam.photos.BOX_THRESHOLD`."""
    from ..photos import BOX_THRESHOLD, check_box_threshold

    if options.box_threshold is not None:
        return check_box_threshold(options.box_threshold)
    own = getattr(loaded, "box_threshold", None)
    return BOX_THRESHOLD if own is None else own


def result_options(
    options: Options,
    loaded: Any,
    target: Optional[int],
    method: str,
    method_kwargs: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Every option that changes an output of the folder job: the resume key (with the input file).

    The model (name, its file or module, its weights file), the method, layer, resolved target class,
    K, the model's input size, the overlay's alpha/colormap/colorbar, json, maps, the box threshold and
    the neurons file, the method's own options when given, and the precision when not fp32. Not in it: device, batch size, force, engine (they do not change what is written).
    The gradcam version is: an upgrade recomputes (its boxes, maps or records may differ).
    """
    from .. import __version__

    extra: Dict[str, Any] = {"method_options": dict(method_kwargs)} if method_kwargs else {}
    if options.precision != "fp32":  # maps differ (slightly) from fp32's; fp32 keeps the key it always had
        extra["precision"] = options.precision
    return {
        "gradcam": __version__,
        "model": options.model,
        "model_file": model_stamp(options.model),
        "weights": file_stamp(options.weights),
        "input_size": loaded.size,
        "loaded_model": getattr(loaded, "name", None),
        "fixed_size": getattr(loaded, "fixed_size", None),
        "mean": list(getattr(loaded, "mean", ())),
        "std": list(getattr(loaded, "std", ())),
        "max_side": loaded.max_side,
        "method": method,
        "layer": options.layer,
        "target": target,
        "top": options.k,
        "alpha": options.alpha,
        "colormap": options.colormap,
        "colorbar": bool(options.colorbar),
        "json": options.writes_json,
        "maps": bool(options.maps),
        "box_threshold": box_threshold_of(options, loaded),
        "box_rule": options.box_rule,
        "neurons": file_stamp(options.neurons),
        **extra,
    }


def make_method(
    loaded: Any,
    name: str,
    layer: Optional[str],
    kwargs: Optional[Dict[str, Any]] = None,
    precision: str = "fp32",
) -> Any:
    """The method object ``name`` (:mod:`gradcam.methods.registry`) on ``loaded``'s model at ``layer`` (default the
    model's own), with ``kwargs`` (a perturbation method's batch size or mask count) and the forward passes'
    ``precision`` (set on the object, so any registered factory takes it). One per job and run."""
    from ..methods import registry

    method = registry.get(name)(loaded.model, layer=layer or loaded.layer, **(kwargs or {}))
    if precision != "fp32":
        method.precision = method.check_precision(precision)
    return method


def build_job(options: Options, loaded: Any, method_name: str, target: Optional[int]) -> Job:
    """The :class:`Job` of ``method_name`` on ``loaded`` (the method object made by :func:`make_method`)."""
    from .method_options import method_kwargs

    kw = method_kwargs(method_name, options.method_options)
    method = make_method(loaded, method_name, options.layer, kw, options.precision)
    return Job(
        loaded,
        method,
        target,
        options.k,
        options.out,
        result_options(options, loaded, target, method_name, kw),
        alpha=options.alpha,
        colormap=options.colormap,
        colorbar=bool(options.colorbar),
        json=options.writes_json,
        max_pixels=options.max_pixels,
        maps=bool(options.maps),
        box_threshold=box_threshold_of(options, loaded),
        box_rule=options.box_rule,
        method_name=method_name,
        layer=options.layer,
        method_kwargs=kw,
        storage_options=dict(options.storage_options),
        precision=options.precision,
    )
