"""Explaining batches of photos with a loaded model: :class:`ImageResult` and :func:`explain_batch`.

The batched core below :mod:`gradcam.api` (``gradcam.explain``) and :mod:`gradcam.pipeline` (the folder
job of ``gradcam explain``): one capture per group of equally sized inputs, peaks and boxes on the maps at
the input's resolution, mapped back to original-photo pixels.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image

from . import engine
from .explanation import Explanation
from .image import boxes, overlay, peaks, resize_map, scale_box, scale_point
from .models import LoadedModel
from .regions import BOX_RULES, BOX_THRESHOLD, DEFAULT_BOX_RULE, PAPER_BOX_THRESHOLD, check_box_rule  # noqa: F401

ClassSpec = Union[None, int, str]
# BOX_THRESHOLD (0.45, every user-facing box) and PAPER_BOX_THRESHOLD (0.15, Table 1): gradcam.regions
BOX_RESOLUTION = 96  # boxes are segmented on maps resampled to <= 96 px per side (see image.boxes)


@dataclass
class ImageResult:
    """The explanation of one photo.

    - ``image``: the photo as loaded (RGB, EXIF orientation applied), at its original size (W, H);
    - ``predictions``: the top-5 ``(class name, class id, probability)``;
    - ``class_ids`` / ``classes`` / ``scores`` / ``probabilities``: the K explained classes, their logits and
      softmax probabilities;
    - ``input_maps`` (K, h, w): the maps at the model input's resolution, in [0, 1];
    - ``peaks``: K ``[x, y]`` of each map's maximum and ``boxes``: K ``[x0, y0, x1, y1]`` (exclusive
      ends, area ``(x1 - x0) * (y1 - y0)``, as ``torchvision.ops``) of the largest segment of the map at or
      above ``box_threshold`` times its maximum (default :data:`BOX_THRESHOLD` = 0.45, measured on the
      annotated photos; the paper's 15% with ``box_threshold=0.15``), both in original-photo pixels
      (``None`` for a flat map);
    - ``layer``, ``method``, ``model``: what produced it;
    - ``weights`` (K, C): the channel weights alpha of each explained class (``None`` for methods
      without them), for textual explanations (:func:`gradcam.neurons.describe`).
    """

    image: Image.Image
    source: Optional[str]
    predictions: List[Tuple[str, int, float]]
    class_ids: List[int]
    classes: List[str]
    scores: List[float]
    probabilities: List[float]
    input_maps: torch.Tensor
    peaks: List[Optional[List[int]]]
    boxes: List[Optional[List[int]]]
    layer: str
    method: str
    model: str
    extra: Dict = field(default_factory=dict)
    weights: Optional[torch.Tensor] = None
    box_threshold: float = BOX_THRESHOLD
    box_rule: str = (
        DEFAULT_BOX_RULE  # which segment(s) the box surrounds: largest, peak or all (gradcam.regions)
    )

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of the original photo."""
        return self.image.size

    @property
    def maps(self) -> torch.Tensor:
        """(K, H, W) maps at the photo's original size (bilinear from ``input_maps``), in [0, 1]."""
        w, h = self.image.size
        return resize_map(self.input_maps, (h, w))

    def overlay(
        self, k: int = 0, alpha: float = 0.5, colormap: str = "jet", colorbar: bool = False
    ) -> Image.Image:
        """The k-th map blended on the photo at its original size (see :func:`gradcam.overlay`)."""
        return overlay(self.image, self.input_maps[k], alpha=alpha, colormap=colormap, colorbar=colorbar)

    def to_dict(self) -> dict:
        """A JSON-ready record: file, size, model, method, layer, top-5 predictions and per-class explanations."""
        return {
            "file": self.source,
            "size": list(self.image.size),
            "model": self.model,
            "method": self.method,
            "layer": self.layer,
            "predictions": [
                {"class": c, "id": i, "probability": round(p, 6)} for c, i, p in self.predictions
            ],
            "explanations": [
                {
                    "class": c,
                    "id": i,
                    "score": round(s, 6),
                    "probability": round(p, 6),
                    "peak": pk,
                    "box": bx,
                    "box_threshold": self.box_threshold,
                    "box_rule": self.box_rule,
                }
                for c, i, s, p, pk, bx in zip(
                    self.classes, self.class_ids, self.scores, self.probabilities, self.peaks, self.boxes
                )
            ],
            **self.extra,
        }

    def _repr_html_(self) -> str:
        """Jupyter display: the overlays with class names and probabilities, and the top-5 predictions."""
        from .report.display import image_result_html

        return image_result_html(self)


@dataclass
class ConceptImageResult(ImageResult):
    """The concepts of one photo (Deep Feature Factorization, ``--method dff``): ``input_maps`` (K, h, w) are
    the K concept maps, ``class_ids``/``classes`` each concept's top class by the model's head and ``scores``
    that class's head probability for the concept; ``concept_scores`` (K, classes) the head's softmax for each
    concept. :meth:`overlay` draws the concept figure: the photo coloured by its strongest concept and a legend
    of each concept's colour and top classes (:func:`gradcam.methods.factorization.concept_figure`)."""

    concept_scores: Optional[torch.Tensor] = None
    labels: Optional[Sequence[str]] = None

    def overlay(
        self, k: int = 0, alpha: float = 0.6, colormap: str = "jet", colorbar: bool = False
    ) -> Image.Image:
        """The concept figure of the photo at its original height (``k``, ``colormap`` and ``colorbar`` do not
        apply: every concept is drawn, each in its own colour)."""
        from .methods.factorization import concept_figure

        return concept_figure(
            [self.image],
            self.input_maps[None],
            self.concept_scores,
            self.labels,
            alpha=alpha,
            height=self.size[1],
        )


def is_concept_method(method: Any) -> bool:
    """Whether ``method`` explains concepts rather than classes (:func:`gradcam.methods.registry.explains_concepts`
    of its name): it is called without a target and gives one concept map per concept."""
    from .methods import registry

    return registry.explains_concepts(getattr(method, "name", None))


def check_box_threshold(box_threshold: float) -> float:
    """``box_threshold`` as a float in (0, 1], or a ValueError that says what it is."""
    if (
        isinstance(box_threshold, bool)
        or not isinstance(box_threshold, (int, float))
        or not 0 < box_threshold <= 1
    ):
        raise ValueError(
            f"box_threshold is a fraction of the map's maximum in (0, 1] (default {BOX_THRESHOLD}; "
            f"the Grad-CAM paper's {PAPER_BOX_THRESHOLD}); got {box_threshold!r}."
        )
    return float(box_threshold)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``: for CUDA through pinned (page-locked) host memory with a non-blocking copy (the
    host goes on while the copy runs; later kernels on the stream wait for it); otherwise ``x.to(device)``."""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def to_host(*tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The tensors on the CPU: from a CUDA device each copy is non-blocking (into pinned memory) and one
    synchronisation waits for them all, instead of one round trip per tensor."""
    if not any(t.device.type == "cuda" for t in tensors):
        return tuple(t.cpu() for t in tensors)
    out = tuple(t.to("cpu", non_blocking=True) for t in tensors)
    torch.cuda.synchronize()
    return out


_HOST = ("maps", "peaks", "boxes", "ok", "ids", "scores", "top_p", "top_i", "sel_p", "weights")


def _on_host(res: Explanation, box_threshold: float, box_rule: str) -> Dict[str, Any]:
    """One batch's top-5, the explained classes' probabilities, the peaks and boxes, computed where the maps are
    (the model's device) and brought to the host in one copy (:func:`to_host`): ``maps`` (N, K, h, w) and
    ``weights`` (N, K, C) or ``None`` as CPU tensors, the rest as nested lists."""
    probs = res.probabilities()
    top_p, top_i = probs.topk(min(5, probs.shape[1]), dim=1)
    sel_p = probs.gather(1, res.targets.clamp_min(0))
    n, k, h, w = res.maps.shape
    maps = res.maps.detach().float()
    bx, ok = boxes(maps.reshape(n * k, h, w), box_threshold, max_side=BOX_RESOLUTION, rule=box_rule)
    extra = [res.weights.detach().float()] if res.weights is not None else []
    host = to_host(
        maps,
        peaks(maps),
        bx.view(n, k, 4),
        ok.view(n, k),
        res.targets,
        res.scores.float(),
        top_p,
        top_i,
        sel_p,
        *extra,
    )
    out: Dict[str, Any] = {name: t.tolist() for name, t in zip(_HOST[1:9], host[1:9])}
    out["maps"], out["weights"] = host[0], (host[9] if extra else None)
    return out


def _run(method, loaded: LoadedModel, x: torch.Tensor, target: Optional[int], top_k: int) -> Explanation:
    return _run_many([method], loaded, x, target, top_k)[0]


def _run_many(
    methods: Sequence, loaded: LoadedModel, x: torch.Tensor, target: Optional[int], top_k: int
) -> List[Explanation]:
    """Each method's explanation of ``x``; several share one capture where they can
    (:func:`gradcam.methods.shared.explain_many`)."""
    from .methods.shared import explain_many

    try:
        concepts = {i: m(x) for i, m in enumerate(methods) if is_concept_method(m)}  # no target: concepts
        rest = [m for i, m in enumerate(methods) if i not in concepts]
        if len(rest) == 1:
            done = [rest[0](x, top_k=top_k) if target is None else rest[0](x, target=target)]
        elif not rest:
            done = []
        elif target is None:
            done = explain_many(rest, x, top_k=top_k)
        else:
            done = explain_many(rest, x, target=target)
        it = iter(done)
        return [concepts[i] if i in concepts else next(it) for i in range(len(methods))]
    except Exception as e:
        if isinstance(loaded.model, torch.jit.ScriptModule) and (
            isinstance(e, NotImplementedError) or "hook" in str(e)
        ):
            raise ValueError(
                "TorchScript models do not run Python hooks, so a layer's output cannot be captured. Load the "
                "model as Python code instead: --model package.module:factory --weights state_dict.pt."
            ) from e
        from .models.inputs import input_error

        err = input_error(loaded, x, e)  # the model refuses this input shape: one line naming it and --size
        if err is e:
            raise
        raise err from None


def explain_batch(
    images: Sequence[Image.Image],
    loaded: LoadedModel,
    method,
    target: Optional[int] = None,
    top_k: int = 1,
    sources: Optional[Sequence[Optional[str]]] = None,
    inputs: Optional[Sequence[torch.Tensor]] = None,
    box_threshold: float = BOX_THRESHOLD,
    box_rule: str = DEFAULT_BOX_RULE,
    precision: Optional[str] = None,
) -> List[ImageResult]:
    """Explain RGB photos with ``loaded``'s model; photos of equal preprocessed size share one batch.

    For each photo: x = preprocess(photo) (whole photo, short side resized); one capture explains the K
    classes (``target`` or the top ``top_k``); peaks and boxes are computed on the maps at the input's
    resolution (all images and classes at once) and mapped to original-photo pixels. ``inputs``: the photos
    already preprocessed (``loaded.preprocess(photo)`` each, e.g. by a Ray Data task). ``box_threshold``:
    each box is around the segment(s) of ``map >= box_threshold * max(map)`` that ``box_rule`` picks
    (``"largest"``: the paper's rule; ``"peak"``: the one holding the peak; ``"all"``). ``precision``
    (``"fp32"``, ``"bf16"``, ``"fp16"``; default: the method's own, see :func:`gradcam.engine.precision`): the
    forward passes' autocast precision. On a CUDA device the batch goes up from pinned memory without blocking
    (:func:`to_device`), and the maps stay on the device until peaks and boxes are computed there; everything
    comes back in one synchronised copy (:func:`to_host`).
    """
    return explain_batch_many(
        images, loaded, [method], target, top_k, sources, inputs, box_threshold, box_rule, precision
    )[0]


def explain_batch_many(
    images: Sequence[Image.Image],
    loaded: LoadedModel,
    methods: Sequence,
    target: Optional[int] = None,
    top_k: int = 1,
    sources: Optional[Sequence[Optional[str]]] = None,
    inputs: Optional[Sequence[torch.Tensor]] = None,
    box_threshold: float = BOX_THRESHOLD,
    box_rule: str = DEFAULT_BOX_RULE,
    precision: Optional[str] = None,
) -> List[List[ImageResult]]:
    """:func:`explain_batch` for several methods at once: one list of results per method, in ``methods``' order.
    Each photo is preprocessed once; methods that share a capture (the same layer of the model: the CAM family
    but perturbation methods, see :func:`gradcam.methods.shared.explain_many`) run one forward and one backward
    per batch together. Each result equals that of :func:`explain_batch` with the method alone."""
    check_box_threshold(box_threshold)
    check_box_rule(box_rule)
    if not images:
        return [[] for _ in methods]
    sources = list(sources) if sources is not None else [None] * len(images)
    device = next(loaded.model.parameters(), torch.empty(0)).device
    xs = list(inputs) if inputs is not None else [loaded.preprocess(im) for im in images]
    groups: Dict[tuple, List[int]] = {}
    for i, x in enumerate(xs):
        groups.setdefault(tuple(x.shape), []).append(i)
    results: List[List[Optional[ImageResult]]] = [[None] * len(images) for _ in methods]
    for idx in groups.values():
        x = to_device(torch.stack([xs[i] for i in idx]), device)
        with engine.precision(precision) if precision is not None else contextlib.nullcontext():
            explained = _run_many(methods, loaded, x, target, top_k)
        for m, res in enumerate(explained):
            rows = _results(
                res, [images[i] for i in idx], [sources[i] for i in idx], loaded, box_threshold, box_rule
            )
            for j, r in zip(idx, rows):
                results[m][j] = r
    return results  # type: ignore[return-value]


def _results(
    res: Explanation,
    images: Sequence[Image.Image],
    sources: Sequence[Optional[str]],
    loaded: LoadedModel,
    box_threshold: float,
    box_rule: str,
) -> List[ImageResult]:
    """The :class:`ImageResult` of each image of one explained batch: top-5, peaks and boxes in photo pixels
    (computed where the maps are and brought to the host in one copy, :func:`_on_host`)."""
    r = _on_host(res, box_threshold, box_rule)
    h, w = res.maps.shape[-2:]
    labels = loaded.labels
    out = []
    from .methods.factorization import ConceptExplanation

    concepts = isinstance(res, ConceptExplanation)
    extra: Dict[str, Any] = {}
    if isinstance(res, ConceptExplanation):  # (not `concepts`: mypy narrows on the isinstance itself)
        extra = dict(concept_scores=res.concept_scores, labels=labels)
    for j, image in enumerate(images):
        size = image.size
        ids, ok = r["ids"][j], r["ok"][j]
        out.append(
            (ConceptImageResult if concepts else ImageResult)(
                image=image,
                source=sources[j],
                predictions=[(labels[c], c, p) for c, p in zip(r["top_i"][j], r["top_p"][j])],
                class_ids=ids,
                classes=[labels[c] if c >= 0 else "custom" for c in ids],
                scores=r["scores"][j],
                probabilities=r["sel_p"][j],
                input_maps=r["maps"][j],
                peaks=[scale_point(p, (w, h), size) if v else None for p, v in zip(r["peaks"][j], ok)],
                boxes=[scale_box(b, (w, h), size) if v else None for b, v in zip(r["boxes"][j], ok)],
                layer=res.layer,
                method=res.method,
                model=loaded.name,
                weights=r["weights"][j] if r["weights"] is not None else None,
                box_threshold=float(box_threshold),
                box_rule=box_rule,
                **extra,
            )
        )
    return out
