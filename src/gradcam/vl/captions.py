"""Captions of scenes, with the object every word refers to.

A scene's objects are sorted left to right, and its caption names them in that order:
``"a red circle left of a blue square left of a green triangle"``. Object ``j``'s colour word is at
position ``5 j + 1`` and its shape word at ``5 j + 2``; ``<eos>`` ends the caption.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import torch

from ..datasets.scenes import Scene, stack
from .vocab import BOS, CAPTION_VOCAB, EOS, PAD, pad_stack

NONE, COLOUR, SHAPE = 0, 1, 2
KINDS = {COLOUR: "colour", SHAPE: "shape"}


def caption_words(scene: Scene) -> List[str]:
    """The caption of ``scene`` as a list of words (without ``<eos>``)."""
    words: List[str] = []
    for j, o in enumerate(scene.objects):
        if j:
            words += ["left", "of"]
        words += ["a", o.colour, o.shape]
    return words


def caption_text(scene: Scene) -> str:
    """The caption of ``scene``, e.g. ``"a red circle left of a blue square"``."""
    return " ".join(caption_words(scene))


@dataclass
class CaptionSet:
    """Scenes with their captions, ready for teacher forcing and for measuring per-word maps.

    - ``images`` (N, 3, H, W); ``tokens`` (N, T): caption ids ending with ``<eos>``, right-padded;
    - ``word_object`` (N, T): the object (left-to-right index) a word describes, -1 for other words;
    - ``word_kind`` (N, T): ``COLOUR``, ``SHAPE`` or ``NONE``;
    - ``boxes`` (N, M, 4) long (x0, y0, x1, y1), exclusive ends, ``masks`` (N, M, H, W) bool, padded with empty objects;
    - ``n_objects`` (N,).
    """

    images: torch.Tensor
    tokens: torch.Tensor
    word_object: torch.Tensor
    word_kind: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor
    n_objects: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, idx: torch.Tensor) -> CaptionSet:
        """The scenes at ``idx`` (a long index or bool mask)."""
        return CaptionSet(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))


def object_tensors(scenes: Sequence[Scene]):
    """(N, M, 4) boxes and (N, M, H, W) masks of every scene's objects, M = most objects in a scene."""
    m = max(len(s.objects) for s in scenes)
    h, w = scenes[0].image.shape[-2:]
    boxes = torch.zeros(len(scenes), m, 4, dtype=torch.long)
    masks = torch.zeros(len(scenes), m, h, w, dtype=torch.bool)
    for i, s in enumerate(scenes):
        for j, o in enumerate(s.objects):
            boxes[i, j] = torch.tensor(o.box)
            masks[i, j] = o.mask
    return boxes, masks


def caption_set(scenes: Sequence[Scene]) -> CaptionSet:
    """Captions and word-to-object links of ``scenes`` (see :class:`CaptionSet`)."""
    if not scenes:
        raise ValueError("caption_set needs at least one scene.")
    seqs, objs, kinds = [], [], []
    for s in scenes:
        words = caption_words(s) + [EOS]
        seqs.append(CAPTION_VOCAB.encode(words))
        o = [-1] * len(words)
        k = [NONE] * len(words)
        for j in range(len(s.objects)):
            o[5 * j + 1], k[5 * j + 1] = j, COLOUR
            o[5 * j + 2], k[5 * j + 2] = j, SHAPE
        objs.append(o)
        kinds.append(k)
    boxes, masks = object_tensors(scenes)
    return CaptionSet(
        images=stack(scenes),
        tokens=pad_stack(seqs, CAPTION_VOCAB.id(PAD)),
        word_object=pad_stack(objs, -1),
        word_kind=pad_stack(kinds, NONE),
        boxes=boxes,
        masks=masks,
        n_objects=torch.tensor([len(s.objects) for s in scenes]),
    )


def teacher_inputs(tokens: torch.Tensor) -> torch.Tensor:
    """Decoder inputs for teacher forcing: ``<bos>`` followed by the caption shifted right by one.

    Position t of the decoder reads word t-1 (``<bos>`` at t = 0) and predicts ``tokens[:, t]``.
    """
    if tokens.dim() != 2:
        raise ValueError(f"Caption tokens must have shape (N, T); got {tuple(tokens.shape)}.")
    bos = torch.full_like(tokens[:, :1], CAPTION_VOCAB.id(BOS))
    return torch.cat([bos, tokens[:, :-1]], dim=1)
