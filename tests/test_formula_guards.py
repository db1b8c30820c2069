"""Tests that a wrong formula cannot pass: each one breaks when the line it guards is changed to the
plausible wrong version (a signed layer for XGrad-CAM, p != 0.5 for RISE, `.raw` of aug_smooth, several
features per step for monotonicity, a box away from the origin for the index's box_fraction)."""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn

import gradcam
from gradcam import index
from gradcam.api import ImageResult
from gradcam.metrics import monotonicity


class Signed(nn.Module):
    """A conv layer without a ReLU after it: its activations take both signs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 8 * 8, 4)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


def test_xgradcam_divides_by_the_signed_activation_sum():
    model = Signed()
    x = torch.randn(2, 3, 8, 8)
    res = gradcam.XGradCAM(model, layer="conv")(x, target=1)
    a = model.conv(x).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model.head(a.flatten(1))[:, 1].sum(), a)
    assert bool((a < 0).any()) and bool((a > 0).any())
    w = (g * a).sum((2, 3)) / a.sum((2, 3))  # sum_ij A g / sum_ij A, not sum_ij |A|
    want = torch.relu((w[:, :, None, None] * a).sum(1)).detach()
    torch.testing.assert_close(res.raw[:, 0], want, rtol=1e-4, atol=1e-6)


class Constant(nn.Module):
    """Two classes with equal logits whatever the input: softmax 0.5 each."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(x.shape[0], 2) + self.scale * x.mean()


def test_rise_keeps_each_cell_with_probability_p():
    p = 0.2
    rise = gradcam.RISE(Constant(), n_masks=500, grid=4, p=p, seed=0, batch_size=128)
    cells, _ = rise._draw("cpu")
    # kept fraction: 8000 Bernoulli(p) cells, standard error sqrt(p (1 - p) / 8000) = 0.0045; 5 of them
    assert abs(float(cells.mean()) - p) < 5 * (p * (1 - p) / cells.numel()) ** 0.5
    res = rise(torch.randn(1, 3, 16, 16), target=0)
    # S = sum_i f M_i / (p n) with f = 0.5: its mean is 0.5 * mean(M) / p ~ 0.5 (2.0 if cells were kept with 1 - p)
    assert abs(float(res.raw.mean()) - 0.5) < 0.05


class Lopsided(nn.Module):
    """A CNN whose evidence sits on the left: a flipped view's map must be flipped back."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        a = torch.relu(self.conv(x))
        return self.head(a[..., :4].mean((2, 3)))  # only the left 4 columns count


def test_aug_smooth_maps_raw_back_as_well_as_maps():
    model = Lopsided()
    x = torch.randn(1, 3, 8, 8)
    res = gradcam.GradCAM(model, layer="conv", aug_smooth=True)(x, target=0)
    views = [
        gradcam.GradCAM(model, layer="conv")((x.flip(-1) if f else x) * s, target=0)
        for f, s in ((False, 1.0), (False, 0.9), (False, 1.1), (True, 1.0), (True, 0.9), (True, 1.1))
    ]
    raw = torch.stack([v.raw.flip(-1) if j >= 3 else v.raw for j, v in enumerate(views)]).mean(0)
    torch.testing.assert_close(res.raw, raw, rtol=1e-4, atol=1e-6)
    wrong = torch.stack([v.raw for v in views]).mean(0)  # the flipped views' raw maps left as they are
    assert (
        float((wrong - raw).abs().max()) > 100 * float(raw.abs().max()) * 1e-4
    )  # the test can tell them apart


class Weighted(nn.Module):
    """y = sum_f c_f x_f over a 1 x 5 single-channel image."""

    def __init__(self, c):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c).view(1, 1, 1, 5))

    def forward(self, x):
        return (x * self.c).flatten(1).sum(1, keepdim=True)


def test_monotonicity_restores_features_in_ascending_order_of_the_map():
    # features ranked 0..4 by the map; two per step: ascending groups {0,1}, {2,3}, {4} add 0, 0, +1 (monotone),
    # descending groups {4,3}, {2,1}, {0} would add 0, +2, -1 (not monotone).
    model = Weighted([-1.0, 1.0, 1.0, -1.0, 1.0])
    x = torch.ones(1, 1, 1, 5)
    maps = torch.tensor([[[1.0, 2.0, 3.0, 4.0, 5.0]]])
    assert monotonicity(model, x, maps, [0], features_in_step=2, softmax=False).tolist() == [1.0]
    reversed_maps = maps.flip(-1)  # the same features ranked the other way round: not monotone
    assert monotonicity(model, x, reversed_maps, [0], features_in_step=2, softmax=False).tolist() == [0.0]


def test_index_box_fraction_of_a_box_away_from_the_origin():
    res = ImageResult(
        image=Image.new("RGB", (40, 20)),
        source="a.jpg",
        predictions=[("cat", 1, 0.75)],
        class_ids=[1],
        classes=["cat"],
        scores=[3.5],
        probabilities=[0.75],
        input_maps=torch.zeros(1, 4, 8),
        peaks=[[12, 9]],
        boxes=[[6, 4, 16, 9]],
        layer="l",
        method="gradcam",
        model="m",
    )
    row = index.result_rows(res, "a", ["a.png"], "a.json", None)[0]
    assert row["box_fraction"] == (16 - 6) * (9 - 4) / (
        40 * 20
    )  # 0.0625; x1 * y1 / area or swapped axes differ
