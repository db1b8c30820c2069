"""Vocabularies of the scene language: caption words, question words, and answers.

Every word maps to a fixed id (its position in the list), so token ids are stable across runs and
across cached models.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple, Union

import torch

from ..datasets.scenes import COLOUR_NAMES, SHAPES

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
PLURALS: Dict[str, str] = {s: s + ("es" if s.endswith("s") else "s") for s in SHAPES}


class Vocab:
    """A fixed word list: ``id(word)`` is the word's index, ``words[id]`` the word."""

    def __init__(self, words: Iterable[str]):
        self.words: Tuple[str, ...] = tuple(words)
        self.index: Dict[str, int] = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("A vocabulary cannot list a word twice.")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def id(self, word: str) -> int:
        """The id of ``word``; a ``ValueError`` listing the vocabulary when it is unknown."""
        if word not in self.index:
            raise ValueError(f"Unknown word {word!r}; the vocabulary is: {', '.join(self.words)}.")
        return self.index[word]

    def encode(self, text: Union[str, Sequence[str]]) -> List[int]:
        """Ids of the words of ``text`` (a whitespace-separated string or a list of words)."""
        words = text.split() if isinstance(text, str) else list(text)
        return [self.id(w) for w in words]

    def decode(self, ids: Union[torch.Tensor, Sequence[int]], stop: bool = True) -> str:
        """The words of ``ids`` joined by spaces; padding is dropped and ``stop`` ends at ``<eos>``."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            w = self.words[int(i)]
            if w == EOS and stop:
                break
            if w not in (PAD, BOS):
                out.append(w)
        return " ".join(out)


CAPTION_VOCAB = Vocab([PAD, BOS, EOS, "a", "left", "of", *COLOUR_NAMES, *SHAPES])
QUESTION_VOCAB = Vocab(
    [
        PAD,
        "what",
        "colour",
        "shape",
        "is",
        "the",
        "how",
        "many",
        "?",
        *COLOUR_NAMES,
        *SHAPES,
        *PLURALS.values(),
    ]
)
ANSWERS = Vocab([*COLOUR_NAMES, *SHAPES, "0", "1", "2", "3"])


def pad_stack(seqs: Sequence[Sequence[int]], pad: int = 0) -> torch.Tensor:
    """(N, T) long tensor of the sequences, right-padded with ``pad`` to the longest one."""
    t = max(len(s) for s in seqs)
    out = torch.full((len(seqs), t), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out
