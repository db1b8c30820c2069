"""Occlusion sensitivity maps: exact score drops, the known important region, parameters and errors."""

import pytest
import torch
from torch import nn

import gradcam
from gradcam.explanation import normalize
from gradcam.methods.occlusion import window_positions

REGIONS = {0: (slice(4, 8), slice(9, 13)), 1: (slice(10, 14), slice(2, 6))}


class RegionNet(nn.Module):
    """Logit c = sum of the pixels in region c (all channels), + a small weight on everything else."""

    def __init__(self):
        super().__init__()
        w = torch.full((3, 3, 16, 16), 0.01)
        for c, (ys, xs) in REGIONS.items():
            w[c, :, ys, xs] = 1.0
        self.w = nn.Parameter(w)

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.w)


def _image(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.2 * torch.rand(n, 3, 16, 16, generator=g)
    for ys, xs in REGIONS.values():
        x[:, :, ys, xs] += 0.8  # both regions are bright: occluding them lowers their logit
    return x


def _naive(model, x, ids, window, stride, fill):
    """Score drops by hand: one occluded copy per window position, one forward each."""
    n, c, h, w = x.shape
    ys, xs = window_positions(h, window, stride), window_positions(w, window, stride)
    out = torch.zeros(n, ids.shape[1], len(ys), len(xs))
    base = model(x).gather(1, ids)
    for i in range(n):
        f = x[i].mean((1, 2), keepdim=True) if fill == "mean" else torch.as_tensor(fill).reshape(-1, 1, 1)
        for a, y0 in enumerate(ys.tolist()):
            for b, x0 in enumerate(xs.tolist()):
                occ = x[i].clone()
                occ[:, y0 : y0 + window, x0 : x0 + window] = f
                out[i, :, a, b] = base[i] - model(occ[None]).gather(1, ids[i : i + 1])[0]
    return out


@pytest.mark.parametrize("fill", ["mean", 0.0, [0.5, -1.0, 2.0]])
def test_drops_match_a_naive_loop_and_peak_in_the_region(fill):
    model, x = RegionNet(), _image()
    occ = gradcam.Occlusion(model, window=4, stride=3, fill=fill, batch_size=5)
    res = occ(x, target=[[0, 1], [1, 0]])
    ids = torch.tensor([[0, 1], [1, 0]])
    with torch.no_grad():
        ref = _naive(model, x, ids, 4, 3, fill)
    assert res.raw.shape == (2, 2, 5, 5) and res.maps.shape == (2, 2, 16, 16)
    # A drop is a difference of two float32 logits of size L (sums of ~800 terms): a few ulps of L each.
    tol = 16 * torch.finfo(torch.float32).eps * float(model(x).detach().abs().max())
    torch.testing.assert_close(res.raw, ref, rtol=0, atol=tol)
    assert torch.equal(res.targets, ids) and res.layer == "input" and res.method == "occlusion"
    if fill == "mean":
        for i in range(2):
            for k in range(2):
                ys, xs = REGIONS[int(ids[i, k])]
                c, r = res.peaks()[i, k].tolist()  # (x, y)
                assert ys.start <= r < ys.stop and xs.start <= c < xs.stop


def test_map_is_the_mean_drop_over_covering_windows():
    model, x = RegionNet(), _image(n=1)
    res = gradcam.Occlusion(model, window=6, stride=4)(x, target=0)
    ys, xs = window_positions(16, 6, 4), window_positions(16, 6, 4)
    assert ys.tolist() == [0, 4, 8, 10]
    total, count = torch.zeros(16, 16), torch.zeros(16, 16)
    for a, y0 in enumerate(ys.tolist()):
        for b, x0 in enumerate(xs.tolist()):
            total[y0 : y0 + 6, x0 : x0 + 6] += res.raw[0, 0, a, b]
            count[y0 : y0 + 6, x0 : x0 + 6] += 1
    assert torch.allclose(
        res.maps[0, 0], normalize((total / count).clamp_min(0)[None, None])[0, 0], atol=1e-6
    )
    cf = gradcam.Occlusion(model, window=6, stride=4)(x, target=0, counterfactual=True)
    assert torch.allclose(cf.raw, -res.raw) and cf.counterfactual
    assert torch.allclose(
        cf.maps[0, 0], normalize((-total / count).clamp_min(0)[None, None])[0, 0], atol=1e-6
    )


def test_batch_size_top_k_and_callable_targets_agree():
    model, x = RegionNet(), _image(n=3, seed=1)
    a = gradcam.Occlusion(model, window=4, stride=2, batch_size=1)(x, top_k=2)
    b = gradcam.Occlusion(model, window=4, stride=2, batch_size=10_000)(x, top_k=2)
    assert torch.equal(a.targets, b.targets) and torch.allclose(a.raw, b.raw, atol=1e-4)
    c = gradcam.Occlusion(model, window=4, stride=2)(x, target=lambda out: out[:, [1, 0]])
    d = gradcam.Occlusion(model, window=4, stride=2)(x, target=[[1, 0]] * 3)
    assert torch.allclose(c.raw, d.raw, atol=1e-4) and (c.targets == -1).all()
    assert torch.allclose(c.scores, d.scores)


def test_window_positions_cover_the_border():
    assert window_positions(16, 4, 3).tolist() == [0, 3, 6, 9, 12]
    assert window_positions(10, 4, 4).tolist() == [0, 4, 6]
    assert window_positions(8, 8, 2).tolist() == [0]


def test_errors_name_the_fix():
    model, x = RegionNet(), _image(n=1)
    with pytest.raises(ValueError, match=r"The occlusion window 64x64 is larger than the image 16x16"):
        gradcam.Occlusion(model)(x)
    with pytest.raises(ValueError, match=r"batch_size must be a positive int"):
        gradcam.Occlusion(model, batch_size=0)
    with pytest.raises(ValueError, match=r"window must be a positive int or a pair"):
        gradcam.Occlusion(model, window=(4, 0))
    with pytest.raises(ValueError, match=r"fill has 2 values but the input has 3 channels"):
        gradcam.Occlusion(model, window=4, fill=[0.0, 1.0])(x)
    with pytest.raises(ValueError, match=r"fill must be 'mean', a number, or one value per channel"):
        gradcam.Occlusion(model, fill="zero")
    with pytest.raises(ValueError, match=r"for 2 images it must return shape \(2,\) or \(2, 1\); got \(1,\)"):
        gradcam.Occlusion(model, window=8, stride=8, batch_size=2)(x, target=lambda out: out[:1, 0])
    with pytest.raises(ValueError, match="Pass either target=... or top_k=..., not both"):
        gradcam.Occlusion(model, window=8)(x, target=lambda out: out[:, 0], top_k=2)


def test_windows_are_scored_in_chunks_bounded_by_pixels_with_progress():
    """Memory does not grow with the photo: at most max_batch_pixels input pixels per forward; progress
    reports every chunk; the result equals one big batch."""
    model, x = RegionNet(), _image(n=2)
    seen = []
    model.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].shape[0]))
    calls = []
    small = gradcam.Occlusion(
        model,
        window=4,
        stride=3,
        max_batch_pixels=3 * 16 * 16,
        progress=lambda done, total: calls.append((done, total)),
    )(x, target=0)
    total = 2 * 25  # 2 images x 5 x 5 window positions
    assert (
        seen[0] == 2 and set(seen[1:-1]) == {3} and sum(seen[1:]) == total
    )  # the base pass, then chunks of 3
    assert calls == [(min(i, total), total) for i in range(3, total + 3, 3)]
    seen.clear()
    big = gradcam.Occlusion(model, window=4, stride=3, batch_size=10_000, max_batch_pixels=1 << 30)(
        x, target=0
    )
    assert seen == [2, total]
    tol = 16 * torch.finfo(torch.float32).eps * float(model(x).detach().abs().max())
    torch.testing.assert_close(small.raw, big.raw, rtol=0, atol=tol)
