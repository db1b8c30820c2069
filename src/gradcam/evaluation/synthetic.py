"""The synthetic benchmark's data and models: shape classification on cluttered scenes with exact masks.

Classes are the five shapes of :mod:`gradcam.datasets.scenes` (colours are random, so colour is no
shortcut). Two small CNNs are trained on one-object scenes on the CPU with fixed seeds:

- ``vgg``: convolutions, then fully connected layers on the flattened 8x8 map (VGG-like; CAM does not
  apply);
- ``gap``: the same convolutions, then global average pooling and one linear layer (CAM applies, and
  Grad-CAM equals CAM up to a constant, as in Table 1 of the paper).

The weights the published tables came from (the default configurations, seed 0) are committed in
``gradcam/data/`` (``synthetic-<kind>-<key>.pt``, with their SHA-256 in ``synthetic_weights.json``, checked
at every load): tables made from them reproduce on any machine. Other settings (``--quick``, other seeds,
``retrain=True``) train on the CPU and cache under ``cache_dir`` (default ``$GRADCAM_CACHE`` or
``~/.cache/gradcam``), keyed by every setting that changes them; nothing is downloaded. Training uses
``torch.autograd.grad`` and plain Adam with ``torch.use_deterministic_algorithms``: the same seed gives the
same weights on the same machine and thread count, not across CPUs (float rounding differs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets import scenes
from . import weights as _weights

CLASSES: Tuple[str, ...] = scenes.SHAPES
GRADCAM_LAYER = "features.12"  # the last ReLU of the convolutions (16 x 16 for 64 px scenes)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines the trained weights."""

    kind: str = "vgg"
    width: int = 8
    size: int = 64
    n_train: int = 3000
    epochs: int = 6
    batch_size: int = 64
    lr: Optional[float] = None  # None: 3e-3 for "vgg", 1e-2 for "gap" (one-cycle schedule)
    seed: int = 0

    @property
    def max_lr(self) -> float:
        return self.lr if self.lr is not None else (3e-3 if self.kind == "vgg" else 1e-2)


QUICK = {"width": 4, "n_train": 800, "epochs": 3}


def _block(cin: int, cout: int, stride: int = 1) -> List[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _features(width: int) -> List[nn.Module]:
    w1, w2, w3 = width, 2 * width, 4 * width
    return [*_block(3, w1, stride=2), *_block(w1, w2), nn.MaxPool2d(2), *_block(w2, w3), *_block(w3, w3)]


class ShapeNet(nn.Module):
    """Input (N, 3, S, S) in [0, 1] (centred inside); ``features.12`` is the last conv map (S/4)."""

    def __init__(self, kind: str = "vgg", width: int = 16, size: int = 64, num_classes: int = len(CLASSES)):
        super().__init__()
        if kind not in ("vgg", "gap"):
            raise ValueError(
                f"kind must be 'vgg' (fully connected head) or 'gap' (global average pooling); got {kind!r}."
            )
        self.kind = kind
        self.features = nn.Sequential(*_features(width))
        c = 4 * width
        if kind == "vgg":
            s = size // 8
            self.head = nn.Sequential(
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(c * s * s, 128),
                nn.ReLU(),
                nn.Linear(128, num_classes),
            )
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x - 0.5))


def make_data(
    n: int, seed: int, size: int = 64, n_objects: int = 1
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` scenes: images (N, 3, S, S), labels (N, K) (shape ids, K = n_objects), masks (N, K, S, S)
    and boxes (N, K, 4), objects left to right."""
    sc = scenes.make_scenes(n, seed, size=size, n_objects=n_objects)
    x = scenes.stack(sc)
    y = torch.tensor([[CLASSES.index(o.shape) for o in s.objects] for s in sc])
    masks = torch.stack([torch.stack([o.mask for o in s.objects]) for s in sc])
    boxes = torch.tensor([[list(o.box) for o in s.objects] for s in sc])
    return x, y, masks, boxes


def train(cfg: TrainConfig, log=print) -> Tuple[ShapeNet, Dict]:
    """Train a :class:`ShapeNet` from scratch with ``cfg`` (seeded, deterministic); returns it (eval
    mode) and a record of the training (time, final loss)."""
    t0 = time.time()
    x, y, _, _ = make_data(cfg.n_train, seed=10_000 + cfg.seed, size=cfg.size)
    y = y[:, 0]
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = ShapeNet(cfg.kind, cfg.width, cfg.size)
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=cfg.max_lr)
            steps = cfg.epochs * ((cfg.n_train + cfg.batch_size - 1) // cfg.batch_size)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.max_lr, total_steps=steps)
            gen = torch.Generator().manual_seed(cfg.seed)
            net.train()
            loss = torch.zeros(())
            for epoch in range(cfg.epochs):
                perm = torch.randperm(cfg.n_train, generator=gen)
                for i in range(0, cfg.n_train, cfg.batch_size):
                    idx = perm[i : i + cfg.batch_size]
                    xb = x[idx]
                    flip = torch.rand(len(idx), generator=gen) < 0.5  # shapes are symmetric left-right
                    xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
                    loss = F.cross_entropy(net(xb), y[idx])
                    grads = torch.autograd.grad(loss, params)
                    for p, g in zip(params, grads):
                        p.grad = g
                    opt.step()
                    sched.step()
                log(f"  [{cfg.kind}] epoch {epoch + 1}/{cfg.epochs}: loss {float(loss.detach()):.3f}")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for p in net.parameters():
        p.grad = None
    net.eval()
    return net, {"train_seconds": round(time.time() - t0, 1), "final_loss": round(float(loss.detach()), 4)}


def default_cache_dir() -> Path:
    """``$GRADCAM_CACHE`` or ``~/.cache/gradcam``."""
    return Path(os.environ.get("GRADCAM_CACHE") or Path.home() / ".cache" / "gradcam")


COMMITTED_DIR = Path(__file__).resolve().parent.parent / "data"
CHECKSUMS = COMMITTED_DIR / "synthetic_weights.json"


def config_key(cfg: TrainConfig) -> str:
    """The 12-hex-digit key of every setting that changes the weights (part of the file names)."""
    return _weights.config_key(cfg)


def committed_weights(cfg: TrainConfig) -> Optional[Path]:
    """The committed weight file for ``cfg``, after checking its SHA-256; ``None`` when none is committed.
    A file whose checksum does not match raises (a corrupted or edited file is never used)."""
    return _weights.committed_file(f"synthetic-{cfg.kind}-{config_key(cfg)}.pt", COMMITTED_DIR, CHECKSUMS)


def load_or_train(
    cfg: TrainConfig, cache_dir: Union[str, os.PathLike, None] = None, log=print, retrain: bool = False
) -> Tuple[ShapeNet, Dict]:
    """The trained network for ``cfg``: the committed weights when there are some (checksum verified),
    else from the cache, else trained now and cached. ``retrain=True`` skips the committed weights."""
    path = Path(cache_dir or default_cache_dir()) / f"synthetic-{cfg.kind}-{config_key(cfg)}.pt"
    net = ShapeNet(cfg.kind, cfg.width, cfg.size)
    fixed = None if retrain else committed_weights(cfg)
    what = f"the synthetic '{cfg.kind}' CNN"
    out, info = _weights.load_or_train(net, cfg, fixed, path, lambda: train(cfg, log), log, what)
    return cast(ShapeNet, out), info
