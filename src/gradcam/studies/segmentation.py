"""Weakly-supervised segmentation seeded by Grad-CAM (Selvaraju et al., Sec. 5.2; SEC, Kolesnikov & Lampert 2016).

The task: segment the one object of a synthetic scene (:mod:`gradcam.datasets.scenes`, exact masks)
into background and its shape class (5 shapes, so 6 labels). The segmentation network never sees a mask:
it learns from image-level labels through *seeds* (cues) derived from a classifier's map of the true class,
with the paper's recipe:

- foreground cues: pixels where the class map is confident, ``map >= fg_threshold`` (maps are scaled to a
  maximum of 1, so this is a share of the peak);
- background cues: pixels of low saliency, ``map < bg_threshold``;
- every other pixel carries no cue.

Three seed sources, as in the paper: **Grad-CAM** of the committed VGG-like synthetic CNN (the unchanged
architecture, fully connected head), **CAM** of the committed GAP CNN (CAM needs global average pooling,
the architecture change the paper points at), and a **random map** (uniform noise on an 8x8 grid, upsampled;
the same thresholds). The same small fully convolutional network (:class:`SegNet`) is trained from each seed
set from the same initial weights with SEC's three losses:

- *seed*: ``-1/|S| sum_{u in S} log f_u(s_u)``, the cross-entropy on the cued pixels;
- *expand*: global weighted rank pooling per class, ``G_c = sum_j d_c^j f_{(j),c} / sum_j d_c^j`` over the
  class's scores sorted high to low, ``-mean_{c present} log G_c - mean_{c absent} log(1 - G_c)``, with
  ``d`` chosen so the effective support is 15% of the image for objects and 60% for the background
  (SEC's 0.996 and 0.999 on its 41x41 grid), and ``d = 0`` (max pooling) for absent classes;
- *constrain to boundaries*: ``1/n sum_u sum_c Q_u(c) log(Q_u(c) / f_u(c))`` with ``Q`` the network's
  output averaged over each superpixel (SLIC of scikit-image, a maintained package) and held constant.
  SEC uses a dense CRF for ``Q``; the maintained CRF package (``pydensecrf``) builds from source against an
  unmaintained Cython stack and does not install offline, so superpixel averaging, which also snaps the
  output to image edges, takes its place.

The upper bound is the same network trained with the exact masks (cross-entropy). The measure is the mean
intersection over union over the 6 labels on held-out scenes, accumulated over the test set (PASCAL VOC's
rule). Same seed, same numbers (deterministic algorithms, seeded generators).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..evaluation import synthetic as syn
from ..methods.cam import CAM
from ..methods.gradcam import GradCAM

SOURCES = ("gradcam", "cam", "random")
NUM_LABELS = len(syn.CLASSES) + 1  # background + the 5 shapes


@dataclass(frozen=True)
class SegmentationConfig:
    """Everything that determines the data, the seeds, the four trained networks and the measurement."""

    n_train: int = 600
    n_test: int = 200
    width: int = 16
    steps: int = 500
    batch_size: int = 16
    lr: float = 1e-2
    fg_threshold: float = 0.5
    bg_threshold: float = 0.15
    superpixels: int = 60
    seed: int = 0


QUICK = SegmentationConfig(n_train=160, n_test=80, steps=250)


@dataclass
class SegmentationResult:
    """The issue's four mean IoUs, the seeds' quality, timings, and the figure's tensors."""

    miou: Dict[str, float]
    seed_precision: Dict[str, float]
    seed_coverage: Dict[str, float]
    train_seconds: Dict[str, float]
    config: Dict
    figure_images: Optional[torch.Tensor] = field(default=None, repr=False)
    figure_labels: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> Dict:
        """The JSON summary: ``miou_<source>_seeds`` and ``miou_full_supervision``, then the details."""
        out: Dict[str, Any] = {f"miou_{s}_seeds": self.miou[s] for s in SOURCES}
        out["miou_full_supervision"] = self.miou["full"]
        out.update(
            seed_precision=self.seed_precision,
            seed_coverage=self.seed_coverage,
            train_seconds=self.train_seconds,
            config=self.config,
        )
        return out

    def sentence(self) -> str:
        """The finding in one sentence with its numbers."""
        m = self.miou
        return (
            f"Mean IoU on {self.config['n_test']} held-out scenes (seed {self.config['seed']}): Grad-CAM seeds "
            f"{m['gradcam']:.3f}, CAM seeds {m['cam']:.3f}, random seeds {m['random']:.3f}, full supervision "
            f"{m['full']:.3f}; Grad-CAM seeds {'beat' if m['gradcam'] > m['cam'] else 'trail'} CAM seeds "
            f"by {abs(m['gradcam'] - m['cam']):.3f}."
        )


class SegNet(nn.Module):
    """A small fully convolutional network: a stride-2 convolution, four dilated 3x3 convolutions
    (dilation 1, 2, 4, 8; receptive field 63 px), each with batch norm and ReLU, and a 1x1 classifier.
    ``forward`` gives logits at half the input size (where the losses are computed); :meth:`predict`
    upsamples them bilinearly to the input size and takes the best label."""

    def __init__(self, width: int = 16, labels: int = NUM_LABELS):
        super().__init__()
        layers: List[nn.Module] = [
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        for d in (1, 2, 4, 8):
            layers += [
                nn.Conv2d(width, width, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(width, labels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x - 0.5))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Label maps (N, H, W) at the input size."""
        out = F.interpolate(self(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out.argmax(1)


def seeds_from_maps(maps: torch.Tensor, labels: torch.Tensor, fg: float, bg: float) -> torch.Tensor:
    """Cues (N, H, W) long from class maps (N, H, W) scaled to a peak of 1: ``1 + label`` where
    ``map >= fg``, 0 (background) where ``map < bg``, -1 (no cue) elsewhere."""
    m = maps / maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    cue = torch.full(m.shape, -1, dtype=torch.long)
    cue = torch.where(m < bg, torch.zeros_like(cue), cue)
    return torch.where(m >= fg, (1 + labels).view(-1, 1, 1).expand_as(cue), cue)


def random_maps(n: int, size: int, seed: int, grid: int = 8) -> torch.Tensor:
    """(n, size, size) uniform noise on a ``grid`` x ``grid`` lattice, upsampled bilinearly (seeded)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 1, grid, grid, generator=g)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[:, 0]


def class_maps(
    images: torch.Tensor, labels: torch.Tensor, cache_dir=None, log=print
) -> Dict[str, torch.Tensor]:
    """The true class's map (N, H, W) from each seed source (Grad-CAM of the VGG-like CNN, CAM of the
    GAP CNN, both the committed weights; a random map)."""
    vgg, _ = syn.load_or_train(syn.TrainConfig(kind="vgg"), cache_dir, log=log)
    gap, _ = syn.load_or_train(syn.TrainConfig(kind="gap"), cache_dir, log=log)
    out = {}
    for name, method in (
        ("gradcam", GradCAM(vgg, layer=syn.GRADCAM_LAYER)),
        ("cam", CAM(gap, layer=syn.GRADCAM_LAYER)),
    ):
        out[name] = torch.cat(
            [
                method(images[i : i + 100], target=labels[i : i + 100]).maps[:, 0].detach()
                for i in range(0, len(images), 100)
            ]
        )
    return out


def superpixels(images: torch.Tensor, n_segments: int) -> torch.Tensor:
    """SLIC superpixels (N, H, W) long of each image (scikit-image; computed once per training image)."""
    try:
        from skimage.segmentation import slic
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(
            "The segmentation study's boundary term needs scikit-image (SLIC superpixels): "
            "pip install 'gradcam[studies]' (or scikit-image)."
        ) from e
    out = [
        torch.from_numpy(
            slic(
                img.permute(1, 2, 0).double().numpy(),
                n_segments=n_segments,
                compactness=10,
                start_label=0,
                channel_axis=-1,
            )
        ).long()
        for img in images
    ]
    return torch.stack(out)


def gwrp(probs: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
    """Global weighted rank pooling (N, C) of probabilities (N, C, H, W): per class, the scores sorted high
    to low weighted by ``decay[c] ** j``, ``G_c = sum_j d^j f_(j) / sum_j d^j`` (``d = 0``: the maximum)."""
    s = probs.flatten(2).sort(dim=2, descending=True).values
    j = torch.arange(s.shape[2], dtype=s.dtype)
    w = decay.view(-1, 1).pow(j)  # 0 ** 0 = 1: max pooling for d = 0
    return (s * w).sum(2) / w.sum(1)


def sec_losses(
    logits: torch.Tensor, cues: torch.Tensor, present: torch.Tensor, sp: torch.Tensor
) -> Dict[str, torch.Tensor]:
    """SEC's seed, expand and constrain losses for logits (N, L, H, W), cues (N, H, W) (-1: none),
    image-level labels ``present`` (N, L) bool (background always present) and superpixels (N, H, W)."""
    n, c, h, w = logits.shape
    logp = F.log_softmax(logits, 1)
    probs = logp.exp()
    seeded = cues >= 0
    seed = (
        F.nll_loss(logp, cues.clamp_min(0), reduction="none")[seeded].mean()
        if bool(seeded.any())
        else logits.sum() * 0
    )
    fg_d, bg_d = 1 - 1 / (0.15 * h * w), 1 - 1 / (0.6 * h * w)
    decay = torch.full((c,), fg_d, dtype=logits.dtype)
    decay[0] = bg_d
    g_present = gwrp(probs, decay).clamp(1e-5, 1 - 1e-5)
    g_absent = probs.flatten(2).amax(2).clamp(1e-5, 1 - 1e-5)
    pf = present.float()
    expand = (
        -(torch.log(g_present) * pf).sum(1) / pf.sum(1)
        - (torch.log(1 - g_absent) * (1 - pf)).sum(1) / (1 - pf).sum(1).clamp_min(1)
    ).mean()
    # Q: the output averaged over each superpixel, held constant (the CRF's role in SEC).
    k = int(sp.max()) + 1
    idx = (sp + k * torch.arange(n).view(-1, 1, 1)).flatten()
    flat = probs.detach().permute(0, 2, 3, 1).reshape(-1, c)
    sums = torch.zeros(n * k, c, dtype=flat.dtype).index_add_(0, idx, flat)
    counts = torch.zeros(n * k, dtype=flat.dtype).index_add_(0, idx, torch.ones_like(idx, dtype=flat.dtype))
    q = (sums[idx] / counts[idx].clamp_min(1).unsqueeze(1)).clamp_min(1e-8)
    constrain = (q * (q.log() - logp.permute(0, 2, 3, 1).reshape(-1, c))).sum(1).mean()
    return {"seed": seed, "expand": expand, "constrain": constrain}


def train_net(
    cfg: SegmentationConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    target: torch.Tensor,
    sp: Optional[torch.Tensor],
    log: Callable[[str], None] = print,
    name: str = "",
) -> SegNet:
    """Train :class:`SegNet` from ``cfg.seed`` (Adam, one-cycle, deterministic). ``sp`` given: SEC's three
    losses with ``target`` the cues; ``sp`` None: full supervision, ``target`` the exact label masks."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            net = SegNet(cfg.width)
            params = list(net.parameters())
            opt = torch.optim.Adam(params, lr=cfg.lr)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps)
            gen = torch.Generator().manual_seed(cfg.seed)
            present = F.one_hot(labels + 1, NUM_LABELS).bool()
            present[:, 0] = True
            n, perm, pos = len(images), torch.randperm(len(images), generator=gen), 0
            for step in range(cfg.steps):
                if pos + cfg.batch_size > n:
                    perm, pos = torch.randperm(n, generator=gen), 0
                idx = perm[pos : pos + cfg.batch_size]
                pos += cfg.batch_size
                logits = net(images[idx])
                if sp is None:
                    losses = {"ce": F.cross_entropy(logits, target[idx])}
                else:
                    losses = sec_losses(logits, target[idx], present[idx], sp[idx])
                loss = torch.stack(list(losses.values())).sum()
                grads = torch.autograd.grad(loss, params)
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
                sched.step()
                if (step + 1) % max(1, cfg.steps // 4) == 0:
                    log(
                        f"  [{name}] step {step + 1}/{cfg.steps}: "
                        + ", ".join(f"{k} {float(v.detach()):.3f}" for k, v in losses.items())
                    )
    finally:
        torch.use_deterministic_algorithms(deterministic)
    for p in net.parameters():
        p.grad = None
    return net.eval()


def mean_iou(pred: torch.Tensor, truth: torch.Tensor, labels: int = NUM_LABELS) -> float:
    """Mean over labels of ``TP / (TP + FP + FN)``, counted over all pixels of the set (labels that occur
    in neither ``pred`` nor ``truth`` are left out)."""
    conf = torch.bincount((truth.flatten() * labels + pred.flatten()), minlength=labels * labels).view(
        labels, labels
    )
    tp = conf.diag().double()
    union = conf.sum(0).double() + conf.sum(1).double() - tp
    return round(float((tp[union > 0] / union[union > 0]).mean()), 4)


def make_split(n: int, seed: int):
    """``n`` one-object scenes: images (N, 3, 64, 64), class ids (N,) and label masks (N, 64, 64)
    (0 background, 1 + class on the object)."""
    x, y, masks, _ = syn.make_data(n, seed=seed, size=64)
    y = y[:, 0]
    return (
        x,
        y,
        torch.where(masks[:, 0], (1 + y).view(-1, 1, 1), torch.zeros_like(masks[:, 0], dtype=torch.long)),
    )


def run(
    cfg: SegmentationConfig = SegmentationConfig(), log: Callable[[str], None] = print, cache_dir=None
) -> SegmentationResult:
    """Seeds from each source, one SEC-trained network per seed set, the fully supervised bound, mIoU."""
    x, y, truth = make_split(cfg.n_train, 40_000 + cfg.seed)
    xt, _, truth_t = make_split(cfg.n_test, 50_000 + cfg.seed)
    maps = class_maps(x, y, cache_dir, log)
    maps["random"] = random_maps(len(x), x.shape[-1], cfg.seed)
    sp = superpixels(x, cfg.superpixels)[:, ::2, ::2]  # the losses' grid: every second pixel (half size)
    miou, precision, coverage, seconds, preds = {}, {}, {}, {}, {}
    for name in (*SOURCES, "full"):
        t0 = time.time()
        if name == "full":
            net = train_net(cfg, x, y, truth[:, ::2, ::2], None, log, name)
        else:
            cues = seeds_from_maps(maps[name], y, cfg.fg_threshold, cfg.bg_threshold)
            seeded = cues >= 0
            precision[name] = round(float((cues == truth)[seeded].float().mean()), 4)
            coverage[name] = round(float(seeded.float().mean()), 4)
            net = train_net(cfg, x, y, cues[:, ::2, ::2], sp, log, name)
        seconds[name] = round(time.time() - t0, 1)
        preds[name] = net.predict(xt)
        miou[name] = mean_iou(preds[name], truth_t)
        log(f"  [{name}] mean IoU {miou[name]:.3f} ({seconds[name]} s)")
    res = SegmentationResult(miou, precision, coverage, seconds, asdict(cfg))
    res.figure_images = xt[:6]
    res.figure_labels = {"truth": truth_t[:6], **{k: v[:6] for k, v in preds.items()}}
    return res
