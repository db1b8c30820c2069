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


def test_a_layer_changed_in_place_later_gets_its_own_values_and_gradients():
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
        (TinyViT(depth=2), torch.randn(2, 3, 16, 16)),
    ):
        found = engine.search_capture(model, x)
        listed = gradcam.layers.auto_candidates(model, x[:1])
        assert [r.spec for r in found.candidates] == [r.spec for r in listed]
        assert found.capture is not None and found.capture.layers[0] == found.candidates[found.chosen]
