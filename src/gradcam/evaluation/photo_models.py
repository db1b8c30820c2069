"""The photos benchmark's rows per ``--quality`` preset and per built-in model (Table 1 protocol).

``gradcam evaluate --benchmarks photos`` measures, besides every method on EfficientNet-Lite0, Grad-CAM
(the method of ``gradcam explain``) for each preset of :data:`gradcam.models.QUALITY_PRESETS` (its model,
short side and box threshold) and for each built-in ImageNet model (``efficientnet-lite0/1/2``, at the
model's own short side and the paper's 15% box threshold), on one half of the annotated photos (``split``:
the held-out half by default; the presets were chosen on the tuning half). Per row, with the measures of
:func:`gradcam.evaluation.photos.evaluate_method`:

- ``pointing``: TorchRay's pointing game (15 px, union of the class's boxes, mean over classes);
- ``peaks``: objects whose true-class map peak falls inside one of its boxes (0 px), a count;
- ``boxes``: objects whose true-class box (at the row's threshold) has IoU >= 0.5 with a box of the
  class, a count;
- ``loc_err1`` / ``cls_err1``: the paper's top-1 localization / classification error (the labelled
  ImageNet photos of the split only);
- ``seconds``: wall seconds per photo of one Grad-CAM call (the true class, preprocessed input), timed
  round-robin (every setting on a photo, then the next photo; per setting and photo the fastest of
  ``repeats`` rounds, then the mean over photos) so that a shared CPU's changing load falls on all rows
  alike; ``cost_ratio``: ``seconds`` over EfficientNet-Lite0's at its own short side, same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..image import preprocess_image
from . import photos as ph

PAPER_THRESHOLD = 0.15  # Selvaraju et al., Sec. 4.1: the box at 15% of the map's maximum
BASE_MODEL = "efficientnet-lite0"  # the cost base


@dataclass(frozen=True)
class PhotoSetting:
    """One row: ``label`` (a preset's or a model's name), ``kind`` (``"preset"`` or ``"model"``), the
    built-in ``model``, the input short side ``size`` and the box ``threshold``."""

    label: str
    kind: str
    model: str
    size: int
    threshold: float


def builtin_models() -> List[str]:
    """The built-in ImageNet models (``efficientnet-lite*`` of :data:`gradcam.models.MODELS`), in order."""
    from ..models import MODELS

    return [n for n in MODELS if n.startswith("efficientnet-lite")]


def photo_settings(sizes: Dict[str, int], quick: bool = False) -> List[PhotoSetting]:
    """The rows: each preset (its model, size, threshold), then each built-in model at its own short side
    ``sizes[model]`` and the paper's 15%. Models missing from ``sizes`` (not installed) have no row.
    ``quick``: Lite0's rows only (the ``fast`` preset and the model)."""
    from ..models import QUALITY_PRESETS

    out = [
        PhotoSetting(p.name, "preset", p.model, p.size, p.box_threshold)
        for p in QUALITY_PRESETS.values()
        if p.model in sizes
    ]
    out += [PhotoSetting(m, "model", m, sizes[m], PAPER_THRESHOLD) for m in builtin_models() if m in sizes]
    return [s for s in out if s.model == BASE_MODEL] if quick else out


def _gradcam(loaded) -> Callable:
    from ..methods import registry

    return registry.get("gradcam")(loaded.model, layer=loaded.layer)


def _load_all(
    names: Sequence[str], loader: Callable, note: Callable[[str], None], make_method: Callable
) -> Dict[str, Tuple[Any, Callable]]:
    """{name: (loaded model, its Grad-CAM)} for each model that loads; a note for each one that does not."""
    out = {}
    for name in names:
        try:
            loaded = loader(name)
        except (ImportError, FileNotFoundError) as e:
            note(f"photos: model '{name}' skipped (its preset and model rows too): {e}")
            continue
        out[name] = (loaded, make_method(loaded))
    return out


def interleaved_seconds(calls: Sequence[Callable[[int], Any]], n: int, repeats: int = 3) -> List[float]:
    """Seconds per item of each ``calls[i](j)`` (j < n), timed round-robin: every call on item j, then
    item j + 1; ``repeats`` rounds; per call and item the fastest round, then the mean over items."""
    best = [[float("inf")] * n for _ in calls]
    for _ in range(repeats):
        for j in range(n):
            for i, call in enumerate(calls):
                t = time.perf_counter()
                call(j)
                best[i][j] = min(best[i][j], time.perf_counter() - t)
    return [sum(b) / max(1, n) for b in best]


def _timer(loaded, method, size: int, photos: List[ph.AnnotatedPhoto]) -> Callable[[int], Any]:
    """``call(j)``: Grad-CAM of photo j's true class at short side ``size`` (inputs prepared up front)."""
    xs = [preprocess_image(p.image, size, loaded.mean, loaded.std)[None] for p in photos]
    targets = [torch.tensor([[p.label]]) for p in photos]
    return lambda j: method(xs[j], target=targets[j])


def photo_rows(
    photos: List[ph.AnnotatedPhoto],
    *,
    quick: bool = False,
    repeats: int = 3,
    loader: Optional[Callable] = None,
    make_method: Callable = _gradcam,
    note: Callable[[str], None] = lambda s: None,
) -> List[Dict[str, Any]]:
    """One row per :func:`photo_settings` entry on ``photos`` (see the module docstring for the fields).

    ``loader(name) -> LoadedModel`` (default :func:`gradcam.models.load_model`) and ``make_method(loaded)``
    (default: Grad-CAM at ``loaded.layer``) can be replaced (the tests stub the model).
    """
    from ..models import load_model

    wanted = [BASE_MODEL] if quick else builtin_models()
    models = _load_all(wanted, loader or load_model, note, make_method)
    if BASE_MODEL not in models:
        raise ValueError(f"photos: the cost base {BASE_MODEL} did not load; install gradcam's core package.")
    settings = photo_settings({m: int(lm.size or 256) for m, (lm, _) in models.items()}, quick)
    base_key = (BASE_MODEL, int(models[BASE_MODEL][0].size or 256))
    keys = list(dict.fromkeys([base_key] + [(s.model, s.size) for s in settings]))
    secs = dict(
        zip(
            keys,
            interleaved_seconds([_timer(*models[m], size, photos) for m, size in keys], len(photos), repeats),
        )
    )
    base = secs[base_key]
    n = len(photos)
    rows = []
    for s in settings:
        loaded, method = models[s.model]
        res = ph.evaluate_method(method, loaded.model, photos, s.size, loaded.mean, loaded.std, s.threshold)
        per = res["per_photo"]
        sec = secs[(s.model, s.size)]
        rows.append(
            {
                **{k: getattr(s, k) for k in ("label", "kind", "model", "size", "threshold")},
                "pointing": res["pointing"],
                "peaks": int(sum(r["peak_in_box"] for r in per)),
                "boxes": int(sum(r["loc_gt"] for r in per)),
                "objects": n,
                "loc_err1": res["loc_err1"],
                "cls_err1": res["cls_err1"],
                "scored": res["scored"],
                "seconds": round(sec, 4),
                "cost_ratio": round(sec / base, 2) if base > 0 else float("nan"),
            }
        )
    return rows


def rows_table(rows: List[Dict[str, Any]]) -> str:
    """The rows as a Markdown table (counts as ``k/n``; the cost ratio is to EfficientNet-Lite0)."""
    lines = [
        "| preset / model | model | short side | box threshold | pointing (15 px) ↑ | peak in a box ↑ | "
        "IoU ≥ 0.5 ↑ | top-1 loc. err. ↓ | top-1 cls. err. ↓ | s / photo | cost ratio to Lite0 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        label = f"`{r['label']}`" if r["kind"] == "preset" else r["label"]
        lines.append(
            f"| {label} | {r['model']} | {r['size']} | {r['threshold']:.0%} | {r['pointing']:.3f} | "
            f"{r['peaks']}/{r['objects']} | {r['boxes']}/{r['objects']} | {r['loc_err1']:.3f} | "
            f"{r['cls_err1']:.3f} | {r['seconds']:.3f} | {r['cost_ratio']:.2f} |"
        )
    return "\n".join(lines)
