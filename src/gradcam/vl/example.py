"""The worked example of ``docs/results/vl.md``: a Grad-CAM map per word of one caption, and one VQA answer map.

``python -m gradcam.vl.example OUT_DIR [--quick]`` trains (or loads from the cache) the models and
writes ``caption_words.png`` and ``vqa_answer.png`` into OUT_DIR, and prints the Markdown around them.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import List, Union, cast

import torch

from ..datasets.scenes import make_scene
from ..methods.gradcam import GradCAM
from ..targets import answer, caption_word
from .captions import caption_set
from .models import BoundCaption, BoundQuestion, CaptionModel, VQAModel
from .questions import question_set
from .vocab import ANSWERS, CAPTION_VOCAB, QUESTION_VOCAB


def _overlay(ax, image: torch.Tensor, cam: torch.Tensor, title: str) -> None:
    ax.imshow(image.permute(1, 2, 0).numpy())
    ax.imshow(cam.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _scene(seed: int, size: int):
    return make_scene(random.Random(seed), size=size, n_objects=3, striped=0.0)


def first_correct_seed(
    captioner: CaptionModel, vqa: VQAModel, start: int = 0, tries: int = 50, size: int = 64
) -> int:
    """The first scene seed >= ``start`` whose caption both models get right (greedy caption and the
    "what colour" answer), or ``start`` when none of ``tries`` seeds is."""
    for seed in range(start, start + tries):
        scene = _scene(seed, size)
        data = caption_set([scene])
        qs = question_set([scene], seed=seed)
        gen = captioner.generate(data.images, max_len=data.tokens.shape[1])
        with torch.no_grad():
            ans = vqa(data.images[qs.image_index[:1]], qs.questions[:1]).argmax(-1)
        if torch.equal(gen, data.tokens) and bool(ans[0] == qs.answers[0]):
            return seed
    return start


def worked_example(
    captioner: CaptionModel, vqa: VQAModel, out_dir: Union[str, Path], seed: int = 0, size: int = 64
) -> str:
    """Write the two figures for the 3-object scene of ``seed`` into ``out_dir``; return Markdown about them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = _scene(seed, size)
    data = caption_set([scene])
    tokens = data.tokens[:, :-1]  # the words, without <eos>
    words: List[str] = [CAPTION_VOCAB.words[i] for i in tokens[0].tolist()]
    res = GradCAM(BoundCaption(captioner, tokens), layer="model.encoder")(
        data.images, target=caption_word(tokens, list(range(len(words))))
    )
    generated = CAPTION_VOCAB.decode(captioner.generate(data.images, max_len=16)[0])
    fig, axes = plt.subplots(1, len(words) + 1, figsize=(1.6 * (len(words) + 1), 2.0))
    axes[0].imshow(scene.image.permute(1, 2, 0).numpy())
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    for t, w in enumerate(words):
        _overlay(axes[t + 1], scene.image, res.maps[0, t], f"{w}\nlog p={float(res.scores[0, t]):.2f}")
    fig.tight_layout()
    fig.savefig(out / "caption_words.png", dpi=72)
    plt.close(fig)

    qs = question_set([scene], seed=seed)
    pick = int((qs.kind == 0).nonzero()[0]) if bool((qs.kind == 0).any()) else 0
    q = qs.questions[pick : pick + 1]
    with torch.no_grad():
        probs = vqa(data.images, q).softmax(-1)[0]
    predicted = ANSWERS.words[int(probs.argmax())]
    truth = ANSWERS.words[int(qs.answers[pick])]
    ares = GradCAM(BoundQuestion(vqa, q), layer="model.encoder")(
        data.images, target=answer(truth, vocab=ANSWERS)
    )
    question = QUESTION_VOCAB.decode(q[0])
    fig, axes = plt.subplots(1, 2, figsize=(4.4, 2.4))
    axes[0].imshow(scene.image.permute(1, 2, 0).numpy())
    axes[0].set_title("image", fontsize=9)
    axes[0].axis("off")
    _overlay(
        axes[1],
        scene.image,
        ares.maps[0, 0],
        f"{question}\nanswer: {truth} (p={float(probs[ANSWERS.id(truth)]):.2f})",
    )
    fig.tight_layout()
    fig.savefig(out / "vqa_answer.png", dpi=90)
    plt.close(fig)
    return "\n".join(
        [
            f'Caption (true): "{" ".join(words)}"; generated greedily: "{generated}".',
            "",
            "![Grad-CAM of every word of the caption](vl/caption_words.png)",
            "",
            f'Question: "{question}"; true answer {truth}, model\'s answer {predicted} '
            f"(p = {float(probs.max()):.2f}).",
            "",
            "![Grad-CAM of the answer](vl/vqa_answer.png)",
        ]
    )


def main(argv=None) -> int:
    """Command line: ``python -m gradcam.vl.example OUT_DIR [--quick] [--seed N]``."""
    from . import train as T

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="training seed of the models")
    args = p.parse_args(argv)
    cfg = T.config(args.quick, args.seed)
    cap = cast(CaptionModel, T.load_or_train("captioner", cfg))
    vqa = cast(VQAModel, T.load_or_train("vqa", cfg))
    seed = first_correct_seed(cap, vqa)
    md = f"Scene seed {seed}: the first scene that both models get right.\n\n" + worked_example(
        cap, vqa, args.out_dir, seed
    )
    print(md)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
