"""Trust: do explanations tell the stronger model apart? (Selvaraju et al., Sec. 5.3, the machine analog).

In the paper, people shown explanations of two models that made the *same* correct prediction picked the
more accurate model more often (Guided Grad-CAM more reliably than Guided Backprop). Here the measures
take the people's place: two CNNs of one architecture (the VGG-like synthetic CNN,
:class:`~gradcam.evaluation.synthetic.ShapeNet`) and clearly different accuracy on the same task (the
shapes of :mod:`gradcam.evaluation.synthetic`):

- the **stronger** model: the committed weights (width 8, 3000 scenes, 6 epochs);
- the **weaker** model: the same architecture trained briefly (2000 scenes, 4 epochs, seeded); its weights
  are committed too, so the study gives the same numbers on every CPU (training anew differs in the last
  bits from one instruction set to another).

On the held-out scenes both classify right, each method explains the true class for each model, and each
measure is computed per image: ``pointing`` (peak within the scaled 15 px tolerance of the object's mask),
``energy_in_box`` (map mass inside the object's box), ``relevance_rank`` (Arras et al.: share of the
|mask| top pixels inside the mask), ``deletion`` (lower is better) and ``insertion`` AUC (Petsiuk et al.).
The difference is stronger minus weaker per image; its 95% interval is the percentile bootstrap over the
images (``n_boot`` resamples, seeded). The stronger model is *preferred* by a measure when the whole
interval lies on the measure's better side of zero.

Deletion and insertion read each model's own probabilities: a more confident model has higher curves for
any map. To keep the model's confidence out of them, each curve is divided by the model's probability of
the class on the clean image before the area is taken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Dict, Sequence, Tuple

import torch

from .. import metrics as M
from ..evaluation import synthetic as syn
from ..methods import registry
from ..methods.gradcam import GradCAM

LOWER_IS_BETTER = ("deletion",)
MEASURES = ("pointing", "energy_in_box", "relevance_rank", "deletion", "insertion")
WEAK_TRAINING = dict(width=8, n_train=2000, epochs=4)


@dataclass(frozen=True)
class TrustConfig:
    """The test set, the methods, the deletion/insertion steps and the bootstrap."""

    n_test: int = 600
    methods: Tuple[str, ...] = (
        "gradcam",
        "guided-gradcam",
        "guided-backprop",
        "gradcam++",
        "xgradcam",
        "hirescam",
        "layercam",
        "eigencam",
    )
    steps: int = 16
    n_boot: int = 2000
    seed: int = 0


QUICK = TrustConfig(
    n_test=200, methods=("gradcam", "guided-gradcam", "guided-backprop", "gradcam++"), steps=8, n_boot=1000
)


def bootstrap_ci(diffs: torch.Tensor, n_boot: int, seed: int, level: float = 0.95) -> torch.Tensor:
    """Percentile bootstrap interval (K, 2) of the mean of each row of ``diffs`` (K, N): ``n_boot`` resamples
    of the N columns with replacement (one seeded index draw shared by all rows: the measures stay paired)."""
    n = diffs.shape[1]
    idx = torch.randint(n, (n_boot, n), generator=torch.Generator().manual_seed(seed))
    means = diffs.double()[:, idx].mean(2)  # (K, n_boot)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    return torch.quantile(means, q, dim=1).T


def measures(
    model, method, x: torch.Tensor, y: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor, steps: int
) -> Dict[str, torch.Tensor]:
    """Each measure of :data:`MEASURES` per image (N,) for ``method``'s maps of class ``y`` on ``model``."""
    maps = torch.cat(
        [method(x[i : i + 100], target=y[i : i + 100]).maps[:, 0].detach() for i in range(0, len(x), 100)]
    )
    tol = 15 * x.shape[-1] / 224
    return {
        "pointing": M.pointing_hits(maps, masks, tolerance=tol).double(),
        "energy_in_box": M.energy_in_box(maps, boxes).double(),
        "relevance_rank": M.relevance_rank_accuracy(maps, masks).double(),
        **{mode: _normalised_auc(model, x, maps, y, mode, steps) for mode in ("deletion", "insertion")},
    }


def _normalised_auc(model, x, maps, y, mode: str, steps: int) -> torch.Tensor:
    """Deletion or insertion AUC of the probability curve divided by the clean image's probability."""
    curve = M.perturbation_curve(model, x, maps, y, mode, steps, max_batch=512).double()
    p = curve[:, :1] if mode == "deletion" else curve[:, -1:]
    return M.auc(curve / p.clamp_min(1e-12))


def compare(
    strong: Dict[str, torch.Tensor], weak: Dict[str, torch.Tensor], n_boot: int, seed: int
) -> Dict[str, Dict]:
    """Per measure: both means, the mean difference (stronger - weaker), its 95% bootstrap interval, and
    whether the stronger model is preferred (the interval on the measure's better side of zero)."""
    diffs = torch.stack([strong[k] - weak[k] for k in MEASURES])
    ci = bootstrap_ci(diffs, n_boot, seed)
    out = {}
    for i, k in enumerate(MEASURES):
        lo, hi = float(ci[i, 0]), float(ci[i, 1])
        lower = k in LOWER_IS_BETTER
        out[k] = {
            "stronger": round(float(strong[k].mean()), 4),
            "weaker": round(float(weak[k].mean()), 4),
            "difference": round(float(diffs[i].mean()), 4),
            "ci95": [round(lo, 4), round(hi, 4)],
            "better": "lower" if lower else "higher",
            "stronger_preferred": bool(hi < 0) if lower else bool(lo > 0),
        }
    return out


def models(cache_dir=None, log: Callable[[str], None] = print):
    """The stronger (committed) and the weaker (briefly trained; committed too) VGG-like synthetic CNNs."""
    strong, _ = syn.load_or_train(syn.TrainConfig(kind="vgg"), cache_dir, log=log)
    weak, _ = syn.load_or_train(syn.TrainConfig(kind="vgg", **WEAK_TRAINING), cache_dir, log=log)
    return strong, weak


def run(cfg: TrustConfig = TrustConfig(), log: Callable[[str], None] = print, cache_dir=None) -> Dict:
    """Accuracy of both models, the images both get right, and per method and measure the comparison
    (``"figure"``: six of the images with each model's Grad-CAM, for :func:`~gradcam.studies.figures.trust_figure`)."""
    strong, weak = models(cache_dir, log)
    x, y, masks, boxes = syn.make_data(cfg.n_test, seed=20_000 + cfg.seed, size=syn.TrainConfig().size)
    y, masks, boxes = y[:, 0], masks[:, 0], boxes[:, 0]
    with torch.no_grad():
        right = {name: net(x).argmax(1) == y for name, net in (("stronger", strong), ("weaker", weak))}
    both = right["stronger"] & right["weaker"]
    xb, yb, mb, bb = x[both], y[both], masks[both], boxes[both]
    log(
        f"trust study: accuracy {float(right['stronger'].float().mean()):.3f} vs "
        f"{float(right['weaker'].float().mean()):.3f}; {int(both.sum())} images both classify right"
    )
    results = {}
    for name in cfg.methods:
        per = [
            measures(net, registry.get(name)(net, layer=syn.GRADCAM_LAYER), xb, yb, mb, bb, cfg.steps)
            for net in (strong, weak)
        ]
        results[name] = compare(per[0], per[1], cfg.n_boot, cfg.seed)
        log(
            f"  {name}: "
            + ", ".join(f"{k} {v['difference']:+.3f} {v['ci95']}" for k, v in results[name].items())
        )
    fig = {"images": xb[:6]}
    for key, net in (("stronger", strong), ("weaker", weak)):
        fig[key] = GradCAM(net, layer=syn.GRADCAM_LAYER)(xb[:6], target=yb[:6]).maps[:, 0].detach()
    return {
        "figure": fig,
        "stronger_model": "vgg: committed synthetic CNN (width 8, 3000 scenes, 6 epochs)",
        "weaker_model": "vgg: same architecture, briefly trained (width 8, 2000 scenes, 4 epochs)",
        "accuracy": {k: round(float(v.float().mean()), 4) for k, v in right.items()},
        "n_test": cfg.n_test,
        "n_both_correct": int(both.sum()),
        "differences": results,
        "config": asdict(cfg),
    }


def sentence(summary: Dict, methods: Sequence[str] = ("gradcam", "guided-gradcam", "guided-backprop")) -> str:
    """The finding in one sentence with its numbers (energy in box, the main localisation measure)."""
    parts = []
    for m in methods:
        if m in summary["differences"]:
            e = summary["differences"][m]["energy_in_box"]
            n_pref = sum(v["stronger_preferred"] for v in summary["differences"][m].values())
            parts.append(
                f"{m} {e['difference']:+.3f} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}] "
                f"({n_pref}/{len(MEASURES)} measures prefer it)"
            )
    acc = summary["accuracy"]
    return (
        f"On the {summary['n_both_correct']} of {summary['n_test']} scenes both models classify right "
        f"(accuracy {acc['stronger']:.3f} vs {acc['weaker']:.3f}, seed {summary['config']['seed']}), the "
        f"stronger model's energy in box minus the weaker's, with 95% bootstrap intervals: "
        + "; ".join(parts)
        + "."
    )
