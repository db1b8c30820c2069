"""The vision-and-language benchmark: per-word caption maps, answer maps, against a random map.

Measured on held-out scenes with exact ground truth (see :mod:`gradcam.vl`):

- per-word pointing game: for every colour and shape word of a caption, the map of that word's
  log-probability (teacher forced) is a hit when its peak lies in the box of the object the word
  describes;
- DenseCap-style ratio (Selvaraju et al., Sec. 8.2): for every object, the map of its phrase
  ("red circle": the sum of its two words' log-probabilities); ratio = mean map inside the object's
  box / mean map outside it (a uniform map gives 1.0; the paper reports 3.27 for Grad-CAM);
- VQA pointing game: the map of the true answer's score, given the question, is a hit when its peak
  lies in the box of an object the question refers to (count questions with answer 0 are skipped).

The random baseline is a seeded random map at the layer's resolution, upsampled the same way.
``run(quick, seed)`` trains (or loads from the cache) the models and returns the table and results.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Dict, List, cast

import torch

from ..datasets.scenes import make_scenes
from ..explanation import normalize, upsample
from ..methods.gradcam import GradCAM
from ..neurons import dissect_scenes, top_channels
from ..targets import answer, caption_word
from ..vl import train as T
from ..vl.captions import COLOUR, SHAPE, CaptionSet
from ..vl.models import CLASS_NAMES, BoundCaption, BoundQuestion, CaptionModel, SceneClassifier, VQAModel
from ..vl.questions import QUESTION_KINDS, QuestionSet
from ..vl.vocab import CAPTION_VOCAB, PAD

LAYER = "model.encoder"


def box_masks(boxes: torch.Tensor, size) -> torch.Tensor:
    """Bool masks (..., H, W) of boxes (..., 4) given as (x0, y0, x1, y1), x1/y1 exclusive
    (:func:`gradcam.metrics.boxes_to_masks`)."""
    from ..metrics.pointing import boxes_to_masks

    return boxes_to_masks(boxes, size)


def pointing_hits(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Hit (bool, shape maps.shape[:-2]) when the map's maximum (first in row-major order) lies in ``regions``."""
    flat = maps.flatten(-2)
    idx = flat.argmax(-1, keepdim=True)
    return regions.flatten(-2).gather(-1, idx).squeeze(-1)


def in_out_ratio(maps: torch.Tensor, regions: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """mean(map inside region) / mean(map outside region), per map (uniform map -> 1)."""
    r = regions.to(maps.dtype)
    inside = (maps * r).flatten(-2).sum(-1) / r.flatten(-2).sum(-1).clamp_min(1)
    outside = (maps * (1 - r)).flatten(-2).sum(-1) / (1 - r).flatten(-2).sum(-1).clamp_min(1)
    return inside / outside.clamp_min(eps)


def random_maps(shape, size, seed: int, grid: int = 8) -> torch.Tensor:
    """Seeded random maps (*shape, H, W): uniform noise on a grid x grid map, upsampled and normalised."""
    gen = torch.Generator().manual_seed(seed)
    n = int(torch.tensor(shape).prod()) if len(shape) else 1
    raw = torch.rand(n, 1, grid, grid, generator=gen)
    return normalize(upsample(raw, size)).reshape(*shape, *size)


# -- maps --------------------------------------------------------------------------------------------


def _object_positions(n_objects: int) -> List[int]:
    return [p for j in range(n_objects) for p in (5 * j + 1, 5 * j + 2)]


def caption_word_maps(model: CaptionModel, data: CaptionSet, batch: int = 64) -> Dict[str, torch.Tensor]:
    """Grad-CAM maps of every colour and shape word, grouped by object count.

    Returns ``maps`` (W, H, W'), and per map ``box`` (W, H, W') of the referent object, ``scene``
    (W, H, W') the union of all the scene's object boxes, and ``kind`` (W,) (``COLOUR`` / ``SHAPE``),
    for the W object words of all captions.
    """
    out_maps, out_regions, out_kind, out_scene = [], [], [], []
    size = data.images.shape[-2:]
    for n_obj in sorted(set(data.n_objects.tolist())):
        sel = (data.n_objects == n_obj).nonzero().flatten()
        pos = _object_positions(n_obj)
        for b in range(0, len(sel), batch):
            idx = sel[b : b + batch]
            tokens = data.tokens[idx][:, : 5 * n_obj - 1]  # the caption's words and <eos>
            cam = GradCAM(BoundCaption(model, tokens), layer=LAYER)
            res = cam(data.images[idx], target=caption_word(tokens, pos, pad_id=CAPTION_VOCAB.id(PAD)))
            objs = data.word_object[idx][:, pos]
            boxes = data.boxes[idx].gather(1, objs.unsqueeze(-1).expand(-1, -1, 4))
            out_maps.append(res.maps.flatten(0, 1))
            out_regions.append(box_masks(boxes, size).flatten(0, 1))
            out_kind.append(data.word_kind[idx][:, pos].flatten())
            anywhere = box_masks(data.boxes[idx][:, :n_obj], size).any(1)
            out_scene.append(anywhere.repeat_interleave(len(pos), dim=0))
    return {
        "maps": torch.cat(out_maps),
        "box": torch.cat(out_regions),
        "kind": torch.cat(out_kind),
        "scene": torch.cat(out_scene),
    }


def phrase_maps(model: CaptionModel, data: CaptionSet, batch: int = 64) -> Dict[str, torch.Tensor]:
    """Grad-CAM maps of every object's phrase: y_j = log p(colour_j) + log p(shape_j) (teacher forced)."""
    out_maps, out_regions = [], []
    size = data.images.shape[-2:]
    for n_obj in sorted(set(data.n_objects.tolist())):
        sel = (data.n_objects == n_obj).nonzero().flatten()
        for b in range(0, len(sel), batch):
            idx = sel[b : b + batch]
            tokens = data.tokens[idx][:, : 5 * n_obj - 1]  # the caption's words and <eos>
            words = caption_word(tokens, _object_positions(n_obj))

            def phrase(output: Any, words=words, n_obj=n_obj) -> torch.Tensor:
                return words(output).reshape(-1, n_obj, 2).sum(-1)

            res = GradCAM(BoundCaption(model, tokens), layer=LAYER)(data.images[idx], target=phrase)
            out_maps.append(res.maps.flatten(0, 1))
            out_regions.append(box_masks(data.boxes[idx][:, :n_obj], size).flatten(0, 1))
    return {"maps": torch.cat(out_maps), "box": torch.cat(out_regions)}


def answer_maps(model: VQAModel, data: QuestionSet, batch: int = 64) -> Dict[str, torch.Tensor]:
    """Grad-CAM maps of the true answer's score for every question with a referent (not count 0)."""
    keep = data.referents.flatten(1).any(1).nonzero().flatten()
    maps = []
    for b in range(0, len(keep), batch):
        q = keep[b : b + batch]
        cam = GradCAM(BoundQuestion(model, data.questions[q]), layer=LAYER)
        res = cam(data.images[data.image_index[q]], target=answer(data.answers[q].tolist()))
        maps.append(res.maps[:, 0])
    return {"maps": torch.cat(maps), "box": data.referents[keep], "kind": data.kind[keep]}


# -- the benchmark -------------------------------------------------------------------------------------


def _rate(x: torch.Tensor) -> float:
    return float(x.float().mean()) if x.numel() else float("nan")


def measure(
    captioner: CaptionModel, vqa: VQAModel, cap_data: CaptionSet, vqa_data: QuestionSet, seed: int = 0
) -> Dict[str, Any]:
    """Grad-CAM against a random map on the three measurements (see the module docstring)."""
    words = caption_word_maps(captioner, cap_data)
    size = tuple(words["maps"].shape[-2:])
    rnd = random_maps((words["maps"].shape[0],), size, seed + 101)
    hits, rhits = pointing_hits(words["maps"], words["box"]), pointing_hits(rnd, words["box"])
    on_object = pointing_hits(words["maps"], words["scene"])
    out: Dict[str, Any] = {"caption_pointing": {}}
    for name, sel in (
        ("colour words", words["kind"] == COLOUR),
        ("shape words", words["kind"] == SHAPE),
        ("all object words", words["kind"] > 0),
    ):
        out["caption_pointing"][name] = {
            "gradcam": _rate(hits[sel]),
            "random": _rate(rhits[sel]),
            "n": int(sel.sum()),
            "gradcam_on_another_object": _rate((on_object & ~hits)[sel]),
        }
    phr = phrase_maps(captioner, cap_data)
    rnd = random_maps((phr["maps"].shape[0],), size, seed + 102)
    out["densecap_ratio"] = {
        "gradcam": float(in_out_ratio(phr["maps"], phr["box"]).mean()),
        "random": float(in_out_ratio(rnd, phr["box"]).mean()),
        "uniform": float(in_out_ratio(torch.ones_like(phr["maps"][:1]), phr["box"][:1]).mean()),
        "n": int(phr["maps"].shape[0]),
    }
    ans = answer_maps(vqa, vqa_data)
    rnd = random_maps((ans["maps"].shape[0],), size, seed + 103)
    hits, rhits = pointing_hits(ans["maps"], ans["box"]), pointing_hits(rnd, ans["box"])
    out["vqa_pointing"] = {}
    for k, name in QUESTION_KINDS.items():
        sel = ans["kind"] == k
        out["vqa_pointing"][name] = {
            "gradcam": _rate(hits[sel]),
            "random": _rate(rhits[sel]),
            "n": int(sel.sum()),
        }
    out["vqa_pointing"]["all"] = {"gradcam": _rate(hits), "random": _rate(rhits), "n": int(hits.numel())}
    return out


def neuron_summary(classifier, cfg, k: int = 5) -> Dict[str, Any]:
    """Dissect the scene classifier's last conv layer on held-out scenes; name the top/bottom-k channels
    of every class (alpha from Grad-CAM) and count how often a top channel is named after the class's
    colour or shape."""
    scenes = make_scenes(
        2 * cfg.n_test,
        7000 + cfg.seed,
        size=cfg.size,
        n_objects=2,
        min_radius=cfg.size / 10,
        max_radius=cfg.size / 6,
        clutter=cfg.clutter,
        striped=cfg.striped,
    )
    d = dissect_scenes(classifier, "encoder", scenes)
    names = d.names
    x = torch.stack([s.image for s in scenes[:1]])
    res = GradCAM(classifier, layer="encoder")(x, target=[list(range(len(CLASS_NAMES)))])
    per_class, hits = {}, 0
    for c, cls in enumerate(CLASS_NAMES):
        top, low = top_channels(cast(torch.Tensor, res.weights)[0, c], k)
        per_class[cls] = {
            "top": [(ch, names[ch]) for ch, _ in top],
            "bottom": [(ch, names[ch]) for ch, _ in low],
        }
        hits += sum(names[ch] in cls.split() for ch, _ in top)
    return {
        "concept_counts": {cpt: names.count(cpt) for cpt in d.concepts},
        "top_named_after_class": hits / (k * len(CLASS_NAMES)),
        "chance": float(
            sum(names.count(w) for cls in CLASS_NAMES for w in cls.split()) / (len(names) * len(CLASS_NAMES))
        ),
        "red square": per_class["red square"],
    }


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def table(results: Dict[str, Any]) -> str:
    """The Markdown table of :func:`run`'s results."""
    acc = results["accuracy"]
    lines = [
        f"Models ({'quick' if results['quick'] else 'full'} setting, seed {results['seed']}): caption exact match "
        f"{_fmt(acc['captioner']['exact'])}, caption object-word accuracy {_fmt(acc['captioner']['object_words'])}, "
        f"VQA accuracy {_fmt(acc['vqa']['all'])} (colour {_fmt(acc['vqa']['colour'])}, shape "
        f"{_fmt(acc['vqa']['shape'])}, count {_fmt(acc['vqa']['count'])}; the most frequent answer of each "
        f"question kind: {_fmt(acc['vqa']['prior'])}), scene classifier {_fmt(acc['classifier'])}. Another "
        f"{_fmt(results['caption_pointing']['all object words']['gradcam_on_another_object'])} of the caption "
        "word maps peak on another object of the scene, the rest on the background.",
        "",
        "| measurement | Grad-CAM | random map | n |",
        "| --- | --- | --- | --- |",
    ]
    for name, r in results["caption_pointing"].items():
        lines.append(f"| caption pointing: {name} | {_fmt(r['gradcam'])} | {_fmt(r['random'])} | {r['n']} |")
    d = results["densecap_ratio"]
    lines.append(
        f"| DenseCap-style ratio in/out box (uniform = 1.0) | {_fmt(d['gradcam'])} | {_fmt(d['random'])} | {d['n']} |"
    )
    for name, r in results["vqa_pointing"].items():
        lines.append(f"| VQA pointing: {name} | {_fmt(r['gradcam'])} | {_fmt(r['random'])} | {r['n']} |")
    nr = results.get("neurons")
    if nr:
        lines.append(
            f"| classifier: top-5 channels named after the class's colour/shape | {_fmt(nr['top_named_after_class'])} "
            f"| {_fmt(nr['chance'])} (chance) | 150 |"
        )
    return "\n".join(lines)


def run(quick: bool, seed: int = 0, cache_dir: Any = None) -> Dict[str, Any]:
    """Train (or load from the cache) the scene classifier, captioner and VQA model, and measure.

    Returns ``{"table": Markdown str, "results": JSON-able dict}``. ``quick`` uses the small training
    config (seconds) and fewer test scenes.
    """
    t0 = time.time()
    cfg = T.config(quick, seed)
    clf = cast(SceneClassifier, T.load_or_train("classifier", cfg, cache_dir))
    cap = cast(CaptionModel, T.load_or_train("captioner", cfg, cache_dir))
    vqa = cast(VQAModel, T.load_or_train("vqa", cfg, cache_dir))
    t_train = time.time() - t0
    cap_test, vqa_test = T.caption_data(cfg, "test"), T.vqa_data(cfg, "test")
    images, labels, _ = T.classifier_data(cfg, "test")
    results: Dict[str, Any] = {"quick": quick, "seed": seed, "config": asdict(cfg)}
    results["accuracy"] = {
        "captioner": T.caption_accuracy(cap, cap_test),
        "vqa": T.vqa_accuracy(vqa, vqa_test),
        "classifier": T.classifier_accuracy(clf, images, labels),
    }
    results.update(measure(cap, vqa, cap_test, vqa_test, seed))
    results["neurons"] = neuron_summary(clf, cfg)
    results["seconds"] = {"train_or_load": round(t_train, 1), "total": round(time.time() - t0, 1)}
    return {"table": table(results), "results": results}
