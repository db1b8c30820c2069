"""Tests of gradcam.metrics against hand-made maps with known answers and reference computations."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from torch import nn

from gradcam import metrics as M


# -- box_from_map, connected components, iou ------------------------------------------------------
def test_box_from_map_two_blobs_the_larger_wins():
    m = torch.zeros(32, 32)
    m[2:6, 3:7] = 1.0  # small blob holds the maximum
    m[12:30, 10:20] = 0.5  # large blob, above 15% of the max
    assert M.box_from_map(m).tolist() == [10, 12, 20, 30]  # (x0, y0, x1, y1), exclusive ends


def test_box_from_map_threshold_and_diagonal_connectivity():
    m = torch.zeros(20, 20)
    m[2:5, 2:5] = 1.0
    m[5:8, 5:8] = 1.0  # touches the first blob at a corner only: 8-connected, one segment
    m[10:20, 0:20] = 0.1  # larger but below 15% of the max: background
    assert M.box_from_map(m).tolist() == [2, 2, 8, 8]
    assert M.box_from_map(m, threshold=0.05).tolist() == [0, 10, 20, 20]


def test_box_from_map_border_blob_and_flat_maps():
    m = torch.zeros(16, 24)
    m[9:16, 20:24] = torch.rand(7, 4) + 0.5
    assert M.box_from_map(m).tolist() == [20, 9, 24, 16]
    assert M.box_from_map(torch.zeros(8, 8)).tolist() == [0, 0, 0, 0]
    assert M.box_from_map(torch.full((8, 6), 0.3)).tolist() == [0, 0, 6, 8]


def test_default_threshold_is_15_percent_of_the_maximum():
    """A large blob at 20% of the maximum is foreground at the default 15% (not at 50%) and wins."""
    m = torch.zeros(30, 40)
    m[1:4, 1:4] = 1.0
    m[10:25, 5:35] = 0.2
    assert M.box_from_map(m).tolist() == [5, 10, 35, 25]
    assert M.box_from_map(m, threshold=0.5).tolist() == [1, 1, 4, 4]


def test_box_convention_round_trip_area_and_iou_agree_with_pixel_masks():
    """(x0, y0, x1, y1), exclusive ends, in every function: box -> mask -> box is exact, the area is the
    pixel count, and iou equals |A n B| / |A u B| counted on the masks."""
    g = torch.Generator().manual_seed(3)
    h, w = 23, 37  # not square: a swapped axis cannot pass
    corners = torch.stack(
        [torch.randint(0, w - 1, (50,), generator=g), torch.randint(0, h - 1, (50,), generator=g)], 1
    )
    ends = (
        corners
        + 1
        + torch.stack([torch.randint(0, w, (50,), generator=g), torch.randint(0, h, (50,), generator=g)], 1)
    )
    boxes = torch.cat([corners, torch.minimum(ends, torch.tensor([w, h]))], 1)
    masks = M.boxes_to_masks(boxes, (h, w))
    assert masks.shape == (50, h, w)
    assert (
        masks.flatten(1).sum(1).tolist()
        == ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist()
    )
    assert torch.equal(M.box_from_map(masks.float()), boxes)
    inter = (masks[:, None] & masks[None]).flatten(2).sum(2).float()
    union = (masks[:, None] | masks[None]).flatten(2).sum(2).float()
    torch.testing.assert_close(M.iou(boxes[:, None], boxes[None]), inter / union, rtol=1e-6, atol=0)
    one = torch.zeros(h, w)
    one[2:5, 7:20] = 1.0  # rows 2..4, columns 7..19
    assert M.box_from_map(one).tolist() == [7, 2, 20, 5]
    assert M.boxes_to_masks(torch.tensor([7, 2, 20, 5]), (h, w)).equal(one.bool())


def test_iou_of_exactly_one_half_is_a_hit():
    gt_boxes, gt_cls = torch.tensor([[[0, 0, 10, 10]]]), torch.tensor([[1]])
    half = torch.tensor([[[0, 0, 10, 5]]])  # IoU = 50 / 100 = 0.5 exactly
    assert M.iou(half[0, 0], gt_boxes[0, 0]).item() == 0.5
    assert M.localization_correct(half, torch.tensor([[1]]), gt_boxes, gt_cls).tolist() == [[True]]
    assert M.localization_error(half, torch.tensor([[1]]), gt_boxes, gt_cls) == 0.0
    less = torch.tensor([[[0, 0, 10, 4]]])  # IoU 0.4
    assert M.localization_error(less, torch.tensor([[1]]), gt_boxes, gt_cls) == 1.0


def test_box_from_map_batched_equals_one_by_one():
    g = torch.Generator().manual_seed(0)
    maps = torch.nn.functional.interpolate(
        torch.rand(2, 3, 6, 6, generator=g), size=(40, 40), mode="bilinear"
    )
    boxes = M.box_from_map(maps)
    assert boxes.shape == (2, 3, 4)
    for i in range(2):
        for k in range(3):
            assert torch.equal(boxes[i, k], M.box_from_map(maps[i, k]))


def test_connected_components_match_scipy():
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, 30, 30, generator=g) > 0.55
    labels = M.connected_components(masks)
    for i in range(4):
        ref, n = ndimage.label(masks[i].numpy(), structure=np.ones((3, 3)))
        ours = labels[i].numpy()
        assert len(np.unique(ours[ours > 0])) == n
        # same partition: a one-to-one map between our labels and scipy's
        pairs = set(zip(ours[ours > 0].tolist(), ref[ref > 0].tolist()))
        assert len(pairs) == n


def test_iou_known_values_and_empty_boxes():
    assert M.iou([0, 0, 10, 10], [5, 5, 15, 15]).item() == pytest.approx(25 / 175)
    assert M.iou([0, 0, 10, 10], [0, 0, 10, 10]).item() == 1.0
    assert M.iou([0, 0, 10, 10], [10, 10, 20, 20]).item() == 0.0
    assert M.iou([0, 0, 0, 0], [0, 0, 0, 0]).item() == 0.0
    a = torch.tensor([[0, 0, 4, 4], [0, 0, 2, 8]])
    assert M.iou(a[:, None], a[None]).flatten().tolist() == pytest.approx([1.0, 8 / 24, 8 / 24, 1.0])
    with pytest.raises(ValueError, match=r"boxes must have shape \(\.\.\., 4\)"):
        M.iou([0, 0, 1], [0, 0, 1, 1])


def test_localization_error_ilsvrc_rule():
    gt_boxes = torch.tensor([[[0, 0, 10, 10]], [[0, 0, 10, 10]], [[0, 0, 10, 10]]])
    gt_cls = torch.tensor([[3], [3], [3]])
    pred_cls = torch.tensor([[3, 1], [1, 3], [3, 1]])
    pred_boxes = torch.tensor(
        [
            [[0, 0, 10, 9], [0, 0, 0, 0]],  # right class, IoU 0.9: right at top-1
            [[0, 0, 10, 10], [0, 0, 10, 10]],  # right class only at rank 2: right at top-2
            [[0, 0, 10, 4], [0, 0, 10, 10]],  # right class, IoU 0.4: wrong
        ]
    )
    assert M.localization_error(pred_boxes, pred_cls, gt_boxes, gt_cls, top=1) == pytest.approx(2 / 3)
    assert M.localization_error(pred_boxes, pred_cls, gt_boxes, gt_cls, top=2) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="top must be in 1..2"):
        M.localization_error(pred_boxes, pred_cls, gt_boxes, gt_cls, top=3)


# -- pointing game, energy ------------------------------------------------------------------------
def test_pointing_game_tolerance_14_and_16_pixels():
    maps = torch.zeros(1, 64, 64)
    maps[0, 30, 10] = 1.0  # the peak
    gt = torch.zeros(1, 64, 64, dtype=torch.bool)
    gt[0, 30, 25:40] = True  # nearest ground-truth pixel 15 px away
    assert M.pointing_game(maps, gt, tolerance=14) == 0.0
    assert M.pointing_game(maps, gt, tolerance=16) == 1.0
    assert M.pointing_game(maps, gt, tolerance=15) == 1.0  # within 15 px counts (Zhang et al.)
    boxes = torch.tensor([[25, 20, 40, 40]])  # a box (x0, y0, x1, y1) around the same pixels: x 25..39
    assert M.pointing_hits(maps, boxes, tolerance=14).tolist() == [False]
    assert M.pointing_hits(maps, boxes, tolerance=16).tolist() == [True]
    # diagonal: 9^2 + 12^2 = 15^2
    d = torch.zeros(1, 64, 64, dtype=torch.bool)
    d[0, 39, 22] = True
    assert M.pointing_hits(maps, d, 14.9).tolist() == [False] and M.pointing_hits(maps, d, 15.0).tolist() == [
        True
    ]


def test_pointing_game_flat_map_is_a_miss_and_accuracy_is_hits_over_all():
    gt = torch.ones(3, 8, 8, dtype=torch.bool)
    maps = torch.zeros(3, 8, 8)
    maps[0, 2, 2] = 1
    maps[1, 5, 5] = 1
    assert M.pointing_hits(maps, gt, tolerance=0).tolist() == [True, True, False]
    assert M.pointing_game(maps, gt, tolerance=0) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="gt must be bool masks"):
        M.pointing_game(maps, torch.ones(3, 8, 8), tolerance=0)


def test_energy_in_box():
    maps = torch.zeros(2, 10, 10)
    maps[0, :5] = 1.0  # half the mass in the top half
    maps[0, 0, 0] = 3.0
    box = torch.tensor([[0, 0, 10, 5], [0, 0, 10, 5]])  # (x0, y0, x1, y1): the top half
    e = M.energy_in_box(maps, box)
    assert e.tolist() == pytest.approx([1.0, 0.0])
    maps[0, 9, 9] = 5.0
    assert M.energy_in_box(maps, box)[0].item() == pytest.approx(52 / 57)


# -- class discrimination --------------------------------------------------------------------------
def test_class_discrimination_peak_and_mass():
    masks = torch.zeros(1, 2, 20, 20, dtype=torch.bool)
    masks[0, 0, :, :10] = True
    masks[0, 1, :, 10:] = True
    maps = torch.zeros(1, 2, 20, 20)
    maps[0, 0, 5, 5] = 1.0  # class 0: peak on object 0, mass on object 0
    maps[0, 1, 5, 5] = 1.0  # class 1: peak on object 0 ...
    maps[0, 1, :, 10:] = 0.5  # ... but most mass on object 1
    res = M.class_discrimination(maps, masks)
    assert res["peak"].tolist() == [[True, False]]
    assert res["mass"].tolist() == [[True, True]]
    with pytest.raises(ValueError, match="at least two objects"):
        M.class_discrimination(maps[:, :1], masks[:, :1])


# -- faithfulness ---------------------------------------------------------------------------------
class BoxEvidence(nn.Module):
    """Two logits +-s where s is 4 x (mean of the input inside rows/cols 8..16) - 2."""

    def forward(self, x):
        s = 4 * x[:, :, 8:16, 8:16].mean((1, 2, 3)) - 2
        return torch.stack([s, -s], 1)


def _evidence():
    x = torch.full((2, 3, 24, 24), 0.2)
    x[:, :, 8:16, 8:16] = 1.0
    good = torch.zeros(2, 24, 24)
    good[:, 8:16, 8:16] = 1.0
    good = good + 0.01 * torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(0))
    return x, good, 1 - good


def test_deletion_lower_and_insertion_higher_for_the_true_evidence():
    model, (x, good, bad) = BoxEvidence(), _evidence()
    d_good, d_bad = M.deletion(model, x, good, 0, steps=12), M.deletion(model, x, bad, 0, steps=12)
    i_good, i_bad = M.insertion(model, x, good, 0, steps=12), M.insertion(model, x, bad, 0, steps=12)
    assert (d_good < d_bad - 0.2).all()
    assert (i_good > i_bad + 0.2).all()


def test_perturbation_curve_matches_a_reference_loop():
    model, (x, good, _) = BoxEvidence(), _evidence()
    steps, hw = 5, 24 * 24
    curve = M.perturbation_curve(model, x, good, [0, 1], "deletion", steps=steps, max_batch=4)
    order = torch.argsort(good.flatten(1), dim=1, descending=True, stable=True)
    for n in range(2):
        for s in range(steps + 1):
            img = x[n].clone().flatten(1)
            img[:, order[n, : math.ceil(s * hw / steps)]] = 0
            p = model(img.view(1, 3, 24, 24)).softmax(1)[0, n]
            assert curve[n, s].item() == pytest.approx(p.item(), abs=1e-6)
    assert M.auc(curve).tolist() == pytest.approx(np.trapezoid(curve.numpy(), dx=1 / steps, axis=1).tolist())


class AllPixels(nn.Module):
    """Logits +-s with s = 8 x (weighted mean of every pixel) - 4: every pixel matters."""

    def forward(self, x):
        w = torch.linspace(0.5, 1.5, x.shape[-1])
        s = 8 * (x * w).mean((1, 2, 3)) - 4
        return torch.stack([s, -s], 1)


def test_insertion_starts_from_the_blurred_image_and_ends_at_x():
    model, (x, good, _) = AllPixels(), _evidence()
    x = x + 0.3 * torch.rand(
        x.shape, generator=torch.Generator().manual_seed(1)
    )  # texture for the blur to smooth
    steps, hw = 4, 24 * 24
    curve = M.perturbation_curve(model, x, good, [0, 1], "insertion", steps=steps)
    # Reference blur: scipy's Gaussian filter, sigma 5, radius 5 (kernel 11), mirrored borders (torch 'reflect').
    blurred = torch.from_numpy(
        ndimage.gaussian_filter(x.double().numpy(), sigma=(0, 0, 5, 5), mode="mirror", truncate=1.0)
    ).float()
    torch.testing.assert_close(M.gaussian_blur(x), blurred, rtol=0, atol=1e-5)
    order = torch.argsort(good.flatten(1), dim=1, descending=True, stable=True)
    for n in range(2):
        for s in range(steps + 1):
            img = blurred[n].clone().flatten(1)
            k = order[n, : math.ceil(s * hw / steps)]
            img[:, k] = x[n].flatten(1)[:, k]
            p = model(img.view(1, 3, 24, 24)).softmax(1)[0, n]
            assert curve[n, s].item() == pytest.approx(p.item(), abs=1e-5)
    p_x = model(x).softmax(1)[[0, 1], [0, 1]]
    assert curve[:, -1].tolist() == pytest.approx(p_x.tolist(), abs=1e-6)  # ends at x itself
    p_black = model(torch.zeros_like(x)).softmax(1)[[0, 1], [0, 1]]
    assert (curve[:, 0] - p_black).abs().min() > 0.05  # does not start from black


def test_rank_correlation_pools_to_size_first():
    g = torch.Generator().manual_seed(4)
    a, b = torch.rand(3, 12, 12, generator=g), torch.rand(3, 12, 12, generator=g)
    b = b + a.view(3, 4, 3, 4, 3).mean((2, 4)).repeat_interleave(3, 1).repeat_interleave(
        3, 2
    )  # share coarse structure
    pa = a.view(3, 4, 3, 4, 3).mean((2, 4))  # the 4 x 4 block means, by hand
    pb = b.view(3, 4, 3, 4, 3).mean((2, 4))
    ref = [stats.spearmanr(pa[i].flatten(), pb[i].flatten())[0] for i in range(3)]
    got = M.rank_correlation(a, b, size=(4, 4))
    assert got.tolist() == pytest.approx(ref, abs=1e-6)
    full = [stats.spearmanr(a[i].flatten(), b[i].flatten())[0] for i in range(3)]
    assert M.rank_correlation(a, b).tolist() == pytest.approx(full, abs=1e-6)
    assert min(abs(x - y) for x, y in zip(ref, full)) > 0.05  # pooling changes the answer here


def test_average_drop_and_increase():
    model, (x, good, _) = BoxEvidence(), _evidence()
    drop, inc = M.average_drop_increase(model, x, torch.ones(2, 24, 24), 0)
    assert drop.tolist() == [0.0, 0.0] and inc.tolist() == [0.0, 0.0]
    drop, _ = M.average_drop_increase(model, x, torch.zeros(2, 24, 24), 0)
    p_full = model(x).softmax(1)[:, 0]
    p_zero = model(torch.zeros_like(x)).softmax(1)[:, 0]
    assert drop.tolist() == pytest.approx(((p_full - p_zero) / p_full).tolist())
    with pytest.raises(ValueError, match=r"maps must have shape \(N, H, W\)"):
        M.deletion(model, x, good[:, :10], 0)


def test_spearman_matches_scipy_with_ties_and_flat_maps_are_zero():
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 5, (4, 7, 7), generator=g).float()
    b = torch.rand(4, 7, 7, generator=g)
    ours = M.spearman(a, b)
    ref = [stats.spearmanr(a[i].flatten(), b[i].flatten())[0] for i in range(4)]
    assert ours.tolist() == pytest.approx(ref, abs=1e-6)
    assert M.spearman(torch.zeros(7, 7), b[0]).item() == 0.0
    assert M.rankdata(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    pooled = M.rank_correlation(b, b.flip(-1), size=(7, 7))
    assert pooled.tolist() == pytest.approx(M.spearman(b, b.flip(-1)).tolist())
