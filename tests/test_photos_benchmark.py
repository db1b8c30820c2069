"""The hand-annotated photo boxes and the Table 1 measures of :mod:`gradcam.evaluation.photos`."""

import json
import types

import pytest
import torch

from gradcam.evaluation import photos as P


def test_box_file_is_consistent():
    doc = json.loads(P.BOXES_FILE.read_text())
    assert "EXCLUSIVE".lower() in doc["convention"].lower() and "x0, y0, x1, y1" in doc["convention"]
    fool = [p for p in doc["photos"] if p["source"] == "foolbox==3.3.4"]
    assert len(fool) == 20
    for p in doc["photos"]:
        if p["source"].startswith("foolbox"):
            assert int(p["file"].rsplit("_", 1)[1][:-4]) == p["label"]
        for x0, y0, x1, y1 in p["boxes"]:
            assert 0 <= x0 < x1 <= p["width"] and 0 <= y0 < y1 <= p["height"]


def test_box_masks_scale_and_mask_iou_is_box_iou():
    m = P.box_masks([[2, 4, 6, 8]], (10, 20), (20, 10))  # x doubled, y halved
    ys, xs = torch.nonzero(m[0], as_tuple=True)
    assert (int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1) == (4, 12, 2, 4)
    a = P.box_masks([[0, 0, 4, 4]], (10, 10), (10, 10))
    b = P.box_masks([[2, 2, 6, 6], [8, 8, 10, 10]], (10, 10), (10, 10))
    assert P.mask_iou(a, b).tolist() == [[pytest.approx(4 / 28), 0.0]]


def test_evaluate_method_counts_a_perfect_map_right():
    by_name = {p.name: p for p in P.load_annotated()}
    photos = [by_name["imagenet_09_455.jpg"], by_name["imagenet_06_609.jpg"]]
    size = 64

    class Model(torch.nn.Module):  # bottle cap: right first; jeep: class 1 first, the jeep second
        def forward(self, x):
            out = torch.zeros(x.shape[0], 1000)
            first, second = [(455, 1), (1, 609)][self.k]
            out[:, first], out[:, second] = 3.0, 2.0
            return out

    model = Model()

    def method(x, target):
        p = photos[model.k]
        mask = P.box_masks(p.boxes, p.image.size, (x.shape[-1], x.shape[-2])).any(0).float()
        return types.SimpleNamespace(maps=mask.expand(1, target.shape[1], *mask.shape))

    res = []
    for k in range(2):
        model.k = k
        res.append(P.evaluate_method(method, model, [photos[k]], size, (0.5,) * 3, (0.5,) * 3))
    assert [r["cls_err1"] for r in res] == [0.0, 1.0]
    assert [r["cls_err5"] for r in res] == [0.0, 0.0]
    assert [r["loc_err1"] for r in res] == [0.0, 1.0]  # top-1 is wrong for the jeep
    assert [r["loc_err5"] for r in res] == [0.0, 0.0]
    assert [r["loc_gt"] for r in res] == [1.0, 1.0]
    assert [r["pointing"] for r in res] == [1.0, 1.0]
    assert [r["energy"] for r in res] == [1.0, 1.0]
    model.k = 0
    inverted = P.evaluate_method(
        lambda x, target: types.SimpleNamespace(maps=1 - method(x, target).maps),
        model,
        [photos[0]],
        256,
        (0.5,) * 3,
        (0.5,) * 3,
    )
    assert (inverted["pointing"], inverted["peak_in_box"], inverted["energy"]) == (0.0, 0.0, 0.0)


def test_the_runner_picks_up_every_registered_method(monkeypatch):
    from gradcam.evaluation import runner
    from gradcam.methods import registry

    monkeypatch.setitem(registry.METHODS, "zz-new-method", lambda model, layer=None: None)
    names = runner.all_methods()
    assert names[: len(runner.METHODS)] == runner.METHODS
    assert names[-1] == "zz-new-method"
    assert "zz-new-method" in runner.Settings().methods
