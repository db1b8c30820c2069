"""layer="auto" on a first call in one forward (gradcam.engine.search_capture): the same layer and the same maps as
a capture of that layer alone, also when the chosen layer's output is changed in place later in the forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import gradcam
from gradcam import engine


class InPlaceAfter(nn.Module):
    """DenseNet's pattern: ``features`` (conv - BN, signed), then ``F.relu(features, inplace=True)`` outside any
    module, so the tensor the layer output is changed after its hook ran."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.features[1].running_mean.uniform_(-0.5, 0.5)
        self.fc = nn.Linear(8, 4)
        self.forwards = []  # a list: the engine runs a private copy of the module, sharing its attributes

    def forward(self, x):
        self.forwards.append(x.shape[0])
        f = F.relu(self.features(x), inplace=True)
        return self.fc(f.mean((2, 3)))


def test_a_layer_changed_in_place_later_gets_its_own_values_and_gradients(monkeypatch):
    monkeypatch.setattr(engine, "RECORD_FROM", 0.0)  # record from the first layer: 'features' is in the graph
    model = InPlaceAfter()
    x = torch.randn(2, 3, 10, 10, generator=torch.Generator().manual_seed(3))
    first = gradcam.GradCAM(model)(x, top_k=2)
    assert first.layer == "features" and model.forwards == [
        2
    ]  # one forward: no listing pass, no second capture
    named = gradcam.GradCAM(model, layer="features")(x, top_k=2)  # the layer alone: its tap hands on a copy
    assert bool((named.raw > 0).any()) and bool((named.weights < 0).any())
    torch.testing.assert_close(first.weights, named.weights, rtol=0, atol=0)  # dy/dA before the ReLU
    torch.testing.assert_close(first.raw, named.raw, rtol=0, atol=0)  # A before the ReLU (recomputed)
    torch.testing.assert_close(first.maps, named.maps, rtol=0, atol=0)


def test_search_capture_lists_what_auto_candidates_lists():
    from models_zoo import TinyViT

    for model, x in (
        (InPlaceAfter(), torch.randn(2, 3, 10, 10)),
        (TinyViT(depth=3), torch.randn(2, 3, 16, 16)),
    ):
        found = engine.search_capture(model, x)
        listed = gradcam.layers.auto_candidates(model, x[:1])
        assert [r.spec for r in found.candidates] == [r.spec for r in listed]
        assert found.capture is not None and found.capture.layers[0] == found.candidates[found.chosen]


class BigHead(nn.Module):
    """One conv map, then a head of many modules (none a map): the map comes before half the module calls."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Sequential(
            *[m for _ in range(4) for m in (nn.Linear(8, 8), nn.Tanh())], nn.Linear(8, 4)
        )
        self.forwards = []

    def forward(self, x):
        self.forwards.append(x.shape[0])
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def test_a_layer_before_the_recorded_part_is_found_as_before():
    # RECORD_FROM: autograd records the second half of the module calls; 'conv' comes before, so the search says so
    # and the layer is captured on its own: the same layer and maps, one forward more.
    model = BigHead()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    found = engine.search_capture(model, x)
    assert found.exact is False and found.capture is None and [r.spec for r in found.candidates] == ["conv"]
    model.forwards.clear()
    first = gradcam.GradCAM(model)(x)
    assert first.layer == "conv" and model.forwards == [2, 2]
    named = gradcam.GradCAM(model, layer="conv")(x)
    torch.testing.assert_close(first.maps, named.maps, rtol=0, atol=0)
