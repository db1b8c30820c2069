"""The studies' figures: grids of photos with Grad-CAM overlays (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import io
import os
from typing import List, Optional, Sequence, Tuple

import torch
from PIL import Image

from ..explanation import upsample
from ..image import colorize

Cell = Tuple[
    torch.Tensor, Optional[torch.Tensor], str
]  # image (3, H, W) in [0, 1], map (H, W) or None, title


def blend(image: torch.Tensor, m: Optional[torch.Tensor], alpha: float = 0.5) -> torch.Tensor:
    """(H, W, 3) in [0, 1]: (1 - alpha) * image + alpha * jet(map); the image alone when ``m`` is None."""
    img = image.detach().float().clamp(0, 1).permute(1, 2, 0)
    if m is None:
        return img
    m = m.detach().float()
    if m.shape != img.shape[:2]:
        m = upsample(m[None, None], tuple(img.shape[:2]))[0, 0]
    return (1 - alpha) * img + alpha * colorize(m.clamp(0, 1))


def grid(rows: Sequence[Sequence[Cell]], path: str, title: str = "", cell_inches: float = 1.9) -> str:
    """Draw ``rows`` of cells into a PNG at ``path`` (folders created); returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(cell_inches * n_cols, 1.12 * cell_inches * n_rows + 0.4), squeeze=False
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(row):
                image, m, text = row[c]
                ax.imshow(blend(image, m).numpy(), interpolation="nearest")
                ax.set_title(text, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100)
    plt.close(fig)
    buf.seek(0)
    compact(Image.open(buf), path)
    return path


def compact(image: Image.Image, path: str) -> None:
    """Save ``image`` as a 256-colour PNG (a third of the size of a true-colour one for these figures)."""
    image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def bias_figure(result, path: str) -> str:
    """The same stamped test images explained by the three models (rows), with the images on top."""
    imgs = result.figure_images
    rows: List[List[Cell]] = [[(imgs[i], None, f"test: {result.figure_labels[i]}") for i in range(len(imgs))]]
    names = {"biased": "biased", "debiased": "rebalanced", "attention": "attention-trained"}
    for arm, maps in result.figure_maps.items():
        rows.append([(imgs[i], maps[i], f"{names[arm]} model") for i in range(len(imgs))])
    return grid(rows, path, "Grad-CAM of the decision: stamp (top-left) vs shape")


def adversarial_figure(result, path: str) -> str:
    """Per photo: clean + original-class map, attacked + original-class map, attacked + target-class map."""
    f = result.figure
    rows = []
    for i, text in enumerate(result.figure_labels):
        orig, targ = text.split(" -> ")
        rows.append(
            [
                (f["clean"][i], None, "clean"),
                (f["clean"][i], f["clean_map"][i], f"clean: {orig}"),
                (f["adversarial"][i], None, "PGD-attacked"),
                (f["adversarial"][i], f["original_map"][i], f"attacked: {orig}"),
                (f["adversarial"][i], f["target_map"][i], f"attacked: {targ}"),
            ]
        )
    return grid(rows, path, "Targeted PGD: Grad-CAM for the original and the adversarial class")


def failures_figure(result, path: str) -> str:
    """Per mistake: photo, predicted and true class maps, and their counterfactual maps."""
    rows = []
    for i, f in enumerate(result.failures):
        x, m = result.images[i], result.maps
        rows.append(
            [
                (x, None, f"{f['photo']}"),
                (x, m["predicted"][i], f"predicted: {f['predicted']}"),
                (x, m["true"][i], f"true: {f['true']}"),
                (x, m["predicted_counterfactual"][i], f"counterfactual: {f['predicted']}"),
                (x, m["true_counterfactual"][i], f"counterfactual: {f['true']}"),
            ]
        )
    return grid(rows, path, "Mistakes of EfficientNet-Lite0 on foolbox's 20 photos")


PALETTE = torch.tensor(
    [
        [0.15, 0.15, 0.15],
        [0.9, 0.2, 0.2],
        [0.2, 0.8, 0.2],
        [0.2, 0.4, 0.95],
        [0.95, 0.85, 0.2],
        [0.85, 0.3, 0.85],
    ]
)


def label_image(labels: torch.Tensor) -> torch.Tensor:
    """A label map (H, W) (0 background, 1-5 the shapes) as a colour image (3, H, W)."""
    return PALETTE[labels.clamp(0, len(PALETTE) - 1)].permute(2, 0, 1)


def segmentation_figure(result, path: str) -> str:
    """Per test scene: the image, the true labels, and the labels of each trained network."""
    names = {
        "truth": "true mask",
        "gradcam": "Grad-CAM seeds",
        "cam": "CAM seeds",
        "random": "random seeds",
        "full": "full supervision",
    }
    rows = []
    for i, img in enumerate(result.figure_images):
        rows.append(
            [(img, None, "scene")]
            + [
                (label_image(result.figure_labels[k][i]), None, names[k])
                for k in names
                if k in result.figure_labels
            ]
        )
    return grid(rows, path, "Segmentation networks trained from seeds (SEC losses) vs the true masks")


def trust_figure(result, path: str) -> str:
    """Grad-CAM of the true class for the stronger (top) and the weaker model (bottom), same images."""
    f = result["figure"]
    rows = [
        [(img, f[k][i], f"{k} model") for i, img in enumerate(f["images"])] for k in ("stronger", "weaker")
    ]
    acc = result["accuracy"]
    return grid(
        rows,
        path,
        f"Grad-CAM on images both models classify right (accuracy {acc['stronger']:.2f} vs "
        f"{acc['weaker']:.2f})",
    )


def agent_figure(result, path: str, columns: int = 8) -> str:
    """A frame strip of one rollout: each step's frame with the Grad-CAM map of the chosen action."""
    from .agent import ACTIONS

    n = len(result.figure_frames)
    cells = [
        (result.figure_frames[i], result.figure_maps[i], f"step {i}: {ACTIONS[result.figure_actions[i]]}")
        for i in range(n)
    ]
    rows = [cells[i : i + columns] for i in range(0, n, columns)]
    return grid(
        rows, path, "MiniGrid policy: Grad-CAM of the chosen action (goal: green tile; agent: red arrow)"
    )
