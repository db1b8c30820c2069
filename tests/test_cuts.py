"""The sparse backward through row-wise modules (gradcam.cuts): the same gradients as autograd's dense pass,
from the rows the target reaches only."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradcam
from gradcam import cuts


class RowPool(nn.Module):
    """A stand-in for torchvision's MultiScaleRoIAlign: output row i pools features[n_i] inside box i."""

    def forward(self, features: torch.Tensor, boxes: list) -> torch.Tensor:
        rows = []
        for n, b in enumerate(boxes):
            for x0, y0, x1, y1 in b.round().long().tolist():
                rows.append(F.adaptive_avg_pool2d(features[n, :, y0:y1, x0:x1], 2))
        return torch.stack(rows)


class TinyDetector(nn.Module):
    """Three fixed boxes per image, each scored by a shared head; output (N, 3 * classes)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1))
        self.pool = RowPool()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 4))
        self.boxes = torch.tensor([[0.0, 0, 8, 8], [4, 2, 12, 10], [6, 6, 16, 16]])

    def forward(self, x):
        f = self.backbone(x)
        scores = self.head(self.pool(f, [self.boxes] * x.shape[0]))  # (N * 3, 4)
        return scores.reshape(x.shape[0], -1)


@pytest.fixture
def row_wise(monkeypatch):
    name = f"{RowPool.__module__}.{RowPool.__qualname__}"
    monkeypatch.setattr(cuts, "ROW_WISE", cuts.ROW_WISE | {name})
    monkeypatch.setattr(cuts, "_KNOWN", {})
    seen = []
    rerun = cuts.Cut.rerun
    monkeypatch.setattr(cuts.Cut, "rerun", lambda self, rows: seen.append(rows.tolist()) or rerun(self, rows))
    return seen


@pytest.mark.parametrize(
    "target, rows",
    [
        (5, [[1, 4]]),  # class 5 is box 1's class 1: rows 1 and 4 of the 6 pooled rows (3 per image)
        ([5, 10], [[1, 5]]),  # one class per image: image 1's class 10 is its box 2 (row 5)
        (torch.tensor([[5, 10], [5, 10]]), [[1, 2, 4, 5]]),  # two classes per image: one batched backward
    ],
)
def test_the_sparse_backward_equals_the_dense_one(row_wise, target, rows):
    model = TinyDetector()
    x = torch.randn(2, 3, 16, 16)
    dense = gradcam.GradCAM(model, layer="backbone.2")
    cuts._KNOWN.clear()
    cuts.ROW_WISE, saved = frozenset(), cuts.ROW_WISE  # the dense pass: no module is row-wise
    try:
        ref = dense(x, target=target)
    finally:
        cuts.ROW_WISE = saved
        cuts._KNOWN.clear()
    assert row_wise == []
    got = gradcam.GradCAM(model, layer="backbone.2")(x, target=target)
    assert row_wise == rows
    torch.testing.assert_close(got.weights, ref.weights, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(got.maps, ref.maps, rtol=1e-5, atol=1e-6)
    assert bool(got.weights.abs().sum() > 0)


def test_the_auto_search_finds_the_same_layer_and_map_through_the_cut(row_wise):
    model = TinyDetector()
    x = torch.randn(1, 3, 16, 16)
    got = gradcam.GradCAM(model)(x, target=5)
    cuts._KNOWN.clear()
    cuts.ROW_WISE, saved = frozenset(), cuts.ROW_WISE
    try:
        ref = gradcam.GradCAM(model)(x, target=5)
    finally:
        cuts.ROW_WISE = saved
    assert got.layer == ref.layer == "backbone"
    torch.testing.assert_close(got.maps, ref.maps, rtol=1e-5, atol=1e-6)
    assert row_wise and all(rows == [1] for rows in row_wise)


def test_the_users_model_keeps_no_hook_and_the_differentiable_mode_keeps_the_graph_whole(row_wise):
    model = TinyDetector()
    x = torch.randn(1, 3, 16, 16)
    gradcam.GradCAM(model, layer="backbone.2")(x, target=5)
    assert not model.pool._forward_hooks and len(row_wise) == 1
    res = gradcam.GradCAM(model, layer="backbone.2", differentiable=True)(x, target=5)
    assert len(row_wise) == 1  # no cut: the maps keep their graph to the parameters
    res.maps.sum().backward()
    assert model.backbone[0].weight.grad is not None
