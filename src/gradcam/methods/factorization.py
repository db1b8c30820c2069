"""Deep Feature Factorization (Collins, Achanta & Suesstrunk, ECCV 2018): concepts by NMF of the activations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize, upsample
from ..layers import LayerSpec
from ..targets import Target
from .base import LayerMethod
from .contract import CallOptions


def nmf(
    v: torch.Tensor, k: int, iterations: int = 200, seed: int = 0, eps: float = 1e-10, tol: float = 1e-4
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Non-negative factorisation V ~ W H of V (C, P) >= 0 into W (C, k) >= 0 and H (k, P) >= 0.

    Lee & Seung's multiplicative updates for the Frobenius loss |V - WH|^2, ``iterations`` rounds of
    H <- H * (W^T V) / (W^T W H),  W <- W * (V H^T) / (W H H^T), from a seeded uniform start scaled to
    V's mean (deterministic for a given seed), stopping early once the relative error |V - WH| / |V|,
    checked every 10 rounds, improves by less than ``tol`` (0: run every round). Runs in V's dtype on V's device.
    """
    gen = torch.Generator(device=v.device).manual_seed(seed)
    scale = (v.mean() / k).clamp_min(eps).sqrt()
    w = torch.rand((v.shape[0], k), generator=gen, dtype=v.dtype, device=v.device) * scale
    h = torch.rand((k, v.shape[1]), generator=gen, dtype=v.dtype, device=v.device) * scale
    norm = v.norm().clamp_min(eps)
    last = float("inf")
    for i in range(iterations):
        h = h * (w.T @ v) / ((w.T @ w) @ h + eps)
        w = w * (v @ h.T) / (w @ (h @ h.T) + eps)
        if tol > 0 and i % 10 == 9:
            err = float((v - w @ h).norm() / norm)
            if last - err < tol:
                break
            last = err
    return w, h


@dataclass(repr=False)
class ConceptExplanation(Explanation):
    """An :class:`Explanation` whose K maps are concepts shared by the batch, not classes.

    - ``maps`` (N, K, H, W): where each concept is present in each image (normalised per map);
    - ``concepts`` (K, C): each concept's channel vector (a column of W);
    - ``concept_scores`` (K, num_classes) or ``None``: the head's softmax for each concept vector;
    - ``targets`` (N, K): each concept's top class (the same for every image; -1 without a head).
    """

    concepts: Optional[torch.Tensor] = None
    concept_scores: Optional[torch.Tensor] = None

    def top_classes(self, k: int = 3) -> torch.Tensor:
        """The ``k`` classes each concept scores highest, (K, k) (needs a head)."""
        if self.concept_scores is None:
            raise ValueError(
                "No head was found or given, so concepts have no classes; pass head=model.fc (a "
                "module mapping a channel vector to class scores)."
            )
        return self.concept_scores.topk(k, dim=1).indices

    def figure(
        self,
        images: Union[torch.Tensor, Sequence[Any]],
        labels: Optional[Sequence[str]] = None,
        top: int = 3,
        alpha: float = 0.6,
        height: int = 224,
    ) -> Image.Image:
        """One picture of the concepts with a legend (PIL RGB image).

        ``images``: the batch's photos in order (paths, PIL images, arrays, or a tensor (N, 3, H, W) in [0, 1]).
        Each is shown ``height`` pixels tall with every pixel coloured by its strongest concept, blended with
        opacity ``alpha`` x that concept's map value; the legend gives each concept's colour and its ``top``
        classes with the head's probability (``labels``: class names, e.g. ``load_model(...).labels``; else ids).
        """
        photos = _photos(images)
        if len(photos) != self.maps.shape[0]:
            raise ValueError(
                f"figure() needs one image per explained image: got {len(photos)} for {self.maps.shape[0]} maps."
            )
        return concept_figure(photos, self.maps, self.concept_scores, labels, top, alpha, height)


def concept_figure(
    photos: Sequence[Image.Image],
    maps: torch.Tensor,
    concept_scores: Optional[torch.Tensor],
    labels: Optional[Sequence[str]] = None,
    top: int = 3,
    alpha: float = 0.6,
    height: int = 224,
) -> Image.Image:
    """The photos (PIL RGB), each ``height`` pixels tall and coloured by its strongest concept of ``maps``
    (N, K, H, W), side by side, and a legend of each concept's colour and its ``top`` classes by
    ``concept_scores`` (K, classes) (see :meth:`ConceptExplanation.figure`)."""
    k = maps.shape[1]
    colours = concept_colours(k)
    tiles = [_concept_tile(p, maps[n], colours, alpha, height) for n, p in enumerate(photos)]
    lines = []
    for c in range(k):
        if concept_scores is None:
            lines.append(f"concept {c + 1}")
            continue
        p, ids = concept_scores[c].topk(min(top, concept_scores.shape[1]))
        names = [(labels[i] if labels is not None else str(i)).split(",")[0] for i in ids.tolist()]
        lines.append(", ".join(f"{nm} {v:.2f}" for nm, v in zip(names, p.tolist())))
    legend = _legend(lines, colours, height)
    width = sum(t.size[0] for t in tiles) + 4 * len(tiles) + legend.size[0]
    out = Image.new("RGB", (width, max(height, legend.size[1])), (255, 255, 255))
    x0 = 0
    for t in tiles:
        out.paste(t, (x0, 0))
        x0 += t.size[0] + 4
    out.paste(legend, (x0, 0))
    return out


#: Distinct concept colours (RGB): the first ten of matplotlib's "tab10"; more concepts cycle through hues.
_TAB10 = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def concept_colours(k: int) -> List[Tuple[int, int, int]]:
    """``k`` distinct RGB colours for concept maps (tab10, then evenly spaced hues)."""
    if k <= len(_TAB10):
        return _TAB10[:k]
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb(i / k, 0.75, 0.9)) for i in range(k)]  # type: ignore[misc]


def _photos(images: Union[torch.Tensor, Sequence[Any]]) -> List[Image.Image]:
    from ..image import load_image

    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images as a tensor must be (N, 3, H, W) in [0, 1]; got {tuple(images.shape)}.")
        arr = images.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
        return [Image.fromarray(a.contiguous().numpy(), "RGB") for a in arr]
    return [load_image(im) for im in images]


def _concept_tile(photo: Image.Image, maps: torch.Tensor, colours, alpha: float, height: int) -> Image.Image:
    """The photo (``height`` px tall) with each pixel blended towards its strongest concept's colour."""
    w = max(1, round(photo.size[0] * height / photo.size[1]))
    base = torch.from_numpy(np.asarray(photo.resize((w, height), Image.Resampling.BILINEAR)).copy())
    m = F.interpolate(maps[None].float().cpu(), size=(height, w), mode="bilinear", align_corners=False)[0]
    strength, which = m.clamp(0, 1).max(0)
    colour = torch.tensor(colours, dtype=torch.float32)[which]  # (h, w, 3)
    a = (alpha * strength).unsqueeze(-1)
    out = base.float() * (1 - a) + colour * a
    return Image.fromarray(out.round().clamp(0, 255).to(torch.uint8).numpy(), "RGB")


def _legend(lines: List[str], colours, height: int) -> Image.Image:
    """A white panel: per concept a colour swatch, its number and ``lines[c]``."""
    font = ImageFont.load_default()
    row = 16
    width = 24 + max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(f"{i + 1}. {t}", font=font))
                     for i, t in enumerate(lines)) + 8  # fmt: skip
    img = Image.new("RGB", (width, max(height, row * len(lines) + 8)), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for i, (text, c) in enumerate(zip(lines, colours)):
        y = 4 + i * row
        draw.rectangle((4, y + 2, 16, y + 12), fill=tuple(c))
        draw.text((22, y), f"{i + 1}. {text}", fill=(0, 0, 0), font=font)
    return img


def _last_linear(model: nn.Module, channels: int) -> Optional[nn.Module]:
    found = None
    for m in model.modules():
        if isinstance(m, nn.Linear) and m.in_features == channels:
            found = m
    return found


class DeepFeatureFactorization(LayerMethod):
    """Deep Feature Factorization: V = ReLU(A) arranged as (C, N * positions) ~ W H by NMF with K concepts;
    concept k's map in image n is H[k, positions of n] (upsampled, normalised), its vector W[:, k].

    The concepts are factorised over the whole batch (shared by its images, as in the paper). ``head``: a
    module mapping a C-vector to class scores (default: the model's last ``nn.Linear`` taking C inputs),
    which names each concept's classes: softmax(head(W^T)). No backward pass; ``target``/``top_k`` do not
    apply (the maps are concepts, not classes).
    """

    name = "dff"
    needs_gradients = False
    supports_differentiable = False
    supports = frozenset({"forward_kwargs"})
    refusals = {
        "counterfactual": "it uses no gradients and its maps are concepts, not a class's evidence",
        "aug_smooth": "its concepts are factorised over the batch it is given. Leave aug_smooth unset",
        "eigen_smooth": "its maps are already factorised concepts. Leave eigen_smooth unset",
    }

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        concepts: int = 8,
        iterations: int = 200,
        seed: int = 0,
        head: Optional[nn.Module] = None,
        **kw: Any,
    ):
        if isinstance(concepts, bool) or not isinstance(concepts, int) or concepts < 1:
            raise ValueError(f"concepts must be a positive int (the number K of concepts); got {concepts!r}.")
        super().__init__(model, layer, **kw)
        self.concepts = concepts
        self.iterations = iterations
        self.seed = seed
        self.head = head

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> ConceptExplanation:
        """Factorise the activations of ``x`` (N, C, H, W) into ``concepts`` maps per image."""
        if target is not None or top_k is not None:
            raise ValueError(
                "dff explains concepts, not classes: leave target and top_k unset (choose the number "
                "of concepts with concepts=K)."
            )
        cap = self._capture(x, None, None, False, forward_kwargs=opts.forward_kwargs or None)
        return self._factorise(cap, tuple(x.shape[2:]))

    def _factorise(self, cap: engine.Capture, size: Tuple[int, ...]) -> ConceptExplanation:
        a = cap.activations[0]
        n, c = a.shape[:2]
        spatial = a.shape[2:]
        v = torch.relu(a).float().reshape(n, c, -1).permute(1, 0, 2).reshape(c, -1)
        w, h = nmf(v, self.concepts, self.iterations, self.seed)
        raw = h.reshape(self.concepts, n, *spatial).transpose(0, 1).to(a.dtype).contiguous()
        head = self.head if self.head is not None else _last_linear(self.model, c)
        scores, ids = None, torch.full((n, self.concepts), -1, dtype=torch.long)
        if head is not None:
            with torch.no_grad():
                p = next(iter(head.parameters()), None)
                vec = w.T.to(p.dtype if p is not None else a.dtype)
                scores = torch.softmax(head(vec), dim=1)
            ids = scores.argmax(1).unsqueeze(0).expand(n, -1).contiguous()
        top = (
            scores.amax(1).unsqueeze(0).expand(n, -1) if scores is not None else torch.zeros(n, self.concepts)
        )
        return ConceptExplanation(
            maps=normalize(upsample(raw, size, self.interpolation), dims=len(size)),
            raw=raw,
            weights=None,
            targets=ids,
            scores=top.to(a.dtype),
            layer=cap.layers[0].spec,
            method=self.name,
            interpolation=self.interpolation,
            output=cap.output,
            concepts=w.T.to(a.dtype),
            concept_scores=scores,
        )
