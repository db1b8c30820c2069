"""Textual explanations: the channels (neurons) behind a decision, named by concepts.

Grad-CAM's channel weights alpha_k^c = (1/Z) sum_ij dy^c/dA^k_ij say how much channel k of the
explained layer pushes the score y^c up (alpha > 0) or down (alpha < 0). The top-k and bottom-k
channels, named by a mapping channel -> concept, are a textual explanation of the decision
(Selvaraju et al., Sec. 7).

Names come from the user (a dict, a list, or a JSON / text file), or from :func:`dissect`: a small
Network Dissection (Bau et al., 2017) that names each channel after the concept whose masks its
thresholded activation overlaps best:

    T_k : P(a_k > T_k) = ``top`` over all images and positions (a_k upsampled to the masks' size),
    IoU_{k,c} = sum_x |{a_k(x) > T_k} & L_c(x)| / sum_x |{a_k(x) > T_k} | L_c(x)|,
    name_k = argmax_c IoU_{k,c}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import engine
from .datasets.scenes import Scene
from .explanation import Explanation
from .layers import LayerSpec, resolve_layers

Names = Union[Mapping[int, str], Sequence[str]]


def top_channels(
    weights: torch.Tensor, k: int = 5
) -> Tuple[List[Tuple[int, float]], List[Tuple[int, float]]]:
    """The ``k`` channels with the largest and the ``k`` with the smallest weight alpha (C,).

    Returns two lists of (channel, alpha): the top ones in decreasing order, the bottom ones in
    increasing order (most negative first). Ties are broken by the lower channel index.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise ValueError(f"top_channels takes one weight vector alpha of shape (C,); got {shape}.")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}.")
    k = min(k, weights.numel())
    w = weights.detach().double().cpu()
    down = torch.sort(-w, stable=True).indices[:k]
    up = torch.sort(w, stable=True).indices[:k]
    top = [(int(c), float(w[c])) for c in down]
    low = [(int(c), float(w[c])) for c in up]
    return top, low


def _name(names: Optional[Names], c: int) -> str:
    if names is None:
        return "(unnamed)"
    if isinstance(names, Mapping):
        return str(names.get(c, names.get(str(c), "(unnamed)")))  # type: ignore[call-overload]
    return str(names[c]) if 0 <= c < len(names) else "(unnamed)"


def channel_weights(res: Explanation, image: int = 0, target: int = 0) -> torch.Tensor:
    """alpha (C,) of one image and one of its targets from an explanation's ``weights`` (N, K, C)."""
    if res.weights is None:
        raise ValueError(
            f"The {res.method} explanation has no channel weights; use Grad-CAM or CAM for neurons."
        )
    n, kk, _ = res.weights.shape
    if not 0 <= image < n:
        raise ValueError(f"image={image} is out of range for a batch of {n} (0..{n - 1}).")
    if not 0 <= target < kk:
        raise ValueError(f"target={target} is out of range: the explanation has {kk} target(s) per image.")
    return res.weights[image, target]


def describe(
    res: Union[Explanation, torch.Tensor],
    names: Optional[Names] = None,
    k: int = 5,
    image: int = 0,
    target: int = 0,
) -> str:
    """Text listing the top-``k`` and bottom-``k`` channels of a decision, with alpha and their names.

    ``res`` is an :class:`~gradcam.explanation.Explanation` (its ``weights[image, target]`` are used)
    or one weight vector alpha (C,). ``names`` maps a channel index to a concept (a dict, or a list
    indexed by channel); channels without a name show ``(unnamed)``.
    """
    if isinstance(res, Explanation):
        w = channel_weights(res, image, target)
        layer, t = res.layer, int(res.targets[image, target])
        what = f"class {t}" if t >= 0 else "the target"
    else:
        w, layer, what = res, "", "the target"
    if names is not None and not isinstance(names, Mapping) and len(names) != w.numel():
        raise ValueError(
            f"{len(names)} channel names were given but the layer has {w.numel()} channels; give one "
            "name per channel, or a dict {channel: name}."
        )
    top, low = top_channels(w, k)
    where = f" of layer '{layer}'" if layer else ""
    lines = [f"Channels{where} that raise {what} most (alpha > 0 helps):"]
    lines += [f"  {a:+.4g}  channel {c:>4}  {_name(names, c)}" for c, a in top]
    lines.append(f"Channels that lower {what} most:")
    lines += [f"  {a:+.4g}  channel {c:>4}  {_name(names, c)}" for c, a in low]
    return "\n".join(lines)


def load_names(path: Union[str, Path]) -> Dict[int, str]:
    """Channel names from a file: JSON (``{"12": "red", ...}`` or a list), or text lines ``"12 red"``.

    A text file whose lines do not start with a channel number is read as one name per line.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Channel-name file {str(p)!r} does not exist.")
    text = p.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        try:
            return {int(c): str(n) for c, n in data.items()}
        except ValueError as e:
            raise ValueError(f'{p}: JSON keys must be channel numbers such as "12"; {e}.') from e
    if isinstance(data, list):
        return {i: str(n) for i, n in enumerate(data)}
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    parts = [ln.split(None, 1) for ln in lines]
    if parts and all(len(q) == 2 and q[0].isdigit() for q in parts):
        return {int(q[0]): q[1] for q in parts}
    return dict(enumerate(lines))


# -- dissection ------------------------------------------------------------------------------------


@dataclass
class Dissection:
    """Names of a layer's channels: ``names[k]`` is the best concept of channel k, with ``iou`` (C, concepts)."""

    concepts: List[str]
    iou: torch.Tensor
    thresholds: torch.Tensor

    @property
    def names(self) -> List[str]:
        """The best-matching concept of every channel."""
        return [self.concepts[i] for i in self.iou.argmax(1).tolist()]

    def labels(self) -> List[str]:
        """``"red (IoU 0.31)"`` for every channel."""
        best = self.iou.max(1)
        return [
            f"{self.concepts[i]} (IoU {v:.2f})" for v, i in zip(best.values.tolist(), best.indices.tolist())
        ]


def scene_concepts(scenes: Sequence[Scene]) -> Dict[str, torch.Tensor]:
    """Concept masks (N, H, W) of scenes: one per shape and per colour present (union of its objects)."""
    size = scenes[0].image.shape[-2:]
    out: Dict[str, torch.Tensor] = {}
    for i, s in enumerate(scenes):
        for o in s.objects:
            for c in (o.colour, o.shape):
                if c not in out:
                    out[c] = torch.zeros(len(scenes), *size, dtype=torch.bool)
                out[c][i] |= o.mask
    return out


def _first_score(output: Any) -> torch.Tensor:
    t = output
    while not isinstance(t, torch.Tensor):
        if isinstance(t, dict) and t:
            t = next(iter(t.values()))
        elif isinstance(t, (list, tuple)) and t:
            t = t[0]
        else:
            raise TypeError(f"Cannot find a tensor in the model output ({type(output).__name__}).")
    return t.reshape(t.shape[0], -1)[:, 0]


def layer_activations(
    model: nn.Module, layer: LayerSpec, images: torch.Tensor, batch: int = 64
) -> torch.Tensor:
    """Activations A (N, C, h, w) of ``layer`` for ``images`` (the engine's forward pass, no backward)."""
    refs = resolve_layers(model, layer)
    if len(refs) != 1:
        raise ValueError("Dissection names the channels of one layer; pass a single layer.")
    parts = [
        engine.capture(model, images[b : b + batch], refs, target=_first_score, gradients=False).activations[
            0
        ]
        for b in range(0, images.shape[0], batch)
    ]
    return torch.cat(parts)


def dissect(
    model: nn.Module,
    layer: LayerSpec,
    images: torch.Tensor,
    concepts: Mapping[str, torch.Tensor],
    top: float = 0.01,
    chunk: int = 8,
) -> Dissection:
    """Name every channel of ``layer`` by the concept its thresholded activation overlaps best (IoU).

    ``concepts`` maps a name to bool masks (N, H, W) aligned with ``images`` (N, 3, H, W). ``top`` is
    the fraction of (image, pixel) positions above each channel's threshold (Network Dissection uses
    0.005; the default 0.01 suits small objects that cover ~1% of a scene per concept).
    """
    if not concepts:
        raise ValueError("dissect needs at least one concept mask.")
    if not 0 < top < 1:
        raise ValueError(f"top must be a fraction in (0, 1); got {top!r}.")
    names = list(concepts)
    masks = torch.stack([concepts[c] for c in names], 1)  # (N, M, H, W)
    if masks.shape[0] != images.shape[0] or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"Concept masks of shape {tuple(masks.shape[-3:])} do not match the images {tuple(images.shape)}; "
            "give one (N, H, W) mask per concept for the same N images."
        )
    acts = layer_activations(model, layer, images)
    n, c = acts.shape[:2]
    size = masks.shape[-2:]
    m = masks.float().flatten(2)  # (N, M, P)
    area = m.sum((0, 2))  # (M,)
    ious, thresholds = [], []
    for b in range(0, c, chunk):
        a = F.interpolate(acts[:, b : b + chunk], size=size, mode="bilinear", align_corners=False).flatten(2)
        flat = a.transpose(0, 1).reshape(a.shape[1], -1)  # (c', N*P)
        kth = max(1, int(round(flat.shape[1] * (1 - top))))
        t = flat.kthvalue(kth, dim=1).values  # (c',)
        on = (a > t.view(1, -1, 1)).float()  # (N, c', P)
        inter = torch.einsum("ncp,nmp->cm", on, m)
        union = on.sum((0, 2)).unsqueeze(1) + area.unsqueeze(0) - inter
        ious.append(inter / union.clamp_min(1))
        thresholds.append(t)
    return Dissection(concepts=names, iou=torch.cat(ious), thresholds=torch.cat(thresholds))


def dissect_scenes(
    model: nn.Module, layer: LayerSpec, scenes: Sequence[Scene], top: float = 0.01
) -> Dissection:
    """:func:`dissect` on synthetic scenes, with their shapes and colours as the concepts."""
    if not scenes:
        raise ValueError("dissect_scenes needs at least one scene.")
    images = torch.stack([s.image for s in scenes])
    return dissect(model, layer, images, scene_concepts(scenes), top=top)
