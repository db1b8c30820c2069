"""Textual explanations: top/bottom channels named by a mapping, and the built-in dissection."""

import json
import random

import pytest
import torch
from torch import nn

from gradcam import GradCAM
from gradcam.datasets.scenes import COLOURS, make_scene, make_scenes
from gradcam.explanation import Explanation
from gradcam.neurons import describe, dissect, dissect_scenes, load_names, scene_concepts, top_channels
from gradcam.vl.models import CLASS_NAMES


def _explanation(weights):
    w = torch.as_tensor(weights, dtype=torch.float32).view(1, 1, -1)
    return Explanation(
        maps=torch.zeros(1, 1, 4, 4),
        raw=torch.zeros(1, 1, 2, 2),
        weights=w,
        targets=torch.tensor([[7]]),
        scores=torch.zeros(1, 1),
        layer="features",
    )


def test_top_channels_orders_by_weight_and_breaks_ties_by_index():
    top, low = top_channels(torch.tensor([0.5, -1.0, 2.0, 0.5, -3.0, 0.0]), k=3)
    assert top == [(2, 2.0), (0, 0.5), (3, 0.5)]
    assert low == [(4, -3.0), (1, -1.0), (5, 0.0)]
    with pytest.raises(ValueError, match="k must be a positive int; got 0"):
        top_channels(torch.ones(3), k=0)
    with pytest.raises(ValueError, match=r"one weight vector alpha of shape \(C,\); got \(1, 3\)"):
        top_channels(torch.ones(1, 3))


def test_describe_names_the_channels():
    res = _explanation([0.1, -0.2, 0.3, 0.0])
    text = describe(res, {0: "red", 2: "square"}, k=2)
    assert text.splitlines() == [
        "Channels of layer 'features' that raise class 7 most (alpha > 0 helps):",
        "  +0.3  channel    2  square",
        "  +0.1  channel    0  red",
        "Channels that lower class 7 most:",
        "  -0.2  channel    1  (unnamed)",
        "  +0  channel    3  (unnamed)",
    ]
    assert "channel    1  blue" in describe(res, ["red", "blue", "square", "circle"], k=2)
    with pytest.raises(ValueError, match="3 channel names were given but the layer has 4 channels"):
        describe(res, ["a", "b", "c"])
    plain = describe(torch.tensor([0.1, -0.2, 0.3, 0.0]), ["red", "blue", "square", "circle"], k=1)
    assert plain.splitlines() == [
        "Channels that raise the target most (alpha > 0 helps):",
        "  +0.3  channel    2  square",
        "Channels that lower the target most:",
        "  -0.2  channel    1  blue",
    ]


def test_load_names_reads_json_and_text(tmp_path):
    p = tmp_path / "n.json"
    p.write_text(json.dumps({"3": "red", "10": "square"}))
    assert load_names(p) == {3: "red", 10: "square"}
    p.write_text(json.dumps(["red", "blue"]))
    assert load_names(p) == {0: "red", 1: "blue"}
    p = tmp_path / "n.txt"
    p.write_text("4 red things\n7 square\n")
    assert load_names(p) == {4: "red things", 7: "square"}
    p.write_text("red\nblue\n")
    assert load_names(p) == {0: "red", 1: "blue"}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_names(tmp_path / "missing.json")


class ColourDetector(nn.Module):
    """Channel c fires where the pixel is close to colour c (red, green, blue); channel 3 is flat noise."""

    def __init__(self):
        super().__init__()
        self.features = nn.Identity()

    def forward(self, x):
        refs = torch.tensor([COLOURS["red"], COLOURS["green"], COLOURS["blue"]]).view(1, 3, 3, 1, 1)
        d = (x.unsqueeze(1) - refs).pow(2).sum(2)  # (N, 3, H, W)
        gen = torch.Generator().manual_seed(0)
        noise = torch.rand(x.shape[0], 1, *x.shape[-2:], generator=gen) * 0.01
        return self.features(torch.cat([torch.exp(-d / 0.05), noise], 1)).mean((2, 3))


def test_dissection_names_known_detectors_and_matches_a_reference_iou():
    scenes = make_scenes(40, 3, size=32, n_objects=2, colours=("red", "green", "blue"), striped=0.0)
    model = ColourDetector()
    d = dissect_scenes(model, "features", scenes, top=0.02)
    assert d.names[:3] == ["red", "green", "blue"]
    # reference IoU of channel 0 with "red", computed pixel by pixel
    x = torch.stack([s.image for s in scenes])
    refs = torch.tensor(COLOURS["red"]).view(1, 3, 1, 1)
    a = torch.exp(-(x - refs).pow(2).sum(1) / 0.05)
    t = d.thresholds[0]
    on = a > t
    red = scene_concepts(scenes)["red"]
    iou = (on & red).sum() / (on | red).sum()
    assert d.iou[0, d.concepts.index("red")].item() == pytest.approx(iou.item(), abs=1e-6)
    assert abs(on.float().mean().item() - 0.02) < 0.002
    with pytest.raises(ValueError, match="top must be a fraction in"):
        dissect(model, "features", x, scene_concepts(scenes), top=1.5)


def test_red_square_channels_are_named_red_or_square():
    from test_vl import quick_models

    cfg, clf, _, _ = quick_models()
    scenes = make_scenes(
        120, 99, size=cfg.size, n_objects=2, min_radius=cfg.size / 10, max_radius=cfg.size / 6
    )
    d = dissect_scenes(clf, "encoder", scenes)
    rng = random.Random(1)
    x = torch.stack([make_scene(rng, size=cfg.size, objects=[("square", "red")]).image for _ in range(4)])
    res = GradCAM(clf, layer="encoder")(x, target=CLASS_NAMES.index("red square"))
    top, _ = top_channels(res.weights[:, 0].mean(0), k=5)
    named = [d.names[c] for c, _ in top]
    assert sum(n in ("red", "square") for n in named) >= 3, named
    text = describe(res, d.labels())
    assert text.count("red") + text.count("square") >= 3
