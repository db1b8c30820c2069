"""Vision and language on synthetic scenes: captions, questions, small models, training with a cache.

Grad-CAM explains any differentiable output: a caption word's log-probability (a model with no
attention), or a VQA answer given the question. See ``docs/results/vl.md``.
"""

from .captions import CaptionSet, caption_set, caption_text, caption_words, teacher_inputs
from .models import CLASS_NAMES, BoundCaption, BoundQuestion, CaptionModel, SceneClassifier, VQAModel
from .questions import QuestionSet, question_set
from .vocab import ANSWERS, CAPTION_VOCAB, QUESTION_VOCAB, Vocab

__all__ = [
    "ANSWERS",
    "BoundCaption",
    "BoundQuestion",
    "CAPTION_VOCAB",
    "CLASS_NAMES",
    "CaptionModel",
    "CaptionSet",
    "QUESTION_VOCAB",
    "QuestionSet",
    "SceneClassifier",
    "VQAModel",
    "Vocab",
    "caption_set",
    "caption_text",
    "caption_words",
    "question_set",
    "teacher_inputs",
]
