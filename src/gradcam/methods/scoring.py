"""Scores of perturbed inputs, shared by every method that runs extra forward passes (occlusion, RISE,
Score-CAM, Ablation-CAM): the unperturbed scores and class ids, then the same targets' scores on batches
of perturbed copies."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from ..targets import Target, logits_of, resolve_targets


def base_scores(output, target: Target, top_k: Optional[int], n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scores (N, K) and class ids (N, K) of the unperturbed images: the resolved classes' logits, or a
    callable target's values with ids -1."""
    if callable(target) and not isinstance(target, torch.Tensor):
        if top_k is not None:
            raise ValueError("Pass either target=... or top_k=..., not both: top_k picks the classes itself.")
        base = batch_scores(output, target, None, n)
        return base, torch.full(base.shape, -1, dtype=torch.long, device=base.device)
    return resolve_targets(output, target, top_k, n)


def batch_scores(output, target: Target, ids: Optional[torch.Tensor], b: int) -> torch.Tensor:
    """Scores (b, K) of a batch of perturbed inputs: the class ids' logits, or the callable target's values.

    A callable target is called on the batch's output and must score each row on its own: shape (b,) or
    (b, K); a clear error otherwise.
    """
    if ids is not None and not bool((ids < 0).any()):
        return logits_of(output).gather(1, ids)
    if not callable(target) or isinstance(target, torch.Tensor):
        raise TypeError(f"Scores of a non-callable target need class ids; got target={target!r} without ids.")
    s = target(output)
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"The target callable must return a tensor; it returned {type(s).__name__}.")
    if (s.dim() == 1 and s.shape[0] == b) or (s.dim() == 0 and b == 1):
        s = s.reshape(b, 1)
    if s.dim() != 2 or s.shape[0] != b or (ids is not None and s.shape != ids.shape):
        k = f", {ids.shape[1]}" if ids is not None else ", K"
        raise ValueError(
            f"Occlusion calls the target on batches of occluded images: for {b} images it must return "
            f"shape ({b},) or ({b}{k}); got {tuple(s.shape)}. Score each row of the output on its own."
        )
    return s


def class_scores(output, target: Target, ids: torch.Tensor, b: int, softmax: bool) -> torch.Tensor:
    """Scores (b, K) of perturbed inputs: softmax probabilities (or logits) of the class ids; a callable
    target's own values for callable targets."""
    if not bool((ids < 0).any()):
        logits = logits_of(output)
        return (logits.softmax(dim=1) if softmax else logits).gather(1, ids)
    return batch_scores(output, target, ids, b)


def check_batch_size(batch_size: int) -> int:
    """``batch_size`` if it is a positive int (perturbed inputs per forward pass); a clear error otherwise."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size must be a positive int (perturbed inputs per forward pass); got {batch_size!r}."
        )
    return batch_size
