"""Issue 15 metrics against independent references written here (closed forms and plain loops)."""

import math

import pytest
import torch
from torch import nn

from gradcam import metrics as M


class Linear(nn.Module):
    """Two logits: (sum w * x, c). Its own gradient x input map is exact for faithfulness tests."""

    def __init__(self, w: torch.Tensor, c: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.c = c

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)
        return torch.stack([s, torch.full_like(s, self.c)], 1)


# -- complexity ----------------------------------------------------------------------------------
def test_sparseness_is_the_gini_index():
    torch.manual_seed(0)
    maps = torch.randn(3, 5, 6)
    a = maps.abs().flatten(1).double()
    n = a.shape[1]
    ref = torch.stack(
        [(r[:, None] - r[None, :]).abs().sum() / (2 * n * r.sum()) for r in a]
    ).float()  # mean abs diff
    assert torch.allclose(M.sparseness(maps), ref, atol=1e-6)
    one_hot = torch.zeros(4, 4)
    one_hot[1, 2] = 3.0
    assert M.sparseness(one_hot).item() == pytest.approx(15 / 16)
    assert M.sparseness(torch.ones(2, 4, 4)).tolist() == [0.0, 0.0]
    assert M.sparseness(torch.zeros(4, 4)).item() == 0.0


def test_complexity_is_the_entropy_of_the_normalised_map():
    torch.manual_seed(0)
    maps = torch.rand(2, 4, 4)
    maps[0, 0, 0] = 0.0
    for m, h in zip(maps, M.complexity(maps)):
        p = [v / float(m.sum()) for v in m.flatten().tolist()]
        assert h.item() == pytest.approx(-sum(q * math.log(q) for q in p if q > 0), rel=1e-6)
    assert M.complexity(torch.ones(8, 8)).item() == pytest.approx(math.log(64), rel=1e-6)
    spike = torch.zeros(8, 8)
    spike[3, 3] = -2.0
    assert M.complexity(spike).item() == 0.0
    assert M.complexity(torch.zeros(8, 8)).item() == 0.0


# -- localisation --------------------------------------------------------------------------------
def test_relevance_mass_rank_energy_and_focus_on_a_known_case():
    m = torch.tensor([[4.0, 3.0, 0.0], [2.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    mask = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    assert M.relevance_mass_accuracy(m, mask).item() == pytest.approx((4 + 2 - 1) / 9)
    # K = 3 top pixels: 4 (in), 3 (out), 2 (in) -> 2/3
    assert M.relevance_rank_accuracy(m, mask).item() == pytest.approx(2 / 3)
    assert M.energy_pointing(m, mask).item() == pytest.approx(6 / 10)
    mosaic = torch.zeros(4, 4)
    mosaic[:2, :2] = 3.0  # target tile
    mosaic[2:, 2:] = 1.0
    tiles = torch.zeros(4, 4, dtype=torch.bool)
    tiles[:2, :2] = True
    tiles[:2, 2:] = True  # second tile of the class, empty
    assert M.focus(mosaic, tiles).item() == pytest.approx(0.75)
    assert M.focus(torch.zeros(4, 4), tiles).item() == 0.0
    with pytest.raises(TypeError, match="masks must be bool"):
        M.relevance_mass_accuracy(m, mask.float())


def test_relevance_rank_accuracy_batched_matches_a_loop():
    torch.manual_seed(1)
    maps = torch.rand(5, 6, 6)
    masks = torch.rand(5, 6, 6) > 0.6
    got = M.relevance_rank_accuracy(maps, masks)
    for m, k, g in zip(maps, masks, got):
        kk = int(k.sum())
        top = sorted(range(36), key=lambda i: -m.flatten()[i].item())[:kk]
        assert g.item() == pytest.approx(sum(bool(k.flatten()[i]) for i in top) / kk)


def test_pointing_game_torchray_is_a_mean_over_classes():
    maps = torch.zeros(4, 40, 40)
    for i in range(3):
        maps[i, 5, 5] = 1.0  # class 0: peak at (5, 5)
    maps[3, 39, 39] = 1.0  # class 1: peak far away
    boxes = torch.zeros(4, 2, 40, 40, dtype=torch.bool)
    boxes[:, 0, 0:1, 0:1] = True  # the class's two boxes, both 5 sqrt(2) px from the peak
    boxes[:, 1, 10:12, 10:12] = True
    union = M.union_masks(boxes, torch.zeros(4, 2, dtype=torch.long), 1)[:, 0]
    classes = torch.tensor([0, 0, 0, 1])
    mean, per_class = M.pointing_game_torchray(maps, union, classes, tolerance=15)
    assert per_class.tolist() == [1.0, 0.0]
    assert mean == 0.5
    assert M.pointing_game(maps, union, classes=classes) == 0.5
    assert M.pointing_game(maps, union) == 0.75  # the old call: hits over all maps
    assert M.pointing_game_torchray(maps, union, classes, tolerance=6)[1].tolist() == [
        0.0,
        0.0,
    ]  # dist 5*sqrt2


# -- faithfulness --------------------------------------------------------------------------------
def _linear_case(seed=0, n=3, size=6):
    torch.manual_seed(seed)
    w = torch.randn(1, 2, size, size)
    x = torch.rand(n, 2, size, size)
    return Linear(w), x, (w * x).sum(1)


def test_faithfulness_correlation_is_one_for_the_exact_linear_attribution():
    model, x, maps = _linear_case()
    r = M.faithfulness_correlation(model, x, maps, 0, n_runs=20, subset_size=5)
    assert torch.allclose(r, torch.ones(3), atol=1e-5)
    assert torch.allclose(
        M.faithfulness_correlation(model, x, -maps, 0, n_runs=20, subset_size=5), -torch.ones(3), atol=1e-5
    )


def test_faithfulness_correlation_matches_a_loop_with_given_subsets():
    model, x, _ = _linear_case(1, n=2)
    torch.manual_seed(2)
    maps = torch.rand(2, 6, 6)
    subsets = torch.stack([torch.randperm(72)[:7] for _ in range(2 * 9)]).view(2, 9, 7)
    got = M.faithfulness_correlation(model, x, maps, 0, subsets=subsets, baseline=0.5, per_channel=True)
    for i in range(2):
        a = maps[i][None].expand(2, 6, 6).flatten()
        att, delta = [], []
        for s in subsets[i]:
            xp = x[i].flatten().clone()
            xp[s] = 0.5
            with torch.no_grad():
                delta.append(float(model(x[i : i + 1])[0, 0] - model(xp.view(1, 2, 6, 6))[0, 0]))
            att.append(float(a[s].sum()))
        ref = torch.corrcoef(torch.tensor([att, delta], dtype=torch.float64))[0, 1]
        assert got[i].item() == pytest.approx(ref.item(), abs=1e-5)


def test_monotonicity_known_answers():
    w = torch.ones(1, 1, 4, 4)
    x = torch.rand(2, 1, 4, 4) + 0.1
    model = Linear(w)
    maps = x[:, 0]
    assert M.monotonicity(model, x, maps, 0, features_in_step=1).tolist() == [1.0, 1.0]
    w2 = w.clone()
    w2[0, 0, 0, 0] = -5.0  # one feature lowers the score: putting it back decreases the probability
    assert M.monotonicity(Linear(w2), x, maps, 0, features_in_step=1).tolist() == [0.0, 0.0]
    assert M.monotonicity(Linear(w2), x, maps, 0, steps=1).tolist() == [
        1.0,
        1.0,
    ]  # one step: nothing to compare
    w3 = w.clone()
    w3[0, 0, 1, 1] = 0.0  # a feature that changes nothing: equal steps still count as monotonic
    assert M.monotonicity(Linear(w3), x, maps, 0, features_in_step=1).tolist() == [1.0, 1.0]


def test_irof_matches_a_loop():
    torch.manual_seed(3)
    w = torch.randn(1, 3, 8, 8)
    x = torch.rand(2, 3, 8, 8)
    model = Linear(w, c=0.3)
    maps = torch.rand(2, 8, 8)
    got = M.irof(model, x, maps, 0, grid=2)
    seg = torch.zeros(8, 8, dtype=torch.long)
    seg[:4, 4:], seg[4:, :4], seg[4:, 4:] = 1, 2, 3
    assert torch.equal(M.grid_segments((8, 8), 2), seg)
    for i in range(2):
        p = lambda img: float(model(img[None]).detach().softmax(1)[0, 0])  # noqa: E731
        means = [float(maps[i][seg == s].mean()) for s in range(4)]
        img, q = x[i].clone(), []
        for s in sorted(range(4), key=lambda s: -means[s]):
            img[:, seg == s] = float(x[i].mean())
            q.append(p(img) / p(x[i]))
        ref = 4 - sum((q[k] + q[k + 1]) / 2 for k in range(3))
        assert got[i].item() == pytest.approx(ref, rel=1e-5)


def _dense_imputation(img: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """ROAD's linear system built entry by entry and solved densely (float64)."""
    h, w = keep.shape
    unknown = [(i, j) for i in range(h) for j in range(w) if not keep[i, j]]
    idx = {p: k for k, p in enumerate(unknown)}
    wts = {
        (1, 1): 1 / 12,
        (0, 1): 1 / 6,
        (-1, 1): 1 / 12,
        (1, -1): 1 / 12,
        (0, -1): 1 / 6,
        (-1, -1): 1 / 12,
        (1, 0): 1 / 6,
        (-1, 0): 1 / 6,
    }
    a = torch.zeros(len(unknown), len(unknown), dtype=torch.float64)
    b = torch.zeros(len(unknown), img.shape[0], dtype=torch.float64)
    for k, (i, j) in enumerate(unknown):
        for (di, dj), wt in wts.items():
            ii, jj = i + di, j + dj
            if 0 <= ii < h and 0 <= jj < w:
                a[k, k] += wt
                if keep[ii, jj]:
                    b[k] += wt * img[:, ii, jj].double()
                else:
                    a[k, idx[(ii, jj)]] -= wt
    sol = torch.linalg.solve(a, b)
    out = img.double().clone()
    for k, (i, j) in enumerate(unknown):
        out[:, i, j] = sol[k]
    return out.float()


def test_noisy_linear_imputation_solves_roads_system():
    torch.manual_seed(4)
    img = torch.rand(2, 3, 9, 7)
    keep = torch.rand(2, 9, 7) > 0.7
    keep[:, 0, 0] = True
    got = M.noisy_linear_imputation(img, keep, noise=0.0)
    for i in range(2):
        assert torch.allclose(got[i], _dense_imputation(img[i], keep[i]), atol=1e-5)
    ramp = (torch.arange(8.0)[:, None] * 0.3 + torch.arange(8.0)[None, :] * 0.1).expand(1, 1, 8, 8)
    keep = torch.ones(1, 8, 8, dtype=torch.bool)
    keep[0, 2:6, 1:7] = False
    assert torch.allclose(
        M.noisy_linear_imputation(ramp, keep, noise=0.0), ramp, atol=1e-5
    )  # linear = harmonic
    noisy = M.noisy_linear_imputation(ramp, keep, noise=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[0, 0][keep[0]], ramp[0, 0][keep[0]])
    assert (noisy - ramp)[0, 0][~keep[0]].std() > 0.2


def test_noisy_linear_imputation_multigrid_on_a_camlike_hole():
    # a Grad-CAM-shaped hole (the top 60% of a blob map, reaching the border) on an odd-sized image: the
    # multigrid-preconditioned CG must reach the dense solution within 20 iterations (plain CG needs more)
    torch.manual_seed(5)
    h, w = 35, 42
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    blob = torch.exp(-((yy - 12.0) ** 2 + (xx - 30.0) ** 2) / 150) + 0.5 * torch.exp(
        -((yy - 30.0) ** 2 + xx**2) / 40
    )
    keep = (blob < blob.flatten().kthvalue(int(0.4 * h * w)).values)[None]
    img = torch.rand(1, 3, h, w).cumsum(-1) / 10
    got = M.noisy_linear_imputation(img, keep, noise=0.0, max_iter=20)
    assert torch.allclose(got[0], _dense_imputation(img[0], keep[0]), atol=1e-5, rtol=0)


def test_noisy_linear_imputation_everything_removed_gives_zeros_beside_a_normal_image():
    # an image with no kept pixel has a singular (pure Neumann) system: its removed values are 0, not NaN,
    # and the other image of the batch is still solved exactly
    torch.manual_seed(6)
    img = torch.rand(2, 3, 24, 20)
    keep = torch.ones(2, 24, 20, dtype=torch.bool)
    keep[0] = False
    keep[1, 4:15, 6:18] = False
    got = M.noisy_linear_imputation(img, keep, noise=0.0)
    assert torch.equal(got[0], torch.zeros(3, 24, 20))
    assert torch.allclose(got[1], _dense_imputation(img[1], keep[1]), atol=1e-5, rtol=0)


def test_road_morf_and_lerf_known_answers():
    w = torch.zeros(1, 1, 10, 10)
    w[0, 0, 3:7, 3:7] = 1 / 16  # logit 0: mean of the centre block; logit 1: 0.5
    model = Linear(w, c=0.5)
    x = torch.zeros(1, 1, 10, 10)
    x[0, 0, 3:7, 3:7] = 1.0
    maps = x[:, 0] + torch.linspace(0, 0.01, 100).view(1, 10, 10)  # centre first, no ties
    pct = [16.0, 50.0]  # 16 px: exactly the centre block
    morf = M.road(model, x, maps, 0, percentages=pct, order="morf", noise=0.0)
    lerf = M.road(model, x, maps, 0, percentages=pct, order="lerf", noise=0.0)
    assert morf.tolist() == [[0.0, 0.0]]  # the block is imputed from its zero surroundings
    assert lerf.tolist() == [[1.0, 1.0]]  # the block is kept
    prob = M.road(model, x, maps, 0, percentages=[0.0], output="probability", noise=0.0)
    assert prob.item() == pytest.approx(1 / (1 + math.exp(-0.5)), rel=1e-6)
    with pytest.raises(ValueError, match="order must be 'morf'"):
        M.road(model, x, maps, 0, order="most")


# -- robustness and randomisation ----------------------------------------------------------------
def test_sensitivity_matches_the_documented_noise():
    model, x, _ = _linear_case(5, n=2)

    def explain(xx, t):
        return xx.sum(1) ** 2

    maps = explain(x, None)
    got = M.sensitivities(model, x, maps, 0, explain, n_samples=4, radius=0.1, seed=7, max_batch=3)
    noise = (torch.rand((4, *x.shape), generator=torch.Generator().manual_seed(7)) * 2 - 1) * 0.1
    for s in range(4):
        for i in range(2):
            ref = (maps[i] - explain(x[i : i + 1] + noise[s, i], None)[0]).norm() / maps[i].norm()
            assert got[i, s].item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(
        M.max_sensitivity(model, x, maps, 0, explain, n_samples=4, radius=0.1, seed=7), got.amax(1)
    )
    assert torch.allclose(
        M.avg_sensitivity(model, x, maps, 0, explain, n_samples=4, radius=0.1, seed=7), got.mean(1)
    )
    const = M.max_sensitivity(model, x, torch.ones(2, 6, 6), 0, lambda xx, t: torch.ones(xx.shape[0], 6, 6))
    assert const.tolist() == [0.0, 0.0]


def _ssim_loop(a, b, win=7):
    rng = float(torch.cat([a.flatten(), b.flatten()]).max() - torch.cat([a.flatten(), b.flatten()]).min())
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = (
                a[i : i + win, j : j + win].double().flatten(),
                b[i : i + win, j : j + win].double().flatten(),
            )
            ma, mb = pa.mean(), pb.mean()
            va, vb = pa.var(), pb.var()  # unbiased, as skimage's use_sample_covariance
            cov = ((pa - ma) * (pb - mb)).sum() / (pa.numel() - 1)
            vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(torch.stack(vals).mean())


def test_ssim_and_random_logit():
    torch.manual_seed(6)
    a, b = torch.rand(2, 9, 10), torch.rand(2, 9, 10)
    got = M.ssim(a, b)
    for i in range(2):
        assert got[i].item() == pytest.approx(_ssim_loop(a[i], b[i]), rel=1e-5)
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))

    def explain(xx, t):  # map = a different fixed pattern per class
        g = torch.Generator().manual_seed(0)
        patterns = torch.rand(5, 8, 8, generator=g)
        return patterns[torch.as_tensor(t)]

    x = torch.rand(6, 3, 8, 8)
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    got = M.random_logit(model, x, explain(x, t), t, explain, seed=3)
    r = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(3))
    off = torch.where(r < t, r, r + 1)
    assert (off != t).all()
    assert torch.allclose(got, M.ssim(explain(x, t), explain(x, off)))
    given = torch.tensor([1, 0, 0, 0, 0, 2])
    assert torch.allclose(
        M.random_logit(model, x, explain(x, t), t, explain, others=given, flatten=True),
        M.ssim(explain(x, t).flatten(1), explain(x, given).flatten(1), dims=1),
    )
    with pytest.raises(ValueError, match="each different from the image's target"):
        M.random_logit(model, x, explain(x, t), t, explain, others=t)
    assert torch.allclose(
        M.random_logit(model, x, explain(x, t), t, lambda xx, tt: explain(xx, t)), torch.ones(6)
    )
