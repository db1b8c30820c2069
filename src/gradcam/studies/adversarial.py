"""Grad-CAM under adversarial noise (Selvaraju et al., Sec. 6.2): targeted FGSM and PGD on the embedded
ImageNet model, on real photos and on 2 x 2 mosaics of them.

Attacks work on pixels x in [0, 1] (the model sees (x - 0.5) / 0.5), towards a target class t, with an
L-infinity budget eps:

- FGSM (targeted): ``x' = clip_[0,1]( x - eps * sign( d CE(f(x), t) / dx ) )``;
- PGD (targeted, Madry et al. 2018): from x_0 = x, ``steps`` times
  ``x_{i+1} = clip_[0,1]( proj_{|x' - x|_inf <= eps}( x_i - step * sign( d CE(f(x_i), t) / dx_i ) ) )``.

An attack succeeds when the top-1 class of f(x') is t. Gradients are w.r.t. the input only
(``torch.autograd.grad``; parameters' ``requires_grad`` is off during the attack and restored after).

Then Grad-CAM for the original class and for the target class on the attacked image. On mosaics the
original class's tile is its ground truth: pointing = the share of maps whose peak lies inside that tile
(strictly: tolerance 0). ``pointing_adversarial_target_class`` counts the target class's map peaking in the
original object's tile. The paper's finding: the original class's map still localizes the object.
On single photos (no boxes) ``map_correlation`` is the Pearson correlation between the original class's map
on the clean and on the attacked photo.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from .. import engine
from ..evaluation import mosaics as _mosaics
from ..methods.gradcam import GradCAM
from ..metrics.pointing import pointing_hits


@dataclass(frozen=True)
class AdversarialConfig:
    """The images, the attacks' budgets and the seed."""

    n_photos: int = 20
    n_mosaics: int = 8
    tile: int = 224
    eps: float = 4 / 255
    fgsm_eps: float = 8 / 255
    pgd_steps: int = 10
    pgd_step: float = 1 / 255
    batch: int = 4
    seed: int = 0


QUICK = AdversarialConfig(n_photos=4, n_mosaics=2, tile=160, eps=8 / 255, pgd_steps=4, pgd_step=3 / 255)


@dataclass
class AdversarialResult:
    """The study's record: the four summary keys (PGD), per-attack details, and the figure's tensors."""

    attack_success_rate: float
    pointing_clean: float
    pointing_adversarial_original_class: float
    pointing_adversarial_target_class: float
    attacks: Dict[str, Dict[str, float]]
    config: Dict
    figure: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    figure_labels: List[str] = field(default_factory=list, repr=False)

    def summary(self) -> Dict:
        """The JSON summary: the four summary keys (PGD), then every attack's numbers."""
        out = {
            k: getattr(self, k)
            for k in (
                "attack_success_rate",
                "pointing_clean",
                "pointing_adversarial_original_class",
                "pointing_adversarial_target_class",
            )
        }
        out.update(attacks=self.attacks, config=self.config)
        return out


def to_model(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] -> the embedded EfficientNet-Lite0's input, (x - 0.5) / 0.5."""
    return x * 2.0 - 1.0


def _input_grad(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """d CE(f(x), target) / dx, the batch's summed loss (images are independent in eval mode)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(to_model(x)), target, reduction="sum")
        (g,) = torch.autograd.grad(loss, [x])
    return g


def _attack(step_fn: Callable[[nn.Module], torch.Tensor], model: nn.Module) -> torch.Tensor:
    # A private eval-mode view whose parameters do not require grad: the user's model is never switched.
    with engine.frozen(model) as m:
        return step_fn(m)


def fgsm(model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Targeted FGSM: ``clip_[0,1]( x - eps * sign(d CE(f(x), t) / dx) )``; x (N, 3, H, W) pixels in [0, 1]."""
    return _attack(lambda m: (x - eps * _input_grad(m, x, target).sign()).clamp(0, 1), model)


def pgd(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, eps: float, steps: int, step: float
) -> torch.Tensor:
    """Targeted PGD: ``steps`` signed-gradient steps of size ``step`` towards t, each projected onto the
    L-inf ball of radius ``eps`` around x and onto [0, 1]."""

    def run(m: nn.Module) -> torch.Tensor:
        adv = x.clone()
        for _ in range(steps):
            adv = adv - step * _input_grad(m, adv, target).sign()
            adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(0, 1)
        return adv

    return _attack(run, model)


def _predict(model: nn.Module, x: torch.Tensor, batch: int = 4) -> torch.Tensor:
    with engine.frozen(model) as m, torch.no_grad():
        return _batched(lambda xb: m(to_model(xb)).argmax(1), batch, x)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, (a * b).sum(1) / den.clamp_min(1e-12), torch.zeros_like(den))


def _targets(rng: random.Random, n: int, avoid: List[List[int]]) -> torch.Tensor:
    out = []
    for i in range(n):
        t = rng.randrange(1000)
        while t in avoid[i]:
            t = rng.randrange(1000)
        out.append(t)
    return torch.tensor(out)


def _batched(fn: Callable[..., torch.Tensor], size: int, *tensors: torch.Tensor) -> torch.Tensor:
    """fn over chunks of ``size`` images (bounds the memory of a backward pass: 4 mosaics of 448 px peak at about 2 GB), concatenated."""
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, n, size)])


def _attack_metrics(
    eps: float,
    sp: torch.Tensor,
    sm: torch.Tensor,
    orig_m: torch.Tensor,
    targ_m: torch.Tensor,
    tile_mask: torch.Tensor,
    clean_p: torch.Tensor,
    orig_p: torch.Tensor,
) -> dict:
    """One attack's row: success rates, pointing on the adversarial mosaics, map correlation on photos."""
    return {
        "eps_255": round(eps * 255, 2),
        "success_photos": round(float(sp.float().mean()), 4),
        "success_mosaics": round(float(sm.float().mean()), 4),
        "attack_success_rate": round(float(torch.cat([sp, sm]).float().mean()), 4),
        "pointing_adversarial_original_class": round(
            float(pointing_hits(orig_m, tile_mask, tolerance=0).float().mean()), 4
        ),
        "pointing_adversarial_target_class": round(
            float(pointing_hits(targ_m, tile_mask, tolerance=0).float().mean()), 4
        ),
        "map_correlation_photos": round(float(_pearson(clean_p, orig_p).mean()), 4),
    }


def run(
    cfg: AdversarialConfig = AdversarialConfig(), log: Callable[[str], None] = print, loaded=None
) -> AdversarialResult:
    """Attack correctly classified photos and mosaics with FGSM and PGD and explain before and after."""
    from ..models import load_model

    loaded = loaded or load_model("efficientnet-lite0")
    model = loaded.model
    cam = GradCAM(model, layer=loaded.layer)
    rng = random.Random(cfg.seed)
    photos = _mosaics.load_photos(cfg.tile)
    pred = _predict(model, torch.stack([p.image for p in photos]))
    ok, _ = _mosaics.split_classified(photos, pred)
    ok = ok[: cfg.n_photos]
    xp = torch.stack([p.image for p in ok])
    yp = torch.tensor([p.label for p in ok])
    mos = _mosaics.make_mosaics(
        ok if len({p.label for p in ok}) >= 4 else photos, cfg.n_mosaics, seed=cfg.seed
    )
    xm = mos.images
    # The mosaic's original class: the tile class the model scores highest (it sees that object).
    with torch.no_grad():
        logits = _batched(lambda xb: model(to_model(xb)), cfg.batch, xm)
    tile_idx = logits.gather(1, mos.labels).argmax(1)
    ym = mos.labels.gather(1, tile_idx.view(-1, 1)).squeeze(1)
    tile_mask = mos.masks[torch.arange(len(xm)), tile_idx]
    tp = _targets(rng, len(xp), [[int(c)] for c in yp])
    tm = _targets(rng, len(xm), mos.labels.tolist())
    log(f"adversarial study: {len(xp)} photos, {len(xm)} mosaics, {cfg.tile}px tiles")

    def explain(x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        return _batched(lambda xb, cb: cam(to_model(xb), target=cb.tolist()).maps[:, 0], cfg.batch, x, cls)

    def attack(name: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if name == "fgsm":
            return _batched(lambda xb, tb: fgsm(model, xb, tb, cfg.fgsm_eps), cfg.batch, x, t)
        return _batched(
            lambda xb, tb: pgd(model, xb, tb, cfg.eps, cfg.pgd_steps, cfg.pgd_step), cfg.batch, x, t
        )

    clean_m = explain(xm, ym)
    clean_p = explain(xp, yp)
    pointing_clean = float(pointing_hits(clean_m, tile_mask, tolerance=0).float().mean())
    attacks, figure = {}, {}
    for name in ("fgsm", "pgd"):
        log(f"adversarial study: {name} ...")
        ap, am = attack(name, xp, tp), attack(name, xm, tm)
        sp = _predict(model, ap) == tp
        sm = _predict(model, am) == tm
        orig_m, targ_m = explain(am, ym), explain(am, tm)
        orig_p = explain(ap, yp)
        eps = cfg.fgsm_eps if name == "fgsm" else cfg.eps
        attacks[name] = _attack_metrics(eps, sp, sm, orig_m, targ_m, tile_mask, clean_p, orig_p)
        if name == "pgd":
            figure = {
                "clean": xp[:3],
                "adversarial": ap[:3],
                "clean_map": clean_p[:3],
                "original_map": orig_p[:3],
                "target_map": explain(ap[:3], tp[:3]),
            }
    labels = loaded.labels
    fig_labels = [f"{labels[int(a)]} -> {labels[int(b)]}" for a, b in zip(yp[:3], tp[:3])]
    pg = attacks["pgd"]
    return AdversarialResult(
        attack_success_rate=pg["attack_success_rate"],
        pointing_clean=round(pointing_clean, 4),
        pointing_adversarial_original_class=pg["pointing_adversarial_original_class"],
        pointing_adversarial_target_class=pg["pointing_adversarial_target_class"],
        attacks=attacks,
        config=dict(asdict(cfg), n_photos_used=len(xp), n_mosaics_used=len(xm)),
        figure=figure,
        figure_labels=fig_labels,
    )
