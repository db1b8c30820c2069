"""Small vision-and-language models over scenes, and wrappers that make them ``model(x)`` callables.

- :class:`ConvEncoder`: four 3x3 conv + ReLU blocks (three 2x2 max-pools): a 64 px image becomes a
  (C, 8, 8) feature map, the layer Grad-CAM explains.
- :class:`CaptionModel`: no attention (NeuralTalk style). The feature map is average-pooled to a
  ``grid`` x ``grid`` map, flattened and mapped to the GRU's initial state h0 = tanh(W vec(pool(A)));
  the GRU then reads the words. The image enters only through h0.
- :class:`VQAModel`: image vector v = tanh(W vec(pool(A))), question vector q = tanh(U GRU(question)),
  fused by the element-wise product v * q, then an MLP answer classifier (as the paper's VQA model).
- :class:`SceneClassifier`: global average pooling + linear over (colour, shape) classes (for
  textual explanations and dissection).
- :class:`BoundCaption` / :class:`BoundQuestion` bind the caption / question to the model, so that
  ``GradCAM(BoundCaption(model, tokens))(x, target=gradcam.targets.caption_word(tokens, t))`` works
  with the unchanged engine.
"""

from __future__ import annotations

from typing import Tuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.scenes import COLOUR_NAMES, SHAPES
from .captions import teacher_inputs
from .vocab import ANSWERS, CAPTION_VOCAB, EOS, QUESTION_VOCAB

CLASS_NAMES: Tuple[str, ...] = tuple(f"{c} {s}" for c in COLOUR_NAMES for s in SHAPES)


class ConvEncoder(nn.Module):
    """(N, 3, H, W) -> (N, channels, H/8, W/8) ReLU feature map: three stride-2 convs and one at H/8.

    Every conv is followed by batch normalisation (folded into an affine map in eval mode) and ReLU.
    """

    def __init__(self, width: int = 16, channels: int = 64):
        super().__init__()
        self.channels = channels
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 4, stride=2, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.Conv2d(2 * w, channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _ImageVector(nn.Module):
    """v = tanh(W vec(avgpool_grid(A)) + b): the feature map pooled to grid x grid, then one linear map."""

    def __init__(self, channels: int, grid: int, dim: int):
        super().__init__()
        self.grid = grid
        self.linear = nn.Linear(channels * grid * grid, dim)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(F.adaptive_avg_pool2d(a, self.grid).flatten(1)))


class CaptionModel(nn.Module):
    """``model(x, inputs) -> logits (N, T, V)``: logits[:, t] scores word t given the image and inputs[:, :t+1]."""

    def __init__(
        self, width: int = 16, channels: int = 64, hidden: int = 128, embed: int = 32, grid: int = 4
    ):
        super().__init__()
        self.vocab = CAPTION_VOCAB
        self.encoder = ConvEncoder(width, channels)
        self.init = _ImageVector(channels, grid, hidden)
        self.embed = nn.Embedding(len(CAPTION_VOCAB), embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, len(CAPTION_VOCAB))

    def forward(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encoder(x), inputs)

    def decode(self, features: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Word logits (N, T, V) from the encoder's feature map and the decoder inputs (teacher forcing)."""
        h0 = self.init(features).unsqueeze(0)
        y, _ = self.gru(self.embed(inputs), h0)
        return self.out(y)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, max_len: int = 16) -> torch.Tensor:
        """Greedy decoding: (N, max_len) word ids (after ``<eos>`` everything is ``<eos>``)."""
        h = self.init(self.encoder(x)).unsqueeze(0)
        word = torch.full((x.shape[0], 1), self.vocab.id("<bos>"), dtype=torch.long, device=x.device)
        out = []
        for _ in range(max_len):
            y, h = self.gru(self.embed(word), h)
            word = self.out(y).argmax(-1)
            out.append(word)
        ids = torch.cat(out, 1)
        ended = (ids == self.vocab.id(EOS)).long().cumsum(1) > 0
        return torch.where(ended, torch.full_like(ids, self.vocab.id(EOS)), ids)


class VQAModel(nn.Module):
    """``model(x, questions) -> answer logits (N, A)``; image and question fused by element-wise product."""

    def __init__(self, width: int = 16, channels: int = 64, dim: int = 128, embed: int = 32, grid: int = 4):
        super().__init__()
        self.vocab = QUESTION_VOCAB
        self.answers = ANSWERS
        self.encoder = ConvEncoder(width, channels)
        self.image = _ImageVector(channels, grid, dim)
        self.embed = nn.Embedding(len(QUESTION_VOCAB), embed)
        self.gru = nn.GRU(embed, dim, batch_first=True)
        self.question = nn.Linear(dim, dim)
        self.classifier = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, len(ANSWERS)))

    def encode_question(self, questions: torch.Tensor) -> torch.Tensor:
        """q = tanh(U h_last): the GRU state after each question's last (non-padding) word."""
        y, _ = self.gru(self.embed(questions))
        last = (questions != 0).sum(1).clamp_min(1) - 1
        h = y.gather(1, last.view(-1, 1, 1).expand(-1, 1, y.shape[-1])).squeeze(1)
        return torch.tanh(self.question(h))

    def fuse(self, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Answer logits from image vectors v and question vectors q (same rows): MLP(v * q)."""
        return self.classifier(v * q)

    def forward(self, x: torch.Tensor, questions: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.image(self.encoder(x)), self.encode_question(questions))


class SceneClassifier(nn.Module):
    """``model(x) -> logits (N, 30)`` over :data:`CLASS_NAMES` ("red square", ...); GAP + linear (CAM-ready)."""

    def __init__(self, width: int = 16, channels: int = 64):
        super().__init__()
        self.class_names = CLASS_NAMES
        self.encoder = ConvEncoder(width, channels)
        self.fc = nn.Linear(channels, len(CLASS_NAMES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.encoder(x).mean(dim=(-2, -1)))


def _rows(ids: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2:
        raise ValueError(f"The {what} must have shape (T,) or (N, T); got {tuple(ids.shape)}.")
    if ids.shape[0] == 1 and n > 1:
        return ids.expand(n, -1)
    if ids.shape[0] != n:
        raise ValueError(
            f"The bound {what} has {ids.shape[0]} rows but the batch has {n} images; bind one row per image "
            "or a single row for all of them."
        )
    return ids


class BoundCaption(nn.Module):
    """A captioning model with its caption(s) fixed: ``bound(x) -> logits (N, T, V)`` (teacher forced).

    ``tokens`` (T,) or (N, T) are the caption's word ids ending with ``<eos>`` (see
    :func:`gradcam.vl.captions.caption_set`); output[:, t] scores word ``tokens[:, t]``.
    """

    def __init__(self, model: CaptionModel, tokens: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("tokens", torch.as_tensor(tokens, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = _rows(cast(torch.Tensor, self.tokens), x.shape[0], "caption")
        return self.model(x, teacher_inputs(tokens))


class BoundQuestion(nn.Module):
    """A VQA model with its question(s) fixed: ``bound(x) -> answer logits (N, A)``."""

    def __init__(self, model: VQAModel, questions: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("questions", torch.as_tensor(questions, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, _rows(cast(torch.Tensor, self.questions), x.shape[0], "question"))
