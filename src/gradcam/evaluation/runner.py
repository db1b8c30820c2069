"""``gradcam evaluate``: run the benchmarks over the registered methods and collect one table.

Benchmarks: ``mosaic`` (real photos, :mod:`.mosaics`), ``synthetic`` (scenes with exact masks,
:mod:`.synthetic`), ``vl`` (vision-and-language, :mod:`.vl_benchmark`, when installed) and ``volumes``
(CT-like volumes with a planted lesion, :mod:`.volumes`). Methods are
taken by name from :mod:`gradcam.methods.registry`; a name that is not registered is skipped with a
note, a method that does not apply to a model (CAM on a fully connected head) is marked n/a.
"""

from __future__ import annotations

import copy
import functools
import importlib
import inspect
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .. import metrics as M
from ..methods import registry
from . import baselines  # noqa: F401 - the evaluation baselines (registered in gradcam.methods.registry)
from . import mosaics as mos
from . import synthetic as syn
from .concepts import ConceptClassMaps
from .tables import MIN_ACCURACY_FOR_BEST, accuracy_caveat, best_marks, markdown_table

METHODS: Tuple[str, ...] = (
    "gradcam",
    "counterfactual",
    "cam",
    "gradient",
    "guided-backprop",
    "guided-gradcam",
    "occlusion",
    "random",
    "gaussian",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "scorecam",
    "ablationcam",
    "rise",
    "random-map",
)
#: Methods left out of the quick mosaic run (thousands of forward passes of EfficientNet-Lite0 per mosaic);
#: a method registered later joins them when its ``forward_passes`` grows with a count (:func:`slow_on_photos`).
#: SS-CAM and IS-CAM on EfficientNet-Lite0 (1280 channels at ``_head_act``): each noisy or scaled copy of a
#: channel's mask is a forward of the photo, so torch-cam's defaults (35 and 10 copies) would cost 45,000 and
#: 13,000 forwards per photo; the photo and mosaic benchmarks use 2 copies each (2,560 forwards per photo,
#: fewer for IS-CAM, which scores a flat channel's zero image once). The masked inputs go at the default pixel
#: budget (2 per forward at 256 x 352): on one CPU core a batch of 32 cost 211 ms per input against 82 ms at 2
#: (the activations of 32 inputs no longer fit the cache).
SCORE_SMOOTHED_ON_PHOTOS: Dict[str, Dict[str, Any]] = {m: dict(samples=2) for m in ("sscam", "iscam")}
SLOW_ON_PHOTOS = ("occlusion", "scorecam", "rise", "integrated-gradients", "smoothgrad", "vargrad")


def slow_on_photos(name: str) -> bool:
    """Whether method ``name`` runs many forward passes per image: listed in :data:`SLOW_ON_PHOTOS`, or its
    registered ``forward_passes`` names a count (``"1 + samples"``, ``"2 + steps"``, ``"1 + C"``), except
    passes through the layers after the explained one only (``"1 + C (after the layer)"``, Ablation-CAM)."""
    if name in SLOW_ON_PHOTOS:
        return True
    if name not in registry.INFO:
        return False
    passes = str(registry.INFO[name].forward_passes)
    return "after the layer" not in passes and any(c.isalpha() for c in passes)


BENCHMARKS: Tuple[str, ...] = ("mosaic", "synthetic", "vl", "photos", "volumes")


def all_methods() -> Tuple[str, ...]:
    """:data:`METHODS` in their order, then every other registered method (new ones join the tables)."""
    registry.get("gradcam")  # loads the optional method modules
    return METHODS + tuple(sorted(n for n in registry.METHODS if n not in METHODS))


@dataclass
class Settings:
    """What a run does; ``quick`` shrinks everything to well under a minute."""

    quick: bool = False
    seed: int = 0
    cache_dir: Optional[str] = None
    retrain: bool = False  # synthetic CNNs: train instead of loading the committed weights
    split: str = "held_out"  # photos: the half of the annotated photos measured (``tuning``, ``all``)
    synthetic_models: Tuple[str, ...] = ("vgg", "gap")  # synthetic: which CNNs (one per process side by side)
    methods: Sequence[str] = field(default_factory=all_methods)
    log: Callable[[str], None] = print
    notes: List[str] = field(default_factory=list)
    caveats: List[str] = field(default_factory=list)  # printed above the tables

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.log(f"note: {text}")


# -- shared helpers -------------------------------------------------------------------------------
def build(name: str, model, layer: str, settings: Settings, options: Optional[Dict[str, Dict]] = None):
    """The method ``name`` for ``model`` (with ``options[name]`` as keywords), or ``None`` (with a note)
    when it is not registered or needs an extra not installed; a concept method (``dff``) answers with its
    concept for each class (:class:`~gradcam.evaluation.concepts.ConceptClassMaps`)."""
    try:
        factory = registry.get(name)
    except ValueError:
        settings.note(f"method '{name}' is not registered (yet); skipped.")
        return None
    kw = dict((options or {}).get(name, {}))
    if name in ("random", "random-map"):
        kw.setdefault("seed", settings.seed)
    try:
        method = factory(model, layer=layer, **kw)
        # a concept method (dff): each class's map is that of the concept the head scores highest for it
        return ConceptClassMaps(method) if registry.explains_concepts(name) else method
    except ImportError as e:  # a method of an optional extra (lrp) where it is not installed
        settings.note(f"method '{name}' skipped: {e}")
        return None


def _build_at(name: str, layer: str, settings: Settings, options: Optional[Dict[str, Dict]], model):
    """:func:`build` with the model last (for ``functools.partial``)."""
    return build(name, model, layer, settings, options)


def explain(method, x: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
    """Maps (N, K, H, W) of ``method`` for class ids ``targets`` (N, K), ``chunk`` images per call."""
    out = [
        method(x[i : i + chunk], target=targets[i : i + chunk]).maps.detach()
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(out)


def _mean(t: torch.Tensor) -> float:
    return round(float(t.float().mean()), 4)


def _faithfulness(model, x, maps, target, steps: int, batch_size: int) -> Dict:
    """Deletion and insertion: mean AUC, and the mean curve (class probability after each step) for plots."""
    out: Dict = {}
    for mode in ("deletion", "insertion"):
        curve = M.perturbation_curve(model, x, maps, target, mode, steps, max_batch=batch_size)
        out[mode] = _mean(M.auc(curve))
        out[f"{mode}_curve"] = [round(float(v), 4) for v in curve.float().mean(0)]
    return out


def _drop_increase(model, x, maps, target, batch_size: int) -> Dict[str, float]:
    drop, increase = M.average_drop_increase(model, x, maps, target, max_batch=batch_size)
    return {"avg_drop": _mean(drop), "avg_increase": _mean(increase)}


# -- benchmark 1: real photos in mosaics ----------------------------------------------------------
MOSAIC_COLUMNS = [
    ("focus", "focus ↑", ".3f"),
    ("pointing", "pointing game ↑", ".3f"),
    ("loc_acc", "loc. acc. IoU≥0.5 ↑", ".3f"),
    ("energy", "energy in box ↑", ".3f"),
    ("disc_peak", "discrimination (peak) ↑", ".3f"),
    ("disc_mass", "discrimination (mass) ↑", ".3f"),
    ("deletion", "deletion AUC ↓", ".3f"),
    ("insertion", "insertion AUC ↑", ".3f"),
    ("avg_drop", "avg. drop ↓", ".3f"),
    ("seconds", "time (s)", ".1f"),
]


def _load_imagenet_model():
    from ..models import load_model

    return load_model("efficientnet-lite0")


def run_mosaic(settings: Settings) -> Dict:
    """Pointing game, localization, energy, class discrimination and deletion/insertion on mosaics of
    four real ImageNet photos, for the embedded EfficientNet-Lite0 (tiles 224 px, mosaic 448 px)."""
    q = settings.quick
    tile, n_mosaics, n_faith, steps = (160, 3, 0, 8) if q else (224, 8, 8, 10)
    t0 = time.time()
    loaded = _load_imagenet_model()
    model, layer = loaded.model, loaded.layer
    mean = torch.tensor(loaded.mean).view(1, 3, 1, 1)
    std = torch.tensor(loaded.std).view(1, 3, 1, 1)
    photos = mos.load_photos(tile)
    pred = _predict_photos(model, photos, mean, std)
    usable, wrong = mos.split_classified(photos, pred)
    mosaics = mos.make_mosaics(usable, n_mosaics, seed=settings.seed)
    x = (mosaics.images - mean) / std
    targets, masks = mosaics.labels, mosaics.masks
    # Deletion / insertion follow Petsiuk et al. on single photos (on a mosaic the class probability is
    # shared by four objects and stays near zero): the first n_faith usable photos, 224 px, their label.
    x1 = (torch.stack([p.image for p in usable[:n_faith]]) - mean) / std if n_faith else None
    y1 = torch.tensor([p.label for p in usable[:n_faith]])
    rows: List[Dict[str, Any]] = []
    for name in settings.methods:
        if q and slow_on_photos(name):
            settings.note(
                f"quick mode: {name} is left out of the mosaic benchmark (many forward passes per mosaic)."
            )
            continue
        method = build(
            name,
            model,
            layer,
            settings,
            {
                "occlusion": dict(window=112, stride=56, batch_size=16),
                "scorecam": dict(batch_size=32),
                "rise": dict(n_masks=1000, batch_size=32),
                "ablationcam": dict(batch_size=256),
                **{m: dict(batch_size=8) for m in ("integrated-gradients", "smoothgrad", "vargrad")},
                **SCORE_SMOOTHED_ON_PHOTOS,
            },
        )
        if method is None:
            continue
        t = time.time()
        try:
            maps = explain(method, x, targets, chunk=2)
        except ValueError as e:
            rows.append({"method": name, "note": f"n/a: {e}"})
            continue
        seconds = time.time() - t
        disc = M.class_discrimination(maps, masks)
        row: Dict[str, Any] = {
            "method": name,
            "focus": _mean(M.focus(maps, masks)),
            "pointing": _mean(M.pointing_hits(maps, masks, tolerance=15)),
            "loc_acc": _mean(M.iou(M.box_from_map(maps), mosaics.boxes) >= 0.5),
            "energy": _mean(M.energy_in_box(maps, masks)),
            "disc_peak": _mean(disc["peak"]),
            "disc_mass": _mean(disc["mass"]),
            "seconds": round(seconds / x.shape[0], 2),
        }
        if n_faith and x1 is not None:
            xm, tt = x1, y1
            mm = explain(method, xm, y1[:, None], chunk=4)[:, 0]
            row.update(_faithfulness(model, xm, mm, tt, steps, 16))
            row.update(_drop_increase(model, xm, mm, tt, 16))
        rows.append(row)
        settings.log(
            f"  mosaic/{name}: "
            + ", ".join(f"{k} {v}" for k, v in row.items() if k != "method" and not k.endswith("_curve"))
        )
    meta = _mosaic_meta(
        settings, layer, photos, usable, wrong, n_mosaics, int(x.shape[-1]), n_faith, steps, t0
    )
    table = _mosaic_table(rows, meta, n_faith, steps)
    return {"meta": meta, "rows": rows, "table": table}


def _predict_photos(
    model: torch.nn.Module, photos: list, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """The model's top class for each photo, normalised, ten at a time, without gradients."""
    with torch.no_grad():
        return torch.cat(
            [
                model((torch.stack([p.image for p in photos[i : i + 10]]) - mean) / std).argmax(1)
                for i in range(0, len(photos), 10)
            ]
        )


def _mosaic_meta(
    settings: Settings,
    layer: Any,
    photos: list,
    usable: list,
    wrong: list,
    n_mosaics: int,
    mosaic_size: int,
    n_faith: int,
    steps: int,
    t0: float,
) -> Dict[str, Any]:
    """The mosaic benchmark's metadata: model, photos used and left out, sizes, settings, time."""
    return {
        "model": "efficientnet-lite0 (embedded ImageNet weights)",
        "layer": layer,
        "photos": len(photos),
        "photos_used": len(usable),
        "photos_left_out": [p.name for p in wrong],
        "mosaics": n_mosaics,
        "mosaic_size": mosaic_size,
        "maps": n_mosaics * 4,
        "pointing_tolerance_px": 15,
        "deletion_insertion_photos": n_faith,
        "deletion_insertion_steps": steps,
        "seed": settings.seed,
        "seconds": round(time.time() - t0, 1),
    }


def _mosaic_table(rows: List[Dict[str, Any]], meta: Dict[str, Any], n_faith: int, steps: int) -> str:
    """The mosaic benchmark's heading and markdown table (no faithfulness columns without photos)."""
    layer, n_mosaics = meta["layer"], meta["mosaics"]
    cols = (
        MOSAIC_COLUMNS
        if n_faith
        else [c for c in MOSAIC_COLUMNS if c[0] not in ("deletion", "insertion", "avg_drop")]
    )
    table = _table(rows, cols, lower=("deletion", "avg_drop", "seconds"))
    head = (
        f"**Real photos, 2×2 mosaics** — EfficientNet-Lite0, layer `{layer}`, {n_mosaics} mosaics of "
        f"{meta['mosaic_size']} px ({meta['maps']} class maps) from the {meta['photos_used']} of {meta['photos']} foolbox "
        f"photos the model classifies right alone; pointing tolerance 15 px"
        + (
            f"; deletion/insertion/average drop ({steps} steps) on {n_faith} single photos (224 px, their label)."
            if n_faith
            else "."
        )
    )
    return head + "\n\n" + table


def _table(rows: List[Dict], cols, lower=(), accuracy: Optional[float] = None) -> str:
    shown = copy.deepcopy(rows)
    best_marks(shown, [c for c in cols if c[0] != "seconds"], lower_better=lower, accuracy=accuracy)
    for r in shown:
        if "note" in r:
            r[cols[0][0]] = r["note"]
    return markdown_table(shown, cols, first=("method", "method", "s"))


# -- benchmark 2: synthetic scenes --------------------------------------------------------------
SYNTH_COLUMNS = [
    ("loc_err_top1", "top-1 loc. err. ↓", ".3f"),
    ("loc_err_top5", "top-5 loc. err. ↓", ".3f"),
    ("loc_err_top1_t50", "top-1 loc. err., box at 50% ↓", ".3f"),
    ("pointing", "pointing ↑", ".3f"),
    ("energy", "energy ↑", ".3f"),
    ("disc_peak", "discr. (peak) ↑", ".3f"),
    ("disc_mass", "discr. (mass) ↑", ".3f"),
    ("deletion", "deletion ↓", ".3f"),
    ("insertion", "insertion ↑", ".3f"),
    ("avg_drop", "avg. drop ↓", ".3f"),
    ("rank_corr_occlusion", "ρ occlusion ↑", ".3f"),
    ("sanity_top", "sanity ρ top layer ↓", ".3f"),
    ("sanity_all", "sanity ρ all layers ↓", ".3f"),
]


SYNTH_OPTIONS = {
    "occlusion": dict(window=12, stride=6, batch_size=256),
    "scorecam": dict(batch_size=512),
    "ablationcam": dict(batch_size=512),
    "rise": dict(n_masks=500, batch_size=512),
}


def synthetic_config(kind: str, settings: Settings) -> syn.TrainConfig:
    """The training configuration of the ``kind`` CNN for this run (quick: smaller and shorter)."""
    kw = dict(syn.QUICK) if settings.quick else {}
    return syn.TrainConfig(kind=kind, seed=settings.seed, **kw)


def run_synthetic(settings: Settings) -> Dict:
    """Classification accuracy, ILSVRC-style localization error, pointing game, class discrimination on
    two-object scenes, deletion/insertion, rank correlation with occlusion and the randomisation sanity
    check, for a VGG-like CNN and a GAP CNN trained on synthetic scenes."""
    q = settings.quick
    n_test, n_two, n_faith, n_sanity, steps = (48, 32, 16, 8, 8) if q else (300, 200, 120, 24, 16)
    size = syn.TrainConfig().size
    tol = 15 * size / 224  # Zhang et al.'s 15 px at 224 px, scaled to the scene size
    out: Dict[str, Any] = {"models": {}, "table": ""}
    x, y, masks, boxes = syn.make_data(n_test, seed=20_000 + settings.seed, size=size)
    x2, y2, masks2, _ = syn.make_data(n_two, seed=30_000 + settings.seed, size=size, n_objects=2)
    tables = []
    opts = dict(SYNTH_OPTIONS, **({"rise": dict(n_masks=100, batch_size=512)} if q else {}))
    for kind in settings.synthetic_models:
        t0 = time.time()
        net, info = syn.load_or_train(
            synthetic_config(kind, settings), settings.cache_dir, log=settings.log, retrain=settings.retrain
        )
        with torch.no_grad():
            logits = net(x)
        acc = _mean(logits.argmax(1) == y[:, 0])
        top5 = logits.topk(5, dim=1).indices
        true_k = (top5 == y).float().argmax(1)  # where the true class sits in the top 5
        rows: List[Dict[str, Any]] = []
        occl_true: Optional[torch.Tensor] = None
        for name in settings.methods:
            method = build(name, net, syn.GRADCAM_LAYER, settings, opts)
            if method is None:
                continue
            t = time.time()
            try:
                maps = explain(method, x, top5, chunk=100)
            except ValueError as e:
                rows.append({"method": name, "note": "n/a (no GAP head)" if name == "cam" else f"n/a: {e}"})
                continue
            seconds = time.time() - t
            idx = torch.arange(n_test)
            true_maps = maps[idx, true_k]
            gt = masks[:, 0]
            pred_boxes = M.box_from_map(maps)
            maps2 = explain(method, x2, y2, chunk=100)
            disc = M.class_discrimination(maps2, masks2, tolerance=tol)
            row: Dict[str, Any] = {
                "method": name,
                "loc_err_top1": round(M.localization_error(pred_boxes, top5, boxes, y, top=1), 4),
                "loc_err_top5": round(M.localization_error(pred_boxes, top5, boxes, y, top=5), 4),
                "loc_err_top1_t50": round(
                    M.localization_error(M.box_from_map(maps[:, :1], 0.5), top5[:, :1], boxes, y), 4
                ),
                "pointing": _mean(M.pointing_hits(true_maps, gt, tolerance=tol)),
                "energy": _mean(M.energy_in_box(true_maps, gt)),
                "disc_peak": _mean(disc["peak"]),
                "disc_mass": _mean(disc["mass"]),
                **_faithfulness(net, x[:n_faith], true_maps[:n_faith], y[:n_faith, 0], steps, 512),
                **_drop_increase(net, x[:n_faith], true_maps[:n_faith], y[:n_faith, 0], 256),
                "seconds": round(seconds / n_test, 4),
            }
            if name == "occlusion":
                occl_true = true_maps
            row["_true_maps"] = true_maps
            if name != "occlusion" and (not q or name in ("gradcam", "guided-backprop")):
                row.update(_sanity_fields(net, name, settings, opts, x[:n_sanity], y[:n_sanity, 0]))
            rows.append(row)
            _log_synthetic_row(settings, kind, name, row)
        _add_rank_correlations(rows, occl_true, (size // 4, size // 4))
        counts = (n_test, n_two, n_faith, n_sanity, steps)
        meta = _synthetic_meta(settings, kind, acc, info, counts, tol, t0)
        _check_synthetic_accuracy(settings, kind, acc)
        out["models"][kind] = {"meta": meta, "rows": rows}
        tables.append(_synthetic_table(kind, rows, meta, size, tol))
    out["table"] = "\n\n".join(tables)
    return out


def _synthetic_meta(
    settings: Settings,
    kind: str,
    acc: float,
    info: Dict[str, Any],
    counts: Tuple[int, int, int, int, int],
    tol: float,
    t0: float,
) -> Dict[str, Any]:
    """One synthetic model's metadata: accuracy, training, configuration, image counts, settings, time."""
    n_test, n_two, n_faith, n_sanity, steps = counts
    return {
        "accuracy": acc,
        "train": {k: v for k, v in info.items() if k != "cached"},
        "config": asdict(synthetic_config(kind, settings)),
        "test_scenes": n_test,
        "two_object_scenes": n_two,
        "deletion_insertion_images": n_faith,
        "sanity_images": n_sanity,
        "steps": steps,
        "pointing_tolerance_px": round(tol, 2),
        "layer": syn.GRADCAM_LAYER,
        "seconds": round(time.time() - t0, 1),
    }


def _sanity_fields(
    net: torch.nn.Module, name: str, settings: Settings, opts: Dict, x: torch.Tensor, y: torch.Tensor
) -> Dict[str, Any]:
    """The cascading-randomisation sanity check of method ``name``: its correlations and layers."""
    s = M.cascading_randomization(
        net,
        functools.partial(_build_at, name, syn.GRADCAM_LAYER, settings, opts),
        x,
        y,
        seed=settings.seed,
    )
    return {
        "sanity_top": round(float(s.correlation[1]), 4),
        "sanity_all": round(float(s.correlation[-1]), 4),
        "sanity_curve": [round(float(v), 4) for v in s.correlation],
        "sanity_layers": s.layers,
    }


def _log_synthetic_row(settings: Settings, kind: str, name: str, row: Dict[str, Any]) -> None:
    """Log one synthetic row's scalar results (no maps, curves or layer lists)."""
    settings.log(
        f"  synthetic-{kind}/{name}: "
        + ", ".join(
            f"{k} {v}"
            for k, v in row.items()
            if k not in ("method", "_true_maps", "sanity_curve", "sanity_layers") and not k.endswith("_curve")
        )
    )


def _add_rank_correlations(
    rows: List[Dict[str, Any]], occl_true: Optional[torch.Tensor], grid: Tuple[int, int]
) -> None:
    """Pop each row's true-class maps and add their rank correlation with occlusion's (when it ran)."""
    for r in rows:
        tm = r.pop("_true_maps", None)
        if tm is not None and occl_true is not None and r["method"] != "occlusion":
            r["rank_corr_occlusion"] = _mean(M.rank_correlation(tm, occl_true, size=grid))


def _check_synthetic_accuracy(settings: Settings, kind: str, acc: float) -> None:
    """Add a caveat (below the bar for "best" marks) or a note (below 0.95) on a weak synthetic CNN."""
    q = settings.quick
    if acc < MIN_ACCURACY_FOR_BEST:
        settings.caveats.append(
            accuracy_caveat(f"synthetic '{kind}' CNN" + (" (quick mode: a small model)" if q else ""), acc)
        )
    elif acc < 0.95:
        settings.note(
            f"synthetic '{kind}' CNN accuracy {acc:.3f} < 0.95" + (" (quick mode: small model)" if q else "")
        )


def _synthetic_table(
    kind: str, rows: List[Dict[str, Any]], meta: Dict[str, Any], size: int, tol: float
) -> str:
    """One synthetic model's heading and markdown table."""
    acc, n_test, n_two = meta["accuracy"], meta["test_scenes"], meta["two_object_scenes"]
    steps, n_faith, n_sanity = meta["steps"], meta["deletion_insertion_images"], meta["sanity_images"]
    title = (
        "VGG-like (conv + fully connected head; CAM n/a)"
        if kind == "vgg"
        else "GAP (conv + global average pooling + linear)"
    )
    head = (
        f"**Synthetic scenes, {title}** — classification accuracy {acc:.3f} on {n_test} one-object scenes "
        f"({size} px, 5 shapes); discrimination on {n_two} two-object scenes; pointing tolerance {tol:.1f} px; "
        f"deletion/insertion ({steps} steps) on {n_faith} images; sanity check on {n_sanity} images."
    )
    lower = (
        "loc_err_top1",
        "loc_err_top5",
        "loc_err_top1_t50",
        "deletion",
        "avg_drop",
        "sanity_top",
        "sanity_all",
    )
    return head + "\n\n" + _table(rows, SYNTH_COLUMNS, lower=lower, accuracy=acc)


# -- benchmark 3: vision and language --------------------------------------------------------------
def run_vl(settings: Settings) -> Optional[Dict]:
    """The vision-and-language benchmark of :mod:`gradcam.evaluation.vl_benchmark`, when present."""
    try:
        vl = importlib.import_module("gradcam.evaluation.vl_benchmark")
    except ModuleNotFoundError as e:
        if e.name != "gradcam.evaluation.vl_benchmark":
            raise
        settings.note(
            "the vision-and-language benchmark (gradcam.evaluation.vl_benchmark) is not available; skipped."
        )
        return None
    kw = {"cache_dir": settings.cache_dir} if "cache_dir" in inspect.signature(vl.run).parameters else {}
    res = vl.run(quick=settings.quick, seed=settings.seed, **kw)
    return {"results": res["results"], "table": res["table"]}


# -- benchmark 4: real photos with boxes --------------------------------------------------------
PHOTO_COLUMNS = [
    ("cls_err1", "top-1 cls. err. ↓", ".3f"),
    ("cls_err5", "top-5 cls. err. ↓", ".3f"),
    ("loc_err1", "top-1 loc. err. ↓", ".3f"),
    ("loc_err5", "top-5 loc. err. ↓", ".3f"),
    ("loc_gt", "loc. acc., true class ↑", ".3f"),
    ("pointing", "pointing (15 px) ↑", ".3f"),
    ("peak_in_box", "peak in box ↑", ".3f"),
    ("energy", "energy ↑", ".3f"),
    ("seconds", "time (s)", ".3f"),
]


PHOTO_SPLITS: Tuple[str, ...] = ("held_out", "tuning", "all")


#: Batches of the many-pass methods on whole photos (the long side up to 1024 px): bounded memory.
PHOTO_OPTIONS = {
    "occlusion": dict(window=64, stride=32, batch_size=16),
    **{m: dict(batch_size=8) for m in ("integrated-gradients", "smoothgrad", "vargrad")},
    **SCORE_SMOOTHED_ON_PHOTOS,
}


def photo_split(split: str, notes: Optional[List[str]] = None) -> Tuple[list, str]:
    """The annotated photos of ``split`` (``held_out``, ``tuning`` or ``all``) and how the tables name it
    ("the held-out half: 22 objects on 15 photos")."""
    from . import photos as ph

    if split not in PHOTO_SPLITS:
        raise ValueError(f"split must be one of {', '.join(PHOTO_SPLITS)}; got {split!r}.")
    photos = ph.load_annotated(notes, split=None if split == "all" else split)
    files = len({p.name.split(":")[0] for p in photos})
    what = {"held_out": "the held-out half", "tuning": "the tuning half", "all": "both halves"}[split]
    return photos, f"{what}: {len(photos)} objects on {files} photos"


def run_photos(settings: Settings) -> Dict:
    """The Grad-CAM paper's Table 1 protocol (classification and localization error, 15% box, IoU >= 0.5)
    and TorchRay's pointing game on one half of the hand-annotated photos of :mod:`.photos`
    (``settings.split``, the held-out half by default): every method on EfficientNet-Lite0, then Grad-CAM
    for each ``--quality`` preset and each built-in model (:mod:`.photo_models`)."""
    from . import photo_models as pm
    from . import photos as ph

    t0 = time.time()
    loaded = _load_imagenet_model()
    model, layer = loaded.model, loaded.layer
    notes: List[str] = []
    photos, split_text = photo_split(settings.split, notes)
    for n in notes:
        settings.note(n)
    if settings.quick:
        photos = photos[:4]
        split_text += " (quick mode: the first 4)"
    size = loaded.size or 256
    rows = []
    for name in settings.methods:
        if settings.quick and name not in ("gradcam", "random"):
            continue
        method = build(name, model, layer, settings, PHOTO_OPTIONS)
        if method is None:
            continue
        try:
            res = ph.evaluate_method(method, model, photos, size, loaded.mean, loaded.std)
        except ValueError as e:
            rows.append({"method": name, "note": f"n/a: {e}"})
            continue
        rows.append({"method": name, **res})
        settings.log(f"  photos/{name}: " + ", ".join(f"{k} {v}" for k, v in res.items() if k != "per_photo"))
    presets: List[Dict] = []
    if (
        "gradcam" in settings.methods
    ):  # the rows per preset and model are Grad-CAM's (gradcam explain's method)
        presets = pm.photo_rows(
            photos, quick=settings.quick, repeats=1 if settings.quick else 3, note=settings.note
        )
    else:
        settings.note(
            "photos: the rows per --quality preset and per model are Grad-CAM's; add gradcam to --methods."
        )
    for r in presets:
        settings.log(f"  photos-presets/{r['label']}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    meta = {
        "model": "efficientnet-lite0 (embedded ImageNet weights)",
        "layer": layer,
        "size": size,
        "split": settings.split,
        "photos": [p.name for p in photos],
        "scored": sum(p.scored for p in photos),
        "threshold": 0.15,
        "pointing_tolerance_px": 15,
        "seconds": round(time.time() - t0, 1),
    }
    return {
        "meta": meta,
        "rows": rows,
        "presets": presets,
        "table": _photos_tables(rows, presets, meta, split_text),
    }


def _photos_tables(rows: List[Dict], presets: List[Dict], meta: Dict, split_text: str) -> str:
    """The methods table and the presets/models table of the photos benchmark, with their headings."""
    from .photo_models import rows_table

    shown = [{k: v for k, v in r.items() if k != "per_photo"} for r in rows]
    scored = meta["scored"]
    head = (
        f"**Real photos with boxes** (Grad-CAM paper, Table 1 protocol) — {split_text}; {scored} labelled "
        f"ImageNet photos scored for classification; EfficientNet-Lite0, layer "
        f"`{meta['layer']}`, short side {meta['size']} px; box at 15% of the map's max, largest segment, right "
        "when IoU ≥ 0.5 with a box of the class; pointing: TorchRay's protocol (15 px, union of the class's "
        "boxes, mean over classes)."
    )
    lower = ("cls_err1", "cls_err5", "loc_err1", "loc_err5", "seconds")
    head2 = (
        f"**Real photos with boxes, per `--quality` preset and per built-in model** — {split_text}; Grad-CAM "
        "at each model's head; a preset at its own short side and box threshold, a model at its own short side "
        "and the paper's 15%; peak in a box and IoU ≥ 0.5 are counts of objects (the true class's map); "
        "top-1 errors as in the table above; s / photo: one Grad-CAM call, timed round-robin in this run."
    )
    table = head + "\n\n" + _table(shown, PHOTO_COLUMNS, lower=lower)
    return table + ("\n\n" + head2 + "\n\n" + rows_table(presets) if presets else "")


def run_volumes(settings: Settings) -> Dict:
    """The 3-D benchmark with ground truth (CT-like volumes with a planted lesion): :mod:`.volumes`."""
    from . import volumes

    return volumes.run(settings)


RUNNERS = {
    "mosaic": run_mosaic,
    "synthetic": run_synthetic,
    "vl": run_vl,
    "photos": run_photos,
    "volumes": run_volumes,
}


def run(benchmarks: Sequence[str] = BENCHMARKS, settings: Optional[Settings] = None) -> Dict:
    """Run ``benchmarks``; returns ``{"results": {name: ...}, "markdown": str, "notes": [...], ...}``."""
    settings = settings or Settings()
    bad = [b for b in benchmarks if b not in RUNNERS]
    if bad:
        raise ValueError(f"Unknown benchmark(s) {', '.join(bad)}; choose from {', '.join(BENCHMARKS)}.")
    t0, c0 = time.time(), time.process_time()
    results, parts = {}, []
    for b in benchmarks:
        settings.log(f"== benchmark '{b}'{' (quick)' if settings.quick else ''} ==")
        res = RUNNERS[b](settings)
        if res is None:
            continue
        results[b] = {k: v for k, v in res.items() if k != "table"}
        parts.append(res["table"])
    wall, cpu = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    md = "\n\n".join(list(dict.fromkeys(settings.caveats)) + parts)
    if settings.notes:
        md += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in dict.fromkeys(settings.notes))
    md += f"\n\nWall time {wall} s, CPU time {cpu} s, torch {torch.__version__}, {torch.get_num_threads()} thread(s)."
    return {
        "results": results,
        "markdown": md,
        "notes": list(dict.fromkeys(settings.notes)),
        "caveats": list(dict.fromkeys(settings.caveats)),
        "quick": settings.quick,
        "seed": settings.seed,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
