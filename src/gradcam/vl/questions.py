"""Questions about scenes, their answers, and the objects each question refers to.

Three kinds, each asked only when its answer is well defined:

- ``"what colour is the square ?"`` (the square is the only one in the scene) -> a colour;
- ``"what shape is red ?"`` (the only red object) -> a shape;
- ``"how many circles ?"`` -> ``"0"`` .. ``"3"``; the referents are all the circles (none for 0).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import torch

from ..datasets.scenes import SHAPES, Scene, stack
from .vocab import ANSWERS, PAD, PLURALS, QUESTION_VOCAB, pad_stack

COLOUR_Q, SHAPE_Q, COUNT_Q = 0, 1, 2
QUESTION_KINDS = {COLOUR_Q: "what colour", SHAPE_Q: "what shape", COUNT_Q: "how many"}


@dataclass
class QuestionSet:
    """Questions about a set of scenes.

    - ``images`` (S, 3, H, W): the scenes; ``image_index`` (Q,): the scene each question is about;
    - ``questions`` (Q, L) word ids (right-padded); ``answers`` (Q,) answer ids; ``kind`` (Q,);
    - ``referents`` (Q, H, W) bool: the union of the boxes of the objects the question refers to
      (empty for a count of 0).
    """

    images: torch.Tensor
    image_index: torch.Tensor
    questions: torch.Tensor
    answers: torch.Tensor
    kind: torch.Tensor
    referents: torch.Tensor

    def __len__(self) -> int:
        return self.questions.shape[0]


def box_mask(box: Sequence[int], size: Tuple[int, int]) -> torch.Tensor:
    """Bool (H, W) mask of box (x0, y0, x1, y1), x1/y1 exclusive."""
    m = torch.zeros(size, dtype=torch.bool)
    m[box[1] : box[3], box[0] : box[2]] = True
    return m


def scene_questions(scene: Scene, rng: random.Random) -> List[Tuple[str, str, int, List[int]]]:
    """The questions about one scene: (question, answer, kind, referent object indices)."""
    out = []
    shapes = Counter(o.shape for o in scene.objects)
    colours = Counter(o.colour for o in scene.objects)
    unique_shapes = [s for s, c in shapes.items() if c == 1]
    if unique_shapes:
        s = rng.choice(sorted(unique_shapes))
        j = next(i for i, o in enumerate(scene.objects) if o.shape == s)
        out.append((f"what colour is the {s} ?", scene.objects[j].colour, COLOUR_Q, [j]))
    unique_colours = [c for c, n in colours.items() if n == 1]
    if unique_colours:
        c = rng.choice(sorted(unique_colours))
        j = next(i for i, o in enumerate(scene.objects) if o.colour == c)
        out.append((f"what shape is {c} ?", scene.objects[j].shape, SHAPE_Q, [j]))
    # Half of the count questions ask about a shape in the scene, half about any shape.
    s = rng.choice(sorted(shapes)) if rng.random() < 0.5 else rng.choice(SHAPES)
    refs = [i for i, o in enumerate(scene.objects) if o.shape == s]
    out.append((f"how many {PLURALS[s]} ?", str(len(refs)), COUNT_Q, refs))
    return out


def question_set(scenes: Sequence[Scene], seed: int = 0) -> QuestionSet:
    """Every well-defined question (see the module docstring) about each of ``scenes``."""
    if not scenes:
        raise ValueError("question_set needs at least one scene.")
    rng = random.Random(seed)
    size = (scenes[0].image.shape[-2], scenes[0].image.shape[-1])
    qs, answers, kinds, index, refs = [], [], [], [], []
    for i, scene in enumerate(scenes):
        for q, a, kind, objs in scene_questions(scene, rng):
            qs.append(QUESTION_VOCAB.encode(q))
            answers.append(ANSWERS.id(a))
            kinds.append(kind)
            index.append(i)
            m = torch.zeros(size, dtype=torch.bool)
            for j in objs:
                m |= box_mask(scene.objects[j].box, size)
            refs.append(m)
    return QuestionSet(
        images=stack(scenes),
        image_index=torch.tensor(index),
        questions=pad_stack(qs, QUESTION_VOCAB.id(PAD)),
        answers=torch.tensor(answers),
        kind=torch.tensor(kinds),
        referents=torch.stack(refs),
    )
