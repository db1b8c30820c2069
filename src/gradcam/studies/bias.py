"""Dataset bias made visible by Grad-CAM (Selvaraju et al., Sec. 6.3), with a rebalanced and an
attention-trained fix.

The task: tell two shapes apart (``BiasConfig.classes``, circle vs cross) in cluttered synthetic scenes
(:mod:`gradcam.datasets.scenes`). A spurious cue, a small white stamp with a black centre in the
top-left corner (:func:`stamp_box`: ``(x0, y0, x1, y1) = (1, 1, 1 + s, 1 + s)``, exclusive ends), is on
``bias`` of the training images of class 0 (default 99%; 95% in the quick variant) and on ``1 - bias``
of class 1. In the test images the stamp is independent of the class (on half of each class), so a
model that learned the stamp is wrong on half of the stamped images. No object is drawn in the cue
region (:func:`cue_box`, the corner square of side 2 s around the stamp).

Three models are trained from the same seed on the CPU (a small CNN,
:class:`~gradcam.evaluation.synthetic.ShapeNet` with global average pooling):

- ``biased``: the biased training set;
- ``debiased``: a rebalanced set (the same scenes, the stamp on half of each class, independent of the label);
- ``attention``: the biased set, with a loss that penalises the Grad-CAM mass in the cue region
  (``loss = CE + lambda * mean(cue_mass)`` over the stamped images of the batch, the maps of the true
  class's margin from ``GradCAM(model, differentiable=True)``; "Tell me where to look", Li et al., CVPR 2018).

Measured on the stamped test images with the map of the decision, the predicted class's logit minus the
other's (a two-class softmax depends on nothing else; the map of one logit alone misses evidence that
works by lowering the other class): ``cue_mass`` = sum(map * 1_cue) / sum(map) and ``object_mass`` =
sum(map * 1_object) / sum(map), mean over images. Same seed, same numbers (deterministic algorithms,
one seeded generator per run).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from ..datasets import scenes
from ..evaluation.synthetic import GRADCAM_LAYER, ShapeNet
from ..methods.gradcam import GradCAM

ARMS: Tuple[str, str, str] = ("biased", "debiased", "attention")


@dataclass(frozen=True)
class BiasConfig:
    """Everything that determines the data, the three trained models and the measurements."""

    size: int = 64
    stamp: int = 8
    bias: float = 0.99
    n_train: int = 2000
    n_test: int = 400
    width: int = 8
    epochs: int = 8
    batch_size: int = 50
    lr: float = 1e-2
    attention_weight: float = 10.0
    classes: Tuple[str, str] = ("circle", "cross")
    seed: int = 0


QUICK = BiasConfig(size=48, stamp=6, bias=0.95, n_train=800, n_test=120, width=4, epochs=6)


@dataclass
class BiasData:
    """Images (N, 3, S, S) in [0, 1], labels (N,), stamp flags (N,), object masks (N, S, S)."""

    images: torch.Tensor
    labels: torch.Tensor
    stamped: torch.Tensor
    objects: torch.Tensor


@dataclass
class BiasResult:
    """The study's record: the summary keys, per-arm details, and the figure's images and maps."""

    biased_test_accuracy: float
    debiased_test_accuracy: float
    attention_trained_test_accuracy: float
    biased_cue_mass: float
    debiased_cue_mass: float
    attention_trained_cue_mass: float
    object_mass: Dict[str, float]
    stamped_test_accuracy: Dict[str, float]
    train_seconds: Dict[str, float]
    config: Dict
    figure_images: Optional[torch.Tensor] = field(default=None, repr=False)
    figure_maps: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    figure_labels: List[str] = field(default_factory=list, repr=False)

    def summary(self) -> Dict:
        """The JSON summary: the six summary keys plus the per-arm details."""
        out = {
            k: getattr(self, k)
            for k in (
                "biased_test_accuracy",
                "debiased_test_accuracy",
                "attention_trained_test_accuracy",
                "biased_cue_mass",
                "debiased_cue_mass",
                "attention_trained_cue_mass",
            )
        }
        out.update(
            object_mass=self.object_mass,
            stamped_test_accuracy=self.stamped_test_accuracy,
            train_seconds=self.train_seconds,
            config=self.config,
        )
        return out


def stamp_box(cfg: BiasConfig) -> Tuple[int, int, int, int]:
    """The stamp's box ``(x0, y0, x1, y1)``, exclusive ends."""
    return (1, 1, 1 + cfg.stamp, 1 + cfg.stamp)


def cue_box(cfg: BiasConfig) -> Tuple[int, int, int, int]:
    """The cue region ``(x0, y0, x1, y1)`` = (0, 0, 2 s, 2 s), exclusive ends: the stamp and a margin of
    about one Grad-CAM cell around it (the map's grid is 4 px; a blob on the stamp spreads that far).
    No object is ever drawn inside it."""
    return (0, 0, 2 * cfg.stamp, 2 * cfg.stamp)


def cue_mask(cfg: BiasConfig) -> torch.Tensor:
    """Bool (S, S), True in the cue region (:func:`cue_box`)."""
    x0, y0, x1, y1 = cue_box(cfg)
    m = torch.zeros(cfg.size, cfg.size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def make_data(cfg: BiasConfig, n: int, seed: int, p_stamp: Tuple[float, float]) -> BiasData:
    """``n`` scenes, half of each class, one object each, away from the stamp; the stamp is drawn on an
    image of class c with probability ``p_stamp[c]`` (seeded)."""
    rng = random.Random(seed)
    x0, y0, x1, y1 = stamp_box(cfg)
    imgs, labels, stamped, objs = [], [], [], []
    for i in range(n):
        c = i % 2
        cx1, cy1 = cue_box(cfg)[2:]
        while True:  # keep the object out of the cue region, so cue and object mass never share a pixel
            sc = scenes.make_scene(
                rng, size=cfg.size, objects=[(cfg.classes[c], rng.choice(scenes.COLOUR_NAMES))]
            )
            oy0, ox0, _, _ = sc.objects[0].box
            if oy0 >= cy1 or ox0 >= cx1:
                break
        img = sc.image.clone()
        s = rng.random() < p_stamp[c]
        if s:
            img[:, y0:y1, x0:x1] = 1.0
            q = max(1, cfg.stamp // 4)
            img[:, y0 + q : y1 - q, x0 + q : x1 - q] = 0.0
        imgs.append(img)
        labels.append(c)
        stamped.append(s)
        objs.append(sc.objects[0].mask)
    return BiasData(torch.stack(imgs), torch.tensor(labels), torch.tensor(stamped), torch.stack(objs))


def mass_share(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass inside ``region``: sum(m * 1_region) / sum(m); maps (N, H, W) >= 0.

    A map with no mass gives 0, never NaN. Differentiable (used as the attention loss).
    """
    total = maps.flatten(1).sum(1)
    inside = (maps * region).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def train_arm(
    cfg: BiasConfig, data: BiasData, attention: bool, log: Callable[[str], None] = print, name: str = ""
) -> Tuple[ShapeNet, float]:
    """Train one arm from ``cfg.seed`` (Adam, one-cycle, deterministic); ``attention`` adds the
    Grad-CAM cue-mass penalty. Returns the model (eval mode) and the seconds it took."""
    t0 = time.time()
    cue = cue_mask(cfg).float()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = ShapeNet("gap", cfg.width, cfg.size, num_classes=2)
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=cfg.lr)
            n = data.images.shape[0]
            steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
            gen = torch.Generator().manual_seed(cfg.seed)
            cam = (
                GradCAM(net, layer=GRADCAM_LAYER, differentiable=True, eval_mode=False) if attention else None
            )
            net.train()
            for epoch in range(cfg.epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    xb, yb = data.images[idx], data.labels[idx]
                    if cam is None:
                        ce = F.cross_entropy(net(xb), yb)
                        loss = ce
                    else:
                        # One forward: the logits for the loss and the map of the true class's margin over
                        # the other class, both in the graph.
                        res = cam(xb, target=class_margin(yb))
                        ce = F.cross_entropy(res.output, yb)
                        penalty = mass_share(res.maps[:, 0], cue)[data.stamped[idx]]
                        loss = ce + cfg.attention_weight * (penalty.mean() if penalty.numel() else 0.0)
                    grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt.step()
                    sched.step()
                log(
                    f"  [{name}] epoch {epoch + 1}/{cfg.epochs}: loss {float(loss.detach()):.3f} (CE {float(ce.detach()):.3f})"
                )
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for p in net.parameters():
        p.grad = None
    return net.eval(), round(time.time() - t0, 1)


def _load_or_train(cfg, data, arm, cache_dir, log) -> Tuple[ShapeNet, float]:
    if cache_dir is None:
        return train_arm(cfg, data, arm == "attention", log, arm)
    key = hashlib.sha256(json.dumps(dict(asdict(cfg), arm=arm), sort_keys=True).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"bias-{arm}-{key}.pt"
    if path.exists():
        net = ShapeNet("gap", cfg.width, cfg.size, num_classes=2)
        blob = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(blob["state_dict"])
        return net.eval(), float(blob["seconds"])
    net, secs = train_arm(cfg, data, arm == "attention", log, arm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": net.state_dict(), "seconds": secs, "config": asdict(cfg)}, tmp)
    os.replace(tmp, path)
    return net, secs


def class_margin(labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """A target: y_label - y_other per image (two classes)."""
    y = labels.view(-1, 1)
    return lambda output: (output.gather(1, y) - output.gather(1, 1 - y)).squeeze(1)


def decision_margin(output: torch.Tensor) -> torch.Tensor:
    """y_pred - y_other per image: the score of the decision (a two-class softmax depends on it only)."""
    pred = output.detach().argmax(1, keepdim=True)
    return (output.gather(1, pred) - output.gather(1, 1 - pred)).squeeze(1)


def measure(net: ShapeNet, cfg: BiasConfig, test: BiasData) -> Dict[str, torch.Tensor]:
    """Predictions and the Grad-CAM maps of the decision (the predicted class's margin over the other,
    :func:`decision_margin`) on ``test``, with cue and object mass per image."""
    res = GradCAM(net, layer=GRADCAM_LAYER)(test.images, target=decision_margin)
    maps = res.maps[:, 0]
    return {
        "pred": res.output.argmax(1),
        "maps": maps,
        "cue": mass_share(maps, cue_mask(cfg).float()),
        "object": mass_share(maps, test.objects.float()),
    }


def run(
    cfg: BiasConfig = BiasConfig(),
    cache_dir: Optional[os.PathLike] = None,
    log: Callable[[str], None] = print,
    n_figure: int = 6,
) -> BiasResult:
    """Build the data, train (or load from ``cache_dir``) the three arms, and measure them.

    ``cache_dir=None`` always trains (the quick variant does, in seconds); the CLI caches under
    ``$GRADCAM_CACHE`` or ``~/.cache/gradcam``.
    """
    p = cfg.bias
    train_biased = make_data(cfg, cfg.n_train, cfg.seed * 7919 + 1, (p, 1 - p))
    train_balanced = make_data(cfg, cfg.n_train, cfg.seed * 7919 + 1, (0.5, 0.5))
    test = make_data(cfg, cfg.n_test, cfg.seed * 7919 + 2, (0.5, 0.5))
    sets = {"biased": train_biased, "debiased": train_balanced, "attention": train_biased}
    acc, stamped_acc, cue, obj, secs, fig_maps = {}, {}, {}, {}, {}, {}
    s = test.stamped
    # The figure: stamped test images of the class the stamp does NOT go with (the biased model's mistakes).
    fig_idx = ((test.labels == 1) & s).nonzero().flatten()[: n_figure // 2].tolist()
    fig_idx += ((test.labels == 0) & s).nonzero().flatten()[: n_figure - len(fig_idx)].tolist()
    for arm in ARMS:
        log(f"bias study: training the {arm} model ...")
        net, secs[arm] = _load_or_train(cfg, sets[arm], arm, cache_dir, log)
        m = measure(net, cfg, test)
        right = (m["pred"] == test.labels).float()
        acc[arm] = round(float(right.mean()), 4)
        stamped_acc[arm] = round(float(right[s].mean()), 4)
        cue[arm] = round(float(m["cue"][s].mean()), 4)
        obj[arm] = round(float(m["object"][s].mean()), 4)
        fig_maps[arm] = m["maps"][fig_idx]
        fig_labels = [cfg.classes[int(test.labels[i])] for i in fig_idx]
    return BiasResult(
        biased_test_accuracy=acc["biased"],
        debiased_test_accuracy=acc["debiased"],
        attention_trained_test_accuracy=acc["attention"],
        biased_cue_mass=cue["biased"],
        debiased_cue_mass=cue["debiased"],
        attention_trained_cue_mass=cue["attention"],
        object_mass=obj,
        stamped_test_accuracy=stamped_acc,
        train_seconds=secs,
        config=dict(asdict(cfg), stamp_box_xyxy=list(stamp_box(cfg)), cue_box_xyxy=list(cue_box(cfg))),
        figure_images=test.images[fig_idx],
        figure_maps=fig_maps,
        figure_labels=fig_labels,
    )
