"""Targets: what scalar y an explanation explains, for every image of a batch.

A target is one of
- ``None``: each image's top-1 class (or its ``top_k`` best classes);
- an ``int``: that class for every image;
- a sequence / 1-D tensor of N ints: one class per image; a (N, K) nested sequence or tensor: K per image;
- a callable ``f(output) -> Tensor`` of shape (N,) or (N, K): any differentiable scalar(s) per image
  (a caption word's log-probability, a VQA answer, a segmentation region, a box score).

Class scores are taken *before* softmax: y^c is the logit of class c.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, Union, cast

import torch
import torch.nn.functional as F

Target = Union[None, int, Sequence[int], Sequence[Sequence[int]], torch.Tensor, Callable[[Any], torch.Tensor]]


def _find_logits(output: Any) -> Optional[torch.Tensor]:
    """The scores tensor of a model output: the output itself, ``output["logits"]``, ``output.logits``, or the
    first element of a tuple/list when it is (N, classes)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if (
        isinstance(output, (tuple, list))
        and output
        and isinstance(output[0], torch.Tensor)
        and output[0].dim() == 2
    ):
        return output[0]  # (logits, extras...): MONAI's ViT (logits, hidden states), return_dict=False models
    return None


def logits_of(output: Any) -> torch.Tensor:
    """The (N, num_classes) class scores inside a model's output.

    Accepts a tensor, a dict with a ``"logits"`` entry, or an object with a ``.logits`` tensor
    (Hugging Face style). Anything else needs a callable target.
    """
    t = _find_logits(output)
    if t is None:
        raise TypeError(
            f"The model returns {type(output).__name__}, not a tensor of class scores, so a class id cannot be "
            "looked up in it. Pass a callable target that picks the score, e.g. "
            "target=lambda out: out[0][:, 281], or gradcam.targets.output_scalar(key, index)."
        )
    if t.dim() != 2:
        raise ValueError(
            f"Class targets need model output of shape (N, num_classes); got {tuple(t.shape)}. Pass a callable "
            "target that reduces the output to one score per image (e.g. a segmentation region's summed logit)."
        )
    return t


def _as_long_tensor(target: Any) -> torch.Tensor:
    if isinstance(target, torch.Tensor):
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(f"Class targets must be integers; got a tensor of {target.dtype}.")
        return target.detach().to("cpu", torch.long)
    try:
        t = torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(
            f"Cannot read target {target!r} as class ids: use an int, a list of N ints, a (N, K) list, or a callable."
        ) from e
    if t.dtype.is_floating_point or t.dtype == torch.bool:
        raise TypeError(f"Class targets must be integers; got {target!r}.")
    return t.to(torch.long)


def resolve_targets(
    output: Any, target: Target, top_k: Optional[int], n: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scores y (N, K) still attached to the autograd graph, and their class ids (N, K; -1 for callables).

    A list of K callables (e.g. K :func:`segmentation` targets) gives K maps, column k from callable k.
    Raises ``ValueError``/``TypeError`` naming the problem and the fix for every malformed target.
    """
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int; got {top_k!r}.")
        if target is not None:
            raise ValueError("Pass either target=... or top_k=..., not both: top_k picks the classes itself.")

    if isinstance(target, (list, tuple)) and target and any(callable(t) for t in target):
        if not all(callable(t) for t in target):
            raise TypeError(
                "A target list mixes callables and class ids; pass a list of callables (one map each, "
                "e.g. [segmentation(1), segmentation(2)]) or a list of class ids, not both."
            )
        cols = [_callable_scores(t, output, n) for t in target]
        if any(c.shape[1] != 1 for c in cols):
            raise ValueError(
                "Each callable in a target list must return one score per image, shape (N,); got "
                f"shapes {[tuple(c.shape) for c in cols]}."
            )
        scores = torch.cat(cols, dim=1)
        return scores, torch.full(scores.shape, -1, dtype=torch.long, device=scores.device)
    if callable(target) and not isinstance(target, torch.Tensor):
        scores = _callable_scores(target, output, n)
        ids = torch.full(scores.shape, -1, dtype=torch.long, device=scores.device)
        return scores, ids
    return _class_scores(output, target, top_k, n)


def resolve(output: Any, target: Target, top_k: Optional[int], n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Deprecated alias of :func:`resolve_targets` (two functions were named ``resolve``)."""
    warnings.warn(
        "gradcam.targets.resolve is renamed resolve_targets; the old name will be removed.",
        DeprecationWarning,
        stacklevel=2,
    )
    return resolve_targets(output, target, top_k, n)


def _callable_scores(target: Callable[[Any], torch.Tensor], output: Any, n: int) -> torch.Tensor:
    """(N, K) scores of a target callable, checked."""
    scores = target(output)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(
            f"The target callable must return a tensor of shape (N,) or (N, K); it returned {type(scores).__name__}."
        )
    if scores.dim() == 0 and n == 1:
        scores = scores.reshape(1, 1)
    elif scores.dim() == 1 and scores.shape[0] == n:
        scores = scores.unsqueeze(1)
    if scores.dim() != 2 or scores.shape[0] != n:
        raise ValueError(
            f"The target callable must return one score per image, shape ({n},) or ({n}, K); got "
            f"{tuple(scores.shape)}. Do not sum over the batch: each image is explained by its own score."
        )
    return scores


def _class_scores(
    output: Any, target: Target, top_k: Optional[int], n: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, K) and ids (N, K) of class targets (None, an int, N ints or (N, K) ints)."""
    if isinstance(target, str):
        raise TypeError(
            f"Target {target!r} is a class name; the engine takes class ids. Look the id up with "
            "gradcam.load_model(...).class_id(name), or use the CLI's --target NAME."
        )
    if isinstance(target, bool):
        raise TypeError("A bool is not a class id; pass an int class id.")

    logits = logits_of(output)
    num_classes = logits.shape[1]
    if target is None:
        k = top_k or 1
        if k > num_classes:
            raise ValueError(
                f"top_k={k} is larger than the number of classes ({num_classes}); use top_k <= {num_classes}."
            )
        ids = logits.detach().topk(k, dim=1).indices
    else:
        t = _as_long_tensor(target)
        if t.dim() == 0:
            ids = t.reshape(1, 1).expand(n, 1)
        elif t.dim() == 1:
            if t.shape[0] != n:
                raise ValueError(
                    f"The target list has {t.shape[0]} class ids but the batch has {n} images; give one id per "
                    "image, or a single int for all of them."
                )
            ids = t.unsqueeze(1)
        elif t.dim() == 2:
            if t.shape[0] != n:
                raise ValueError(f"A (N, K) target needs N = {n} rows (one per image); got {t.shape[0]}.")
            ids = t
        else:
            raise ValueError(f"Targets have at most 2 dimensions (N, K); got shape {tuple(t.shape)}.")
        bad = (ids < 0) | (ids >= num_classes)
        if bool(bad.any()):
            first = int(ids[bad][0])
            raise ValueError(
                f"Target class {first} is out of range for a model with {num_classes} outputs "
                f"(valid ids: 0..{num_classes - 1})."
            )
        ids = ids.to(logits.device)
    scores = logits.gather(1, ids)
    return scores, ids


# -- Target helpers for outputs that are not one row of class scores -----------------------------------


def _sequence_logits(output: Any) -> torch.Tensor:
    t = _find_logits(output)
    if t is None:
        raise TypeError(
            "caption_word needs word scores (N, T, vocab) as the model output (a tensor, a dict with "
            "'logits', "
            f"or an object with .logits); the model returned {type(output).__name__}."
        )
    if t.dim() != 3:
        raise ValueError(
            "caption_word needs word scores of shape (N, T, vocab); the model output has shape "
            f"{tuple(t.shape)}."
        )
    return t


def caption_word(
    caption_ids: Union[torch.Tensor, Sequence[int], Sequence[Sequence[int]]],
    t: Union[int, Sequence[int]],
    pad_id: Optional[int] = None,
) -> Callable[[Any], torch.Tensor]:
    """Target: the log-probability of word ``t`` of a given (teacher-forced) caption.

    y = log softmax(s_t)[w_t], where s_t (vocab,) are the model's word scores at step t (output
    ``[:, t]`` of a (N, T, vocab) output) and w_t = ``caption_ids[:, t]`` is the caption's word t.
    ``caption_ids`` is (T,) for every image or (N, T); ``t`` an int, or a list of K positions
    (giving K maps per image). A position past the caption's end (or on padding, when ``pad_id`` is
    given) raises ``ValueError``.
    """
    ids = torch.as_tensor(caption_ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise ValueError(
            f"caption_ids must be a non-empty (T,) or (N, T) list of word ids; got shape {tuple(ids.shape)}."
        )
    single = isinstance(t, int) and not isinstance(t, bool)
    pos = torch.as_tensor([t] if single else list(cast(Sequence[int], t)), dtype=torch.long)
    if pos.dim() != 1 or pos.numel() == 0:
        raise ValueError(f"t must be a word position or a list of them; got {t!r}.")
    length = ids.shape[1]
    bad = (pos < 0) | (pos >= length)
    if bool(bad.any()):
        raise ValueError(
            f"Word index {int(pos[bad][0])} is past the end of the caption: it has {length} words "
            f"(valid positions 0..{length - 1})."
        )
    if pad_id is not None:
        padded = ids[:, pos] == pad_id
        if bool(padded.any()):
            row, col = padded.nonzero()[0].tolist()
            raise ValueError(
                f"Word index {int(pos[col])} is past the end of caption {row}: that position is padding "
                f"(id {pad_id}); pick a position inside the caption."
            )

    def target(output: Any) -> torch.Tensor:
        logits = _sequence_logits(output)
        n = logits.shape[0]
        if logits.shape[1] <= int(pos.max()):
            raise ValueError(
                f"The model scored {logits.shape[1]} words but word {int(pos.max())} was asked for; bind "
                "the same "
                "caption to the model as to the target."
            )
        words = ids.to(logits.device)
        if words.shape[0] == 1:
            words = words.expand(n, -1)
        elif words.shape[0] != n:
            raise ValueError(
                f"caption_ids has {words.shape[0]} rows but the batch has {n} images; give one per image."
            )
        p = pos.to(logits.device)
        logp = torch.log_softmax(logits[:, p], dim=-1)  # (N, K, vocab)
        y = logp.gather(2, words[:, p].unsqueeze(2)).squeeze(2)  # (N, K)
        return y[:, 0] if single else y

    return target


def answer(
    index: Union[int, str, Sequence[Union[int, str]]], vocab: Optional[Any] = None
) -> Callable[[Any], torch.Tensor]:
    """Target: the score (logit, before softmax) of an answer: y = s_a for answer a.

    ``index`` is an answer id, an answer string looked up in ``vocab`` (a sequence of answer strings,
    or an object with ``.words``), or one of those per image. The model output is (N, num_answers)
    (a tensor, a dict with ``"logits"``, or an object with ``.logits``). An unknown answer or an id
    out of range raises ``ValueError``.
    """
    words = list(getattr(vocab, "words", vocab)) if vocab is not None else None
    single = isinstance(index, (int, str)) and not isinstance(index, bool)
    items = [index] if single else list(cast(Sequence[Union[int, str]], index))

    def to_id(a: Any) -> int:
        if isinstance(a, str):
            if words is None:
                raise TypeError(
                    f"Answer {a!r} is a string; pass vocab=<the model's answer list> to look it up."
                )
            if a not in words:
                raise ValueError(
                    f"Unknown answer {a!r}; the model's answers are: {', '.join(map(str, words))}."
                )
            return words.index(a)
        if isinstance(a, bool) or not isinstance(a, int):
            raise TypeError(f"An answer is an int id or a string; got {a!r}.")
        return a

    ids = torch.tensor([to_id(a) for a in items], dtype=torch.long)

    def target(output: Any) -> torch.Tensor:
        logits = logits_of(output)
        n, num = logits.shape
        bad = (ids < 0) | (ids >= num)
        if bool(bad.any()):
            raise ValueError(
                f"Answer id {int(ids[bad][0])} is out of range for a model with {num} answers (0..{num - 1})."
            )
        if single:
            return logits[:, int(ids[0])]
        if ids.shape[0] != n:
            raise ValueError(
                f"{ids.shape[0]} answers were given for a batch of {n} images; give one per image or one int."
            )
        return logits.gather(1, ids.to(logits.device).unsqueeze(1)).squeeze(1)

    return target


def output_scalar(
    key: Union[None, str, int] = None, index: Union[None, int, Sequence[int]] = None
) -> Callable[[Any], torch.Tensor]:
    """Target: one scalar per image from a structured output: ``y = output[key][:, *index]``.

    ``key`` picks an entry of a dict output (a str) or a tuple/list output (an int); ``None`` uses the
    output itself. ``index`` indexes the dimensions after the batch (an int, or a tuple such as
    ``(t, v)``); after it, one value per image must remain. A missing key raises ``ValueError``.
    """
    idx: Tuple[int, ...] = () if index is None else ((index,) if isinstance(index, int) else tuple(index))

    def target(output: Any) -> torch.Tensor:
        value = output
        if key is not None:
            if isinstance(output, dict):
                if key not in output:
                    raise ValueError(
                        f"The model output has no key {key!r}; its keys are: {', '.join(map(repr, output))}."
                    )
                value = output[key]
            elif isinstance(output, (tuple, list)):
                if not isinstance(key, int) or not -len(output) <= key < len(output):
                    raise ValueError(
                        f"The model output is a {type(output).__name__} of {len(output)} items; key {key!r} "
                        "is not a position in it."
                    )
                value = output[key]
            else:
                raise TypeError(
                    f"key={key!r} needs a dict, tuple or list output; the model returned "
                    f"{type(output).__name__}."
                )
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"output[{key!r}] is a {type(value).__name__}, not a tensor; pick an entry holding scores."
            )
        if len(idx) > value.dim() - 1:
            raise ValueError(
                f"index {idx} has {len(idx)} positions but output[{key!r}] of shape {tuple(value.shape)} "
                f"has only {value.dim() - 1} after the batch."
            )
        for d, i in enumerate(idx):
            size = value.shape[d + 1]
            if not -size <= i < size:
                raise ValueError(
                    f"index {i} is out of range for dimension {d + 1} of size {size} of output[{key!r}] "
                    f"(shape {tuple(value.shape)})."
                )
        where: Tuple[Union[slice, int], ...] = (slice(None), *idx)
        y = value[where]
        if y.dim() != 1:
            raise ValueError(
                f"output[{key!r}] indexed by {idx} has shape {tuple(y.shape)}, not one value per image; "
                "give an index for every dimension after the batch."
            )
        return y

    return target


# -- Dense and non-class targets: segmenters, detectors, embedding models ---------------------


def _dense_logits(output: Any) -> torch.Tensor:
    """(N, classes, h, w) scores of a segmenter: a tensor, torchvision's ``{"out": ...}``, or ``.logits``."""
    t = output
    if isinstance(output, dict):
        t = output.get("out", output.get("logits"))
    elif not isinstance(output, torch.Tensor):
        t = getattr(output, "logits", None)
    if not isinstance(t, torch.Tensor):
        raise TypeError(
            f"segmentation needs per-pixel class scores (N, classes, h, w): a tensor, a dict with 'out' or "
            f"'logits', or an object with .logits; the model returned {type(output).__name__}."
        )
    if t.dim() not in (4, 5):
        raise ValueError(
            f"segmentation needs scores of shape (N, classes, h, w) (or (N, classes, d, h, w) for "
            f"volumes); the model output has shape {tuple(t.shape)}."
        )
    return t


def segmentation(class_id: int, mask: Optional[torch.Tensor] = None) -> Callable[[Any], torch.Tensor]:
    """Target: class ``class_id``'s logits summed over a region: y = sum_ij m_ij * s_c,ij.

    Volumes: scores (N, classes, d, h, w) and a mask (D, H, W) or (N, D, H, W), the same rule in 3-D.

    ``s_c`` (h, w) is the class's score map in the model output (a tensor, ``{"out": ...}`` of
    torchvision segmenters, or Hugging Face ``.logits``, which may be at a reduced resolution such as
    Segformer's 1/4). ``mask`` (H, W) or (N, H, W), bool or float weights, at any resolution: it is
    area-averaged to (h, w) (``adaptive_avg_pool2d``), so a mask at the input's size weighs each score
    cell by the fraction of it that the mask covers. ``mask=None``: the cells where ``class_id`` is the
    predicted class (argmax over classes); an image where it is predicted nowhere gets y = 0 and a flat
    map (a warning says so).
    """
    if isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0:
        raise TypeError(f"class_id must be a non-negative int; got {class_id!r}.")
    weights = None
    if mask is not None:
        weights = torch.as_tensor(mask)
        if weights.dim() not in (2, 3, 4) or 0 in weights.shape:
            raise ValueError(
                f"mask must be (H, W) or (N, H, W) (volumes: (D, H, W) or (N, D, H, W)); got shape "
                f"{tuple(weights.shape)}."
            )
        weights = weights.float()

    def target(output: Any) -> torch.Tensor:
        logits = _dense_logits(output)
        n, c = logits.shape[:2]
        if class_id >= c:
            raise ValueError(
                f"class_id {class_id} is out of range for a segmenter with {c} classes (0..{c - 1})."
            )
        if weights is None:
            m = (logits.detach().argmax(1) == class_id).to(logits.dtype)
        else:
            m = _region(weights, logits)
        return (logits[:, class_id] * m).flatten(1).sum(1)

    return target


def _region(weights: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A segmentation mask (spatial) or (N, spatial), area-averaged to the score map's grid."""
    n, spatial = logits.shape[0], logits.shape[2:]
    w = weights.unsqueeze(0) if weights.dim() == len(spatial) else weights
    if w.dim() != len(spatial) + 1 or w.numel() == 0:
        names = "(H, W) or (N, H, W)" if len(spatial) == 2 else "(D, H, W) or (N, D, H, W)"
        raise ValueError(f"mask must be {names}; got shape {tuple(weights.shape)}.")
    if w.shape[0] not in (1, n):
        raise ValueError(f"mask has {w.shape[0]} maps for a batch of {n} images; give one or N.")
    m = w.to(logits.device, logits.dtype)
    if tuple(m.shape[1:]) != tuple(spatial):
        pool = F.adaptive_avg_pool2d if len(spatial) == 2 else F.adaptive_avg_pool3d
        m = pool(m.unsqueeze(1), tuple(spatial)).squeeze(1)  # type: ignore[arg-type]
    return m


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (M, P) of boxes a (M, 4) and b (P, 4), as (x0, y0, x1, y1) with exclusive ends.

    area = (x1 - x0) * (y1 - y0); IoU = |a ∩ b| / |a ∪ b| (0 where the union is empty), as torchvision.ops.box_iou.
    """
    area_a = (a[:, 2] - a[:, 0]).clamp_min(0) * (a[:, 3] - a[:, 1]).clamp_min(0)
    area_b = (b[:, 2] - b[:, 0]).clamp_min(0) * (b[:, 3] - b[:, 1]).clamp_min(0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(inter))


def _predictions(output: Any, image_size: Optional[Tuple[int, int]]):
    """Per image: (boxes (P, 4) xyxy, scores (P,), labels (P,)), with scores attached to the graph."""
    if (
        isinstance(output, (list, tuple))
        and output
        and all(isinstance(o, dict) and "boxes" in o for o in output)
    ):
        return [(o["boxes"].detach(), o["scores"], o["labels"]) for o in output]  # torchvision, eval mode
    logits = boxes = None
    if isinstance(output, dict):
        logits, boxes = output.get("pred_logits", output.get("logits")), output.get("pred_boxes")
    elif hasattr(output, "pred_boxes"):
        logits, boxes = getattr(output, "logits", None), output.pred_boxes
    if not isinstance(logits, torch.Tensor) or not isinstance(boxes, torch.Tensor):
        raise TypeError(
            "detection needs a detector's output: torchvision's list of {'boxes', 'labels', 'scores'} dicts (eval "
            "mode), or DETR-style 'pred_logits' (N, Q, classes + 1) and 'pred_boxes' (N, Q, 4); the model "
            f"returned {type(output).__name__}."
        )
    probs = logits.softmax(-1)[..., :-1]  # the last class is "no object"
    scores, labels = probs.max(-1)
    cx, cy, bw, bh = boxes.detach().unbind(-1)
    xyxy = torch.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), -1)
    if image_size is not None:
        h, w = image_size
        xyxy = xyxy * xyxy.new_tensor([w, h, w, h])
    return [(xyxy[i], scores[i], labels[i]) for i in range(logits.shape[0])]


def _no_match(image: int, missed, best_iou: torch.Tensor, iou: float, labelled: bool) -> None:
    """Warn that a given box matched no predicted box, with the best IoU any prediction reached."""
    from .layers import note_zero_target

    for k in missed:
        note_zero_target(
            f"detection: no detection matched box {k} of image {image}; best IoU {float(best_iou[k]):.2f} "
            f"(needs IoU >= {iou:g}{' and the same label' if labelled else ''}). Its score is 0 and its map is "
            "flat; check the box's units (input pixels, or image_size=(H, W) for normalised outputs) or lower iou=."
        )


def detection(
    boxes: Any,
    labels: Optional[Sequence[int]] = None,
    iou: float = 0.5,
    image_size: Optional[Tuple[int, int]] = None,
) -> Callable[[Any], torch.Tensor]:
    """Target: for each given box, the score of the predicted box that matches it best.

    ``boxes`` (K, 4) for every image, or a list of N (K, 4): (x0, y0, x1, y1), exclusive ends, in the
    units of the predictions (input pixels for torchvision; for DETR-style outputs, normalised [0, 1]
    unless ``image_size=(H, W)`` is given). For given box b_k: y_k = s_j with j = argmax_j IoU(b_k, p_j)
    over the predictions p_j with IoU >= ``iou`` (and, when ``labels`` are given, label l_k). No match:
    y_k = 0 (a flat map, with a warning). Outputs: torchvision detectors in eval mode (list of dicts with
    ``boxes``, ``labels``, ``scores``) and DETR-style ``pred_logits`` / ``pred_boxes`` (dict or
    Hugging Face object; the score is the softmax probability of the predicted class, no-object excluded).
    """
    if not 0.0 <= float(iou) <= 1.0:
        raise ValueError(f"iou must be in [0, 1]; got {iou!r}.")
    per_image = (
        isinstance(boxes, (list, tuple))
        and boxes
        and isinstance(boxes[0], torch.Tensor)
        and boxes[0].dim() == 2
    )
    given = (
        [torch.as_tensor(b, dtype=torch.float32) for b in boxes]
        if per_image
        else [torch.as_tensor(boxes, dtype=torch.float32)]
    )
    given = [b.reshape(1, 4) if b.dim() == 1 and b.numel() == 4 else b for b in given]
    for b in given:
        if b.dim() != 2 or b.shape[1] != 4 or b.shape[0] == 0:
            raise ValueError(
                f"boxes must be (K, 4) as (x0, y0, x1, y1), or a list of those per image; got shape {tuple(b.shape)}."
            )
        if bool((b[:, 2] <= b[:, 0]).any() | (b[:, 3] <= b[:, 1]).any()):
            raise ValueError("Every box needs x1 > x0 and y1 > y0 (x0, y0, x1, y1 with exclusive ends).")
    want = None if labels is None else torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if want is not None and want.numel() != given[0].shape[0]:
        raise ValueError(
            f"labels has {want.numel()} entries for {given[0].shape[0]} boxes; give one label per box."
        )

    def target(output: Any) -> torch.Tensor:
        preds = _predictions(output, image_size)
        if len(given) not in (1, len(preds)):
            raise ValueError(
                f"{len(given)} box lists were given for a batch of {len(preds)} images; give one or N."
            )
        rows = []
        for i, (pb, ps, pl) in enumerate(preds):
            b = given[0] if len(given) == 1 else given[i]
            ov = box_iou(b.to(pb.device, pb.dtype), pb)  # (K, P)
            ok = ov >= iou
            if want is not None:
                ok = ok & (pl.to(want.device)[None, :] == want[:, None]).to(ok.device)
            raw_best = ov.amax(1) if ov.shape[1] else torch.zeros(b.shape[0])
            ov = torch.where(ok, ov, torch.full_like(ov, -1.0))
            if ov.shape[1] == 0:
                _no_match(i, range(b.shape[0]), raw_best, iou, want is not None)
                rows.append(ps.sum() * 0 + torch.zeros(b.shape[0], dtype=ps.dtype, device=ps.device))
                continue
            best = ov.argmax(1)
            hit = ov.gather(1, best[:, None]).squeeze(1) >= 0
            if not bool(hit.all()):
                _no_match(i, (~hit).nonzero().flatten().tolist(), raw_best, iou, want is not None)
            rows.append(torch.where(hit, ps[best], ps[best] * 0))
        return torch.stack(rows)

    return target


def _embedding_of(output: Any) -> torch.Tensor:
    t = output
    if not isinstance(output, torch.Tensor):
        for key in ("image_embeds", "embeddings", "embedding", "pooler_output", "logits"):
            v = output.get(key) if isinstance(output, dict) else getattr(output, key, None)
            if isinstance(v, torch.Tensor):
                t = v
                break
    if not isinstance(t, torch.Tensor) or t.dim() != 2:
        raise TypeError(
            "similarity needs an embedding (N, D) as the model output (a tensor, or a dict/object with "
            f"'image_embeds', 'embeddings', 'pooler_output' or 'logits'); got {type(output).__name__}"
            f"{'' if not isinstance(t, torch.Tensor) else ' of shape ' + str(tuple(t.shape))}."
        )
    return t


def similarity(embedding: torch.Tensor) -> Callable[[Any], torch.Tensor]:
    """Target: cosine similarity of the model's embedding to a concept embedding.

    y = <f(x), e> / (||f(x)|| ||e||) with f(x) (D,) the model's embedding of each image and e the
    concept ``embedding`` (D,); a (K, D) ``embedding`` gives K targets per image (CLIP-like text
    prompts, or metric-learning class centres).
    """
    e = torch.as_tensor(embedding).detach()
    single = e.dim() == 1
    if e.dim() not in (1, 2) or e.shape[-1] == 0:
        raise ValueError(f"embedding must be (D,) or (K, D); got shape {tuple(e.shape)}.")
    e = e.reshape(-1, e.shape[-1])
    if bool((e.norm(dim=1) == 0).any()):
        raise ValueError("A concept embedding is all zeros: cosine similarity to it is undefined.")

    def target(output: Any) -> torch.Tensor:
        f = _embedding_of(output)
        if f.shape[1] != e.shape[1]:
            raise ValueError(
                f"The model's embedding has {f.shape[1]} dimensions, the concept {e.shape[1]}; they must match."
            )
        ee = torch.nn.functional.normalize(e.to(f.device, f.dtype), dim=1)
        y = torch.nn.functional.normalize(f, dim=1, eps=1e-12) @ ee.T
        return y[:, 0] if single else y

    return target
