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

from typing import Any, Callable, Optional, Sequence, Tuple, Union

import torch

Target = Union[None, int, Sequence[int], Sequence[Sequence[int]], torch.Tensor, Callable[[Any], torch.Tensor]]


def logits_of(output: Any) -> torch.Tensor:
    """The (N, num_classes) class scores inside a model's output.

    Accepts a tensor, a dict with a ``"logits"`` entry, or an object with a ``.logits`` tensor
    (Hugging Face style). Anything else needs a callable target.
    """
    if isinstance(output, torch.Tensor):
        t = output
    elif isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        t = output["logits"]
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        t = output.logits
    else:
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


def resolve(
    output: Any, target: Target, top_k: Optional[int], n: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scores y (N, K) still attached to the autograd graph, and their class ids (N, K; -1 for callables).

    Raises ``ValueError``/``TypeError`` naming the problem and the fix for every malformed target.
    """
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int; got {top_k!r}.")
        if target is not None:
            raise ValueError("Pass either target=... or top_k=..., not both: top_k picks the classes itself.")

    if callable(target) and not isinstance(target, torch.Tensor):
        scores = target(output)
        if not isinstance(scores, torch.Tensor):
            raise TypeError(f"The target callable must return a tensor of shape (N,) or (N, K); it returned {type(scores).__name__}.")
        if scores.dim() == 0 and n == 1:
            scores = scores.reshape(1, 1)
        elif scores.dim() == 1 and scores.shape[0] == n:
            scores = scores.unsqueeze(1)
        if scores.dim() != 2 or scores.shape[0] != n:
            raise ValueError(
                f"The target callable must return one score per image, shape ({n},) or ({n}, K); got "
                f"{tuple(scores.shape)}. Do not sum over the batch: each image is explained by its own score."
            )
        ids = torch.full(scores.shape, -1, dtype=torch.long, device=scores.device)
        return scores, ids

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
            raise ValueError(f"top_k={k} is larger than the number of classes ({num_classes}); use top_k <= {num_classes}.")
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
