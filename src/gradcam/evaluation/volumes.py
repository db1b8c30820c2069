"""The 3-D benchmark ``volumes``: synthetic CT-like volumes with a planted lesion and its exact mask.

Data: :mod:`gradcam.datasets.lesions` (32³ voxels, half with a lesion of random size, contrast and
position among bright vessels). Model: :class:`LesionNet`, a small 3-D CNN (three convolutions, global
max pooling, about 4,500 parameters) trained on the CPU with fixed seeds to tell ``lesion`` from
``normal``. Its weights (the default configuration, seed 0) are committed in ``gradcam/data/``
(``lesion-<key>.pt``, SHA-256 in ``lesion_weights.json``, checked at every load), so the table reproduces
from them on any machine; other settings train on the CPU and cache under ``cache_dir`` as the synthetic
CNNs do (:mod:`.synthetic`).

Measures, on the test volumes with a lesion, for the class ``lesion`` (every method whose
:class:`~gradcam.methods.contract.MethodInfo` says ``handles_volumes``):

- 3-D pointing: the map's peak (x, y, z) lies within ``tolerance`` voxels (Euclidean) of a lesion voxel;
- 3-D box IoU: the box of the largest 26-connected segment of the map at
  :data:`gradcam.regions.BOX_THRESHOLD` of its maximum (the box ``gradcam explain`` writes for a volume)
  against the lesion's box, IoU = |A ∩ B| / |A ∪ B| over voxels; and the share with IoU >= 0.5;
- energy inside the mask: sum(m · 1_lesion) / sum(m);
- deletion / insertion (Petsiuk et al.): voxels replaced in the order of the map, most important first, in
  ``steps`` equal steps, by those of the volume's lesion-free twin (deletion) or from the twin toward the
  volume (insertion); area under the curve of p(lesion);

against the baselines ``random`` (random channel weights at the layer), ``random-map`` (smooth noise) and
``gaussian`` (the centre of the volume).
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import lesions
from ..methods import registry
from ..regions import BOX_THRESHOLD, map_boxes, peaks
from . import weights as _weights
from .tables import MIN_ACCURACY_FOR_BEST, accuracy_caveat, best_marks, markdown_table

GRADCAM_LAYER = "features.9"  # the last ReLU of the convolutions (8³ for 32³ volumes)
TOLERANCE = 15 * 32 / 224  # Zhang et al.'s 15 px at 224 px, scaled to the 32-voxel volume: 2.14 voxels


@dataclass(frozen=True)
class VolumeTrainConfig:
    """Everything that determines the trained weights of :class:`LesionNet`."""

    width: int = 4
    size: int = 32
    n_train: int = 800
    epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-2  # Adam, cosine annealing to 0
    seed: int = 0


def _block(cin: int, cout: int, stride: int = 1) -> List[nn.Module]:
    return [nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU()]


class LesionNet(nn.Module):
    """Input (N, 1, S, S, S) in [0, 1]; ``features.9`` is the last convolution's ReLU (S/4 per side);
    the head is global max pooling and one linear layer (is there a lesion anywhere?)."""

    def __init__(self, width: int = 4, num_classes: int = len(lesions.CLASSES)):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            *_block(1, w1, stride=2), *_block(w1, w2), nn.MaxPool3d(2), *_block(w2, w3)
        )
        self.head = nn.Sequential(nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(w3, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5))


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each volume flipped along each axis with probability 1/2 (the data are symmetric)."""
    flips = torch.rand(x.shape[0], 3, generator=gen) < 0.5
    for a in range(3):
        x = torch.where(flips[:, a].view(-1, 1, 1, 1, 1), x.flip(2 + a), x)
    return x


def train(cfg: VolumeTrainConfig, log=print) -> Tuple[LesionNet, Dict]:
    """Train a :class:`LesionNet` with ``cfg`` (seeded, deterministic, one thread); returns it (eval mode)
    and a record of the training (time, final loss)."""
    t0 = time.time()
    data = lesions.make_lesions(cfg.n_train, seed=10_000 + cfg.seed, size=cfg.size)
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = LesionNet(cfg.width)
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=cfg.lr)
            steps = cfg.epochs * math.ceil(cfg.n_train / cfg.batch_size)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
            gen = torch.Generator().manual_seed(cfg.seed)
            net.train()
            loss = torch.zeros(())
            for epoch in range(cfg.epochs):
                perm = torch.randperm(cfg.n_train, generator=gen)
                for i in range(0, cfg.n_train, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    loss = F.cross_entropy(net(_flip(data.volumes[idx], gen)), data.labels[idx])
                    grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt.step()
                    sched.step()
                log(f"  [lesion] epoch {epoch + 1}/{cfg.epochs}: loss {float(loss.detach()):.3f}")
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
    for p in net.parameters():
        p.grad = None
    net.eval()
    return net, {"train_seconds": round(time.time() - t0, 1), "final_loss": round(float(loss.detach()), 4)}


COMMITTED_DIR = Path(__file__).resolve().parent.parent / "data"
CHECKSUMS = COMMITTED_DIR / "lesion_weights.json"


config_key = _weights.config_key  # the 12-hex-digit key of the settings that change the weights


def committed_weights(cfg: VolumeTrainConfig) -> Optional[Path]:
    """``lesion-<key>.pt`` in ``gradcam/data`` when committed, checksum verified (:func:`.weights.committed_file`)."""
    return _weights.committed_file(f"lesion-{config_key(cfg)}.pt", COMMITTED_DIR, CHECKSUMS)


def _cache_dir(cache_dir: Union[str, os.PathLike, None]) -> Path:
    return Path(cache_dir or os.environ.get("GRADCAM_CACHE") or Path.home() / ".cache" / "gradcam")


def load_or_train(
    cfg: VolumeTrainConfig,
    cache_dir: Union[str, os.PathLike, None] = None,
    log=print,
    retrain: bool = False,
) -> Tuple[LesionNet, Dict]:
    """The trained network for ``cfg``: the committed weights when there are some (checksum verified),
    else from the cache, else trained now and cached. ``retrain=True`` skips the committed weights."""
    path = _cache_dir(cache_dir) / f"lesion-{config_key(cfg)}.pt"
    fixed = None if retrain else committed_weights(cfg)
    out, info = _weights.load_or_train(
        LesionNet(cfg.width), cfg, fixed, path, lambda: train(cfg, log), log, "the 3-D lesion CNN"
    )
    return cast(LesionNet, out), info


# -- measures ---------------------------------------------------------------------------------------
def pointing_hits_3d(maps: torch.Tensor, masks: torch.Tensor, tolerance: float = TOLERANCE) -> torch.Tensor:
    """Bool (N,): the peak (x, y, z) of each map (N, D, H, W) lies within ``tolerance`` voxels of a True
    voxel of ``masks`` (N, D, H, W); a flat map is a miss."""
    n, d, h, w = maps.shape
    xyz = peaks(maps, dims=3).float()
    flat = maps.flatten(1)
    valid = flat.amax(1) > flat.amin(1)
    zz = torch.arange(d, dtype=torch.float32).view(1, d, 1, 1) - xyz[:, 2].view(n, 1, 1, 1)
    yy = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1) - xyz[:, 1].view(n, 1, 1, 1)
    xx = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w) - xyz[:, 0].view(n, 1, 1, 1)
    d2 = zz**2 + yy**2 + xx**2
    near = torch.where(masks, d2, torch.tensor(float("inf"))).flatten(1).amin(1).sqrt()
    return (near <= tolerance) & valid


def iou_3d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (..., 6) (x0, y0, z0, x1, y1, z1), exclusive ends; 0 where the union is empty."""
    a, b = a.float(), b.float()
    inter = torch.ones(a.shape[:-1])
    vol_a, vol_b = torch.ones(a.shape[:-1]), torch.ones(b.shape[:-1])
    for i in range(3):
        inter = inter * (
            torch.minimum(a[..., i + 3], b[..., i + 3]) - torch.maximum(a[..., i], b[..., i])
        ).clamp_min(0)
        vol_a = vol_a * (a[..., i + 3] - a[..., i]).clamp_min(0)
        vol_b = vol_b * (b[..., i + 3] - b[..., i]).clamp_min(0)
    union = vol_a + vol_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))


def energy_in_mask(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """sum(m · 1_mask) / sum(m) per map (N, D, H, W); 0 for a map with no mass."""
    m = maps.clamp_min(0).flatten(1)
    total = m.sum(1)
    return torch.where(
        total > 0, (m * masks.flatten(1)).sum(1) / total.clamp_min(1e-12), torch.zeros_like(total)
    )


@torch.no_grad()
def perturbation_curves(
    model: nn.Module, x: torch.Tensor, twin: torch.Tensor, maps: torch.Tensor, cls: int, steps: int
) -> Dict[str, torch.Tensor]:
    """p(``cls``) after each of ``steps`` steps, (N, steps + 1), for ``deletion`` (x -> twin in the map's
    order) and ``insertion`` (twin -> x); step s changes the ceil(s V / steps) top-ranked voxels."""
    n = x.shape[0]
    flat = maps.flatten(1)
    order = torch.sort(flat, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order))
    counts = torch.tensor([math.ceil(s * flat.shape[1] / steps) for s in range(steps + 1)])
    out = {}
    for mode, (src, dst) in (("deletion", (x, twin)), ("insertion", (twin, x))):
        probs = []
        for s in range(steps + 1):
            changed = (rank < counts[s]).view(n, 1, *x.shape[2:])
            probs.append(model(torch.where(changed, dst, src)).softmax(1)[:, cls])
        out[mode] = torch.stack(probs, 1)
    return out


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under curves (..., S + 1) on S + 1 equally spaced points of [0, 1]."""
    s = curve.shape[-1] - 1
    return (curve[..., 1:] + curve[..., :-1]).sum(-1) / (2 * s)


# -- the benchmark ----------------------------------------------------------------------------------
COLUMNS = [
    ("pointing", "3-D pointing ↑", ".3f"),
    ("box_iou", "3-D box IoU ↑", ".3f"),
    ("loc_acc", "box IoU ≥ 0.5 ↑", ".3f"),
    ("energy", "energy in mask ↑", ".3f"),
    ("deletion", "deletion ↓", ".3f"),
    ("insertion", "insertion ↑", ".3f"),
    ("seconds", "time (s)", ".4f"),
]
LOWER_BETTER = ("deletion",)
OPTIONS = {"scorecam": dict(batch_size=64), "ablationcam": dict(batch_size=64)}
SIZES = {
    False: (200, 64, 32, 16),
    True: (64, 24, 12, 8),
}  # test volumes, explained, deletion/insertion, steps


def volume_methods(names) -> Tuple[List[str], List[str]]:
    """(the names whose registry entry says ``handles_volumes`` and that explain classes, the others)."""
    keep: List[str] = []
    skip: List[str] = []
    for name in names:
        ok = name in registry.METHODS and registry.info(name).handles_volumes
        ok = ok and registry.info(name).family != "concepts"
        (keep if ok else skip).append(name)
    return keep, skip


def measure(method, net: nn.Module, data: lesions.LesionVolumes, n_faith: int, steps: int) -> Dict[str, Any]:
    """One method's row: the measures of the module docstring on ``data`` (volumes with a lesion)."""
    cls = lesions.CLASSES.index("lesion")
    x = data.volumes
    target = torch.full((x.shape[0], 1), cls)
    t = time.time()
    maps = torch.cat(
        [method(x[i : i + 16], target=target[i : i + 16]).maps.detach()[:, 0] for i in range(0, len(x), 16)]
    )
    seconds = (time.time() - t) / x.shape[0]
    boxes = map_boxes(maps, BOX_THRESHOLD, dims=3)
    ious = iou_3d(boxes, data.boxes)
    curves = perturbation_curves(net, x[:n_faith], data.healthy[:n_faith], maps[:n_faith], cls, steps)
    row: Dict[str, Any] = {
        "pointing": _mean(pointing_hits_3d(maps, data.masks)),
        "box_iou": _mean(ious),
        "loc_acc": _mean(ious >= 0.5),
        "energy": _mean(energy_in_mask(maps, data.masks)),
        "seconds": round(seconds, 4),
    }
    for mode, curve in curves.items():
        row[mode] = _mean(auc(curve))
        row[f"{mode}_curve"] = [round(float(v), 4) for v in curve.mean(0)]
    return row


def _mean(t: torch.Tensor) -> float:
    return round(float(t.float().mean()), 4)


def _subset(data: lesions.LesionVolumes, keep: torch.Tensor) -> lesions.LesionVolumes:
    return lesions.LesionVolumes(*(getattr(data, f)[keep] for f in data.__dataclass_fields__))


def _build(name: str, net: nn.Module, seed: int):
    kw = dict(OPTIONS.get(name, {}))
    if registry.info(name).random and "seed" in _params(registry.get(name)):
        kw["seed"] = seed
    return registry.get(name)(net, layer=GRADCAM_LAYER, **kw)


def _params(factory) -> Tuple[str, ...]:
    import inspect

    cls = getattr(factory, "method_class", factory)
    try:
        return tuple(inspect.signature(cls).parameters)
    except (TypeError, ValueError):
        return ()


def run(settings) -> Dict[str, Any]:
    """The ``volumes`` benchmark for ``settings`` (a :class:`gradcam.evaluation.runner.Settings`): accuracy
    of the lesion CNN on all test volumes, then one row per method on those with a lesion."""
    t0 = time.time()
    n_test, n_explain, n_faith, steps = SIZES[bool(settings.quick)]
    cfg = VolumeTrainConfig(seed=settings.seed)
    net, info = load_or_train(cfg, settings.cache_dir, log=settings.log, retrain=settings.retrain)
    test = lesions.make_lesions(n_test, seed=20_000 + settings.seed, size=cfg.size)
    with torch.no_grad():
        acc = _mean(net(test.volumes).argmax(1) == test.labels)
    data = _subset(test, torch.nonzero(test.labels == 1).flatten()[:n_explain])
    names, skipped = volume_methods(settings.methods)
    if skipped:
        settings.note(
            f"volumes: {', '.join(skipped)} do not handle volumes (MethodInfo.handles_volumes) "
            "or explain concepts, not classes (dff); no row."
        )
    rows: List[Dict[str, Any]] = []
    for name in names:
        row = {"method": name, **measure(_build(name, net, settings.seed), net, data, n_faith, steps)}
        rows.append(row)
        settings.log(
            f"  volumes/{name}: "
            + ", ".join(f"{k} {v}" for k, v in row.items() if k != "method" and not k.endswith("_curve"))
        )
    meta = {
        "model": f"LesionNet (width {cfg.width}, {sum(p.numel() for p in net.parameters())} parameters)",
        "layer": GRADCAM_LAYER,
        "accuracy": acc,
        "train": {k: v for k, v in info.items() if k != "cached"},
        "config": asdict(cfg),
        "test_volumes": n_test,
        "explained_volumes": len(data.labels),
        "deletion_insertion_volumes": n_faith,
        "steps": steps,
        "pointing_tolerance_voxels": round(TOLERANCE, 2),
        "box_threshold": BOX_THRESHOLD,
        "seed": settings.seed,
        "seconds": round(time.time() - t0, 1),
    }
    if acc < MIN_ACCURACY_FOR_BEST:
        settings.caveats.append(accuracy_caveat("3-D lesion CNN", acc))
    return {"meta": meta, "rows": rows, "table": table(rows, meta)}


def table(rows: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    """The benchmark's heading and Markdown table (best values bold, baselines excluded)."""
    shown = copy.deepcopy([{k: v for k, v in r.items() if not k.endswith("_curve")} for r in rows])
    best_marks(
        shown, [c for c in COLUMNS if c[0] != "seconds"], lower_better=LOWER_BETTER, accuracy=meta["accuracy"]
    )
    head = (
        f"**Volumes: CT-like 32³ volumes with a planted lesion** — {meta['model']}, layer `{meta['layer']}`, "
        f"accuracy {meta['accuracy']:.3f} on {meta['test_volumes']} test volumes (half with a lesion); maps of "
        f"the class `lesion` on {meta['explained_volumes']} volumes with one; pointing tolerance "
        f"{meta['pointing_tolerance_voxels']} voxels; boxes at {meta['box_threshold']} of the maximum; "
        f"deletion/insertion ({meta['steps']} steps, toward the lesion-free twin) on "
        f"{meta['deletion_insertion_volumes']} volumes."
    )
    return head + "\n\n" + markdown_table(shown, COLUMNS, first=("method", "method", "s"))
