"""Failure modes (Selvaraju et al., Sec. 6.1): every real photo the embedded model gets wrong, explained.

The photos are foolbox's 20 labelled ImageNet validation photos, centre-cropped at 224 px (the
EfficientNet evaluation crop; EfficientNet-Lite0 gets 18 of 20). For each mistake, four Grad-CAM maps:
the predicted class c' and the true class c, and the counterfactual map of each (-dy/dA: regions whose
removal would raise that class's score). The table gives the probabilities, the true class's rank and
``map_correlation``, the Pearson correlation between the predicted and the true class's maps: a high
value means the model looked at the same object for both, i.e. the mistake is one of naming, not of
looking elsewhere (the paper's "seemingly unreasonable predictions have reasonable explanations").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

from ..evaluation import mosaics as _mosaics
from ..methods.gradcam import GradCAM
from .adversarial import _pearson, to_model


@dataclass(frozen=True)
class FailuresConfig:
    """The photos' crop size."""

    tile: int = 224


QUICK = FailuresConfig(tile=224)  # the full study is already small: 20 photos, one batch


@dataclass
class FailuresResult:
    """``n_photos``, ``n_correct``, one table row per mistake, and the figure's tensors."""

    n_photos: int
    n_correct: int
    failures: List[Dict]
    images: Optional[torch.Tensor] = field(repr=False, default=None)
    maps: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> Dict:
        """The JSON summary."""
        return {
            "n_photos": self.n_photos,
            "n_correct": self.n_correct,
            "top1_accuracy": round(self.n_correct / self.n_photos, 4),
            "failures": self.failures,
        }

    def markdown(self) -> str:
        """The table of mistakes in Markdown."""
        rows = [
            "| photo | true class | predicted | p(predicted) | p(true) | rank of true | map correlation |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for f in self.failures:
            rows.append(
                f"| {f['photo']} | {f['true']} | {f['predicted']} | {f['p_predicted']:.3f} | "
                f"{f['p_true']:.3f} | {f['true_rank']} | {f['map_correlation']:.2f} |"
            )
        return "\n".join(rows)


def run(
    cfg: FailuresConfig = FailuresConfig(), log: Callable[[str], None] = print, loaded=None
) -> FailuresResult:
    """Classify the 20 photos in one batch and explain every mistake (4 maps each, one batched call per kind)."""
    from ..models import load_model

    loaded = loaded or load_model("efficientnet-lite0")
    photos = _mosaics.load_photos(cfg.tile)
    x = torch.stack([p.image for p in photos])
    y = torch.tensor([p.label for p in photos])
    cam = GradCAM(loaded.model, layer=loaded.layer)
    res = cam(to_model(x))
    prob = res.probabilities()
    pred = res.targets[:, 0]
    wrong = (pred != y).nonzero().flatten()
    log(f"failures study: {len(photos) - len(wrong)}/{len(photos)} photos right")
    out = FailuresResult(len(photos), len(photos) - len(wrong), [])
    if len(wrong) == 0:
        return out
    xw, pw, yw = x[wrong], pred[wrong], y[wrong]
    both = torch.stack([pw, yw], dim=1)  # (M, 2): predicted and true class, one forward and one backward
    plain = cam(to_model(xw), target=both).maps
    counter = cam(to_model(xw), target=both, counterfactual=True).maps
    out.images = xw
    out.maps = {
        "predicted": plain[:, 0],
        "true": plain[:, 1],
        "predicted_counterfactual": counter[:, 0],
        "true_counterfactual": counter[:, 1],
    }
    corr = _pearson(plain[:, 0], plain[:, 1])
    labels = loaded.labels
    for j, i in enumerate(wrong.tolist()):
        p = prob[i]
        out.failures.append(
            {
                "photo": photos[i].name,
                "true": labels[int(y[i])],
                "true_id": int(y[i]),
                "predicted": labels[int(pred[i])],
                "predicted_id": int(pred[i]),
                "p_predicted": round(float(p[pred[i]]), 4),
                "p_true": round(float(p[y[i]]), 4),
                "true_rank": int((p > p[y[i]]).sum()) + 1,
                "map_correlation": round(float(corr[j]), 4),
            }
        )
    return out
