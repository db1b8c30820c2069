"""Train the scene captioner, the VQA model and the scene classifier: fixed seeds, CPU, local cache.

Everything is a function of the :class:`TrainConfig` (seed included): the scenes, the weight
initialisation and the batch order, so the same config gives bit-identical weights on the same
machine and thread count. Trained weights may be cached under ``cache_dir`` (default
``$GRADCAM_CACHE`` or ``~/.cache/gradcam``), keyed by the config; nothing is ever downloaded.
Gradients come from ``torch.autograd.grad`` on the loss, then an Adam step (one-cycle schedule).

The scene classifier is trained first; its encoder then serves, fixed, as the image CNN of the
captioner and of the VQA model (like the ImageNet CNNs of the paper's models), so only their heads
are trained. Training runs on one CPU thread.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..datasets.scenes import make_scene, make_scenes
from .captions import CaptionSet, caption_set, teacher_inputs
from .models import CLASS_NAMES, CaptionModel, ConvEncoder, SceneClassifier, VQAModel
from .questions import QuestionSet, question_set
from .vocab import CAPTION_VOCAB, PAD


@dataclass(frozen=True)
class TrainConfig:
    """What defines a trained model: data size, schedule, architecture width and the seed.

    - ``n_train`` / ``n_test``: scenes per split (each model has its own scenes);
    - ``epochs``, ``batch``: the classifier, trained on ``crop`` px one-object scenes whose objects
      have the size they have in the ``size`` px multi-object scenes;
    - ``head_epochs``, ``head_batch``: the captioner's and VQA model's heads, trained on the fixed
      features of the classifier's encoder (a pretrained CNN, as in the paper);
    - ``clutter``, ``striped``: scene options (see :func:`gradcam.datasets.scenes.make_scene`).
    """

    n_train: int = 3000
    n_test: int = 300
    epochs: int = 30
    head_epochs: int = 25
    batch: int = 32
    head_batch: int = 32
    lr: float = 3e-3
    size: int = 64
    width: int = 16
    channels: int = 64
    crop: int = 32
    clutter: bool = True
    striped: float = 0.3
    seed: int = 0

    def key(self, kind: str) -> str:
        """A short hash naming the cache file of model ``kind`` trained with this config."""
        blob = json.dumps(
            {"kind": kind, **asdict(self), "torch": torch.__version__.split("+")[0]}, sort_keys=True
        )
        return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


FULL = TrainConfig()
QUICK = TrainConfig(n_train=1000, n_test=100, epochs=20, head_epochs=15, head_batch=64)


def config(quick: bool, seed: int = 0) -> TrainConfig:
    """The quick (tests, ``--quick``) or full training config with ``seed``."""
    return replace(QUICK if quick else FULL, seed=seed)


# -- data -------------------------------------------------------------------------------------


def caption_data(cfg: TrainConfig, split: str) -> CaptionSet:
    """Scenes with 2-3 objects of distinct shapes and their captions (``split``: "train" or "test")."""
    n, seed = _split(cfg, split, 1)
    half = n // 2
    kw = dict(size=cfg.size, clutter=cfg.clutter, striped=cfg.striped)
    scenes = make_scenes(half, seed, n_objects=2, **kw) + make_scenes(n - half, seed + 1, n_objects=3, **kw)
    return caption_set(scenes)


def vqa_data(cfg: TrainConfig, split: str) -> QuestionSet:
    """Scenes with 2-3 objects (shapes may repeat, so counts vary) and their questions."""
    n, seed = _split(cfg, split, 2)
    half = n // 2
    kw = dict(size=cfg.size, clutter=cfg.clutter, striped=cfg.striped, distinct_shapes=False)
    scenes = make_scenes(half, seed, n_objects=2, **kw) + make_scenes(n - half, seed + 1, n_objects=3, **kw)
    return question_set(scenes, seed)


def classifier_data(cfg: TrainConfig, split: str) -> Tuple[torch.Tensor, torch.Tensor, list]:
    """One-object scenes, balanced over the 30 (colour, shape) classes: images, labels, scenes."""
    n, seed = _split(cfg, split, 3)
    rng = random.Random(seed)
    scenes, labels = [], []
    for i in range(n):
        c = i % len(CLASS_NAMES)
        colour, shape = CLASS_NAMES[c].split()
        scenes.append(
            make_scene(
                rng,
                size=cfg.crop,
                objects=[(shape, colour)],
                clutter=cfg.clutter,
                striped=cfg.striped,
                min_radius=cfg.size / 10,
                max_radius=cfg.size / 6,
            )
        )
        labels.append(c)
    return torch.stack([s.image for s in scenes]), torch.tensor(labels), scenes


def _split(cfg: TrainConfig, split: str, stream: int) -> Tuple[int, int]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    n = cfg.n_train if split == "train" else cfg.n_test
    return n, 1000 * cfg.seed + 10 * stream + (0 if split == "train" else 5)


# -- the training loop --------------------------------------------------------------------------


def _fit(
    model: nn.Module,
    n: int,
    cfg: TrainConfig,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    epochs: int,
    batch: int,
    train_encoder: bool = True,
) -> None:
    """Adam on ``loss_fn(batch_indices)`` for ``epochs`` passes over ``n`` samples in batches, seeded order.

    With ``train_encoder=False`` the model's ``encoder`` stays fixed (and in eval mode).
    """
    frozen = (
        {id(p) for p in getattr(model, "encoder", nn.Identity()).parameters()} if not train_encoder else set()
    )
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = epochs * ((n + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    gen = torch.Generator().manual_seed(cfg.seed + 17)
    model.train()
    if not train_encoder:
        cast(nn.Module, model.encoder).eval()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(0, n, batch):
            loss = loss_fn(order[b : b + batch])
            grads = torch.autograd.grad(loss, params)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            sched.step()
    model.eval()


F_ = TypeVar("F_", bound=Callable)


def _single_threaded(fn: F_) -> F_:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one intra-op thread (restored after): small models train faster and the
    result does not depend on the machine's core count or load."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


M_ = TypeVar("M_", bound=nn.Module)


def _init(factory: Callable[[], M_], seed: int) -> M_:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _start_from(
    model: nn.Module, encoder: Optional[ConvEncoder], cfg: TrainConfig, images: torch.Tensor
) -> torch.Tensor:
    """Load the pretrained encoder into ``model`` and return its (fixed) feature maps of ``images``."""
    if encoder is None:
        encoder = train_classifier(cfg).encoder
    enc = cast(nn.Module, model.encoder)
    enc.load_state_dict(encoder.state_dict())
    enc.eval()
    with torch.no_grad():
        return torch.cat([enc(images[b : b + 256]) for b in range(0, images.shape[0], 256)])


@_single_threaded
def train_captioner(cfg: TrainConfig, encoder: Optional[ConvEncoder] = None) -> CaptionModel:
    """A :class:`CaptionModel` trained with teacher forcing (cross-entropy on every non-padding word).

    ``encoder``: pretrained weights to start the image encoder from (like the paper's ImageNet CNNs);
    by default the encoder of :func:`train_classifier` for the same config.
    """
    data = caption_data(cfg, "train")
    model = _init(lambda: CaptionModel(cfg.width, cfg.channels), cfg.seed)
    feats = _start_from(model, encoder, cfg, data.images)
    pad = CAPTION_VOCAB.id(PAD)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        tokens = data.tokens[idx]
        logits = model.decode(feats[idx], teacher_inputs(tokens))
        return F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), ignore_index=pad)

    _fit(model, len(data), cfg, loss_fn, cfg.head_epochs, cfg.head_batch, train_encoder=False)
    return model


@_single_threaded
def train_vqa(cfg: TrainConfig, encoder: Optional[ConvEncoder] = None) -> VQAModel:
    """A :class:`VQAModel` trained with cross-entropy on the answers (each image encoded once per batch).

    ``encoder``: as in :func:`train_captioner`.
    """
    data = vqa_data(cfg, "train")
    model = _init(lambda: VQAModel(cfg.width, cfg.channels), cfg.seed + 1)
    feats = _start_from(model, encoder, cfg, data.images)
    n_images = data.images.shape[0]
    by_image: List[List[int]] = [[] for _ in range(n_images)]
    for q, i in enumerate(data.image_index.tolist()):
        by_image[i].append(q)

    def loss_fn(idx: torch.Tensor) -> torch.Tensor:
        qs = torch.tensor([q for i in idx.tolist() for q in by_image[i]])
        local = torch.repeat_interleave(
            torch.arange(len(idx)), torch.tensor([len(by_image[i]) for i in idx.tolist()])
        )
        v = model.image(feats[idx])
        logits = model.fuse(v[local], model.encode_question(data.questions[qs]))
        return F.cross_entropy(logits, data.answers[qs])

    _fit(model, n_images, cfg, loss_fn, cfg.head_epochs, cfg.head_batch, train_encoder=False)
    return model


@_single_threaded
def train_classifier(cfg: TrainConfig) -> SceneClassifier:
    """A :class:`SceneClassifier` over the 30 (colour, shape) classes of one-object scenes."""
    images, labels, _ = classifier_data(cfg, "train")
    model = _init(lambda: SceneClassifier(cfg.width, cfg.channels), cfg.seed + 2)
    _fit(
        model,
        len(labels),
        cfg,
        lambda idx: F.cross_entropy(model(images[idx]), labels[idx]),
        cfg.epochs,
        cfg.batch,
    )
    return model


# -- accuracy -------------------------------------------------------------------------------------


@torch.no_grad()
def caption_accuracy(model: CaptionModel, data: CaptionSet) -> Dict[str, float]:
    """Greedy captions against the truth: exact-match rate, and word accuracy of the object words.

    ``exact``: generated caption == true caption; ``word``: teacher-forced argmax == true word over all
    non-padding words; ``object_words``: the same over colour and shape words only.
    """
    gen = model.generate(data.images, max_len=data.tokens.shape[1])
    pad = CAPTION_VOCAB.id(PAD)
    valid = data.tokens != pad
    exact = ((gen == data.tokens) | ~valid).all(1).float().mean()
    pred = model(data.images, teacher_inputs(data.tokens)).argmax(-1)
    right = pred == data.tokens
    obj = data.word_kind > 0
    return {
        "exact": float(exact),
        "word": float(right[valid].float().mean()),
        "object_words": float(right[obj].float().mean()),
    }


@torch.no_grad()
def vqa_accuracy(model: VQAModel, data: QuestionSet) -> Dict[str, float]:
    """Answer accuracy overall and per question kind; ``prior``: the accuracy of always giving the most
    frequent answer of each question kind (a question-type-only baseline)."""
    v = model.image(model.encoder(data.images))
    pred = model.fuse(v[data.image_index], model.encode_question(data.questions)).argmax(-1)
    right = (pred == data.answers).float()
    out = {"all": float(right.mean())}
    prior = 0
    for k in data.kind.unique().tolist():
        prior += int(torch.bincount(data.answers[data.kind == k]).max())
    out["prior"] = prior / len(data)
    for k, name in ((0, "colour"), (1, "shape"), (2, "count")):
        sel = data.kind == k
        out[name] = float(right[sel].mean()) if bool(sel.any()) else float("nan")
    return out


@torch.no_grad()
def classifier_accuracy(model: SceneClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy."""
    return float((model(images).argmax(1) == labels).float().mean())


# -- cache ----------------------------------------------------------------------------------------

TRAINERS: Dict[str, Tuple[Callable[..., nn.Module], Callable[[TrainConfig], nn.Module]]] = {
    "classifier": (train_classifier, lambda c: SceneClassifier(c.width, c.channels)),
    "captioner": (train_captioner, lambda c: CaptionModel(c.width, c.channels)),
    "vqa": (train_vqa, lambda c: VQAModel(c.width, c.channels)),
}


def default_cache_dir() -> Path:
    """``$GRADCAM_CACHE`` or ``~/.cache/gradcam``, plus ``/vl``."""
    root = os.environ.get("GRADCAM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gradcam")
    return Path(root) / "vl"


def load_or_train(kind: str, cfg: TrainConfig, cache_dir: Union[str, Path, None, bool] = None) -> nn.Module:
    """The model ``kind`` ("classifier", "captioner", "vqa") for ``cfg``: from the cache, or trained now.

    The captioner and the VQA model start from the classifier's encoder (itself loaded or trained).
    ``cache_dir=False`` always trains and writes nothing; ``None`` uses :func:`default_cache_dir`.
    """
    if kind not in TRAINERS:
        raise ValueError(f"Unknown model kind {kind!r}; choose from {', '.join(TRAINERS)}.")
    train, build = TRAINERS[kind]
    path = None
    if cache_dir is not False:
        base = default_cache_dir() if cache_dir is None or cache_dir is True else cache_dir
        path = Path(base) / f"{cfg.key(kind)}.pt"
    if path is not None and path.is_file():
        model = build(cfg)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval()
    if kind == "classifier":
        model = train(cfg)
    else:
        model = train(cfg, load_or_train("classifier", cfg, cache_dir).encoder)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save(model.state_dict(), tmp)
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache is not an error: the model is simply not cached
    return model
