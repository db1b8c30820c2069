"""Vision and language: scene language, deterministic training, per-word and answer maps vs random.

The quick models are trained once per session (``quick_models``, shared with test_neurons.py).
"""

import functools
import json
import random

import pytest
import torch

from gradcam.datasets.scenes import make_scene
from gradcam.evaluation import vl_benchmark as B
from gradcam.vl import train as T
from gradcam.vl.captions import COLOUR, SHAPE, caption_set, caption_text, teacher_inputs
from gradcam.vl.questions import COLOUR_Q, COUNT_Q, SHAPE_Q, question_set, scene_questions
from gradcam.vl.vocab import ANSWERS, CAPTION_VOCAB, QUESTION_VOCAB


@functools.cache
def quick_models():
    """(config, classifier, captioner, vqa) of the quick setting, trained once (no cache)."""
    cfg = T.config(quick=True, seed=0)
    clf = T.train_classifier(cfg)
    return cfg, clf, T.train_captioner(cfg, clf.encoder), T.train_vqa(cfg, clf.encoder)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``vl_benchmark.run(quick=True)`` on a cache holding the session's quick models."""
    cfg, clf, cap, vqa = quick_models()
    cache = tmp_path_factory.mktemp("vlcache")
    for kind, m in (("classifier", clf), ("captioner", cap), ("vqa", vqa)):
        (cache / "vl").mkdir(exist_ok=True)
        torch.save(m.state_dict(), cache / "vl" / f"{cfg.key(kind)}.pt")
    return B.run(quick=True, seed=0, cache_dir=cache / "vl")


def _scene(objects, seed=0):
    return make_scene(random.Random(seed), size=64, objects=objects)


def test_captions_follow_the_objects_left_to_right():
    s = _scene([("square", "blue"), ("circle", "red")], seed=3)
    words = caption_text(s).split()
    assert words[:3] == ["a", s.objects[0].colour, s.objects[0].shape]
    assert words[3:8] == ["left", "of", "a", s.objects[1].colour, s.objects[1].shape]
    assert s.objects[0].center[1] < s.objects[1].center[1]
    data = caption_set([s])
    assert CAPTION_VOCAB.decode(data.tokens[0]) == caption_text(s)
    assert data.tokens[0, -1] == CAPTION_VOCAB.id("<eos>")
    assert data.word_kind[0].tolist()[:8] == [0, COLOUR, SHAPE, 0, 0, 0, COLOUR, SHAPE]
    assert data.word_object[0].tolist()[:8] == [-1, 0, 0, -1, -1, -1, 1, 1]
    assert teacher_inputs(data.tokens)[0, 0] == CAPTION_VOCAB.id("<bos>")
    assert torch.equal(teacher_inputs(data.tokens)[0, 1:], data.tokens[0, :-1])


def test_questions_have_correct_answers_and_referents():
    s = _scene([("circle", "red"), ("circle", "blue"), ("square", "red")], seed=5)
    qs = scene_questions(s, random.Random(0))
    kinds = {k: (q, a, refs) for q, a, k, refs in qs}
    q, a, refs = kinds[COLOUR_Q]
    assert q == "what colour is the square ?" and a == "red"
    assert [s.objects[j].shape for j in refs] == ["square"]
    q, a, refs = kinds[SHAPE_Q]
    assert q == "what shape is blue ?" and a == "circle"
    q, a, refs = kinds[COUNT_Q]
    shape = q.split()[2][:-1] if not q.split()[2].endswith("ses") else q.split()[2][:-2]
    assert a == str(sum(o.shape == shape for o in s.objects)) == str(len(refs))
    data = question_set([s])
    assert [ANSWERS.words[i] for i in data.answers.tolist()][:2] == ["red", "circle"]
    assert QUESTION_VOCAB.decode(data.questions[0]) == "what colour is the square ?"
    box = s.objects[[o.shape for o in s.objects].index("square")].box
    assert data.referents[0].sum() == (box[2] - box[0]) * (box[3] - box[1])


def test_pointing_and_ratio_reference_values():
    maps = torch.zeros(2, 8, 8)
    maps[0, 2, 3] = 1.0
    maps[1, 6, 6] = 1.0
    boxes = torch.tensor([[1, 2, 4, 5], [1, 2, 4, 5]])
    regions = B.box_masks(boxes, (8, 8))
    assert regions[0].sum() == 9
    assert B.pointing_hits(maps, regions).tolist() == [True, False]
    uniform = torch.ones(1, 8, 8)
    assert B.in_out_ratio(uniform, regions[:1]).item() == pytest.approx(1.0)
    m = regions[:1].float() * 3 + 1  # 4 inside, 1 outside
    assert B.in_out_ratio(m, regions[:1]).item() == pytest.approx(4.0)


def test_training_is_deterministic_from_the_seed():
    tiny = T.TrainConfig(n_train=48, n_test=8, epochs=1, head_epochs=1, batch=16, seed=3)
    a = T.train_classifier(tiny)
    b = T.train_classifier(tiny)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    c1, c2 = T.train_captioner(tiny, a.encoder), T.train_captioner(tiny, a.encoder)
    assert all(torch.equal(x, y) for x, y in zip(c1.state_dict().values(), c2.state_dict().values()))
    q1, q2 = T.train_vqa(tiny, a.encoder), T.train_vqa(tiny, a.encoder)
    assert all(torch.equal(x, y) for x, y in zip(q1.state_dict().values(), q2.state_dict().values()))
    other = T.train_classifier(T.TrainConfig(n_train=48, n_test=8, epochs=1, head_epochs=1, batch=16, seed=4))
    assert not torch.equal(other.fc.weight, a.fc.weight)


def test_cache_round_trip(tmp_path):
    tiny = T.TrainConfig(n_train=32, n_test=8, epochs=1, head_epochs=1, batch=16, seed=1)
    m = T.load_or_train("vqa", tiny, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([f"{tiny.key('classifier')}.pt", f"{tiny.key('vqa')}.pt"])
    again = T.load_or_train("vqa", tiny, tmp_path)
    assert all(torch.equal(x, y) for x, y in zip(m.state_dict().values(), again.state_dict().values()))
    # The cache is READ (retraining gives equal weights, so equality alone cannot tell): marker weights
    # written into the cached file come back.
    path = tmp_path / f"{tiny.key('vqa')}.pt"
    torch.save(
        {k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in m.state_dict().items()}, path
    )
    marked = T.load_or_train("vqa", tiny, tmp_path)
    assert all((v == 0.25).all() for v in marked.state_dict().values() if v.is_floating_point())
    with pytest.raises(ValueError, match="Unknown model kind 'gpt'; choose from classifier, captioner, vqa"):
        T.load_or_train("gpt", tiny, tmp_path)


def test_quick_models_learn_the_scene_language(quick_run):
    # Measured in the quick setting (seed 0): classifier 0.77, caption object words 0.386, VQA 0.472
    # against 0.366 for the most frequent answer of each question kind.
    acc = quick_run["results"]["accuracy"]
    assert acc["classifier"] > 0.5  # chance 1/30
    assert acc["captioner"]["object_words"] > 0.3  # chance about 1/6
    assert acc["vqa"]["all"] > acc["vqa"]["prior"] + 0.05  # measured +0.106


def test_per_word_maps_point_at_the_described_object(quick_run):
    # Measured (quick, seed 0, 100 held-out scenes): colour words 0.344 / shape words 0.200 / all 0.272,
    # random map 0.040 / 0.044 / 0.042. Thresholds: 3x random and 0.15 for all object words.
    r = quick_run["results"]["caption_pointing"]
    for name in ("colour words", "shape words", "all object words"):
        assert r[name]["gradcam"] > 3 * r[name]["random"], (name, r[name])
    assert r["all object words"]["gradcam"] > 0.15
    assert r["all object words"]["random"] < 0.07


def test_densecap_ratio_and_vqa_pointing_beat_random(quick_run):
    # Measured (quick): ratio 3.48 (random 0.98); VQA pointing 0.261 (random 0.027).
    d = quick_run["results"]["densecap_ratio"]
    assert d["uniform"] == pytest.approx(1.0)
    assert 0.9 < d["random"] < 1.1
    assert d["gradcam"] > 2.0
    v = quick_run["results"]["vqa_pointing"]["all"]
    assert v["gradcam"] > 3 * v["random"] and v["gradcam"] > 0.15


def test_run_returns_a_table_and_json_results(quick_run):
    assert set(quick_run) == {"table", "results"}
    json.dumps(quick_run["results"])
    table = quick_run["table"]
    assert "| caption pointing: shape words |" in table
    assert "| DenseCap-style ratio in/out box (uniform = 1.0) |" in table
    assert "| VQA pointing: what colour |" in table
