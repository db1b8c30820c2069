"""Shapley-CAM and torch-cam's smoothed family (Smooth Grad-CAM++, SS-CAM, IS-CAM), each against a float64
reference written from its paper (torch-cam's form where the issue names it) on small FC-head and GAP-head
nets: the same noise draws, every gradient, Hessian-vector product and masked score computed one by one."""

import copy

import pytest
import torch
import torch.nn.functional as F
from nets import fc_net, gap_net
from torch import nn

from gradcam import engine
from gradcam.explanation import normalize
from gradcam.layers import resolve_layers
from gradcam.methods import registry
from gradcam.methods.gradient_weighted import GradCAMPlusPlus
from gradcam.methods.shapley import ShapleyCAM
from gradcam.methods.smoothed import ISCAM, SSCAM, SmoothGradCAMPlusPlus


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(2, 3, 16, 16)


def smooth_fc_net():
    """conv - SiLU - conv - Softplus | (tapped: "3") - conv - tanh - flatten - linear: curved after the layer."""
    torch.manual_seed(2)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.Softplus(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 5),
    ).eval()


def smooth_gap_net():
    """conv - SiLU | (tapped: "1") - conv - SiLU - GAP - linear."""
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.SiLU(),
        nn.Conv2d(6, 8, 3, padding=1, stride=2),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    ).eval()


# (net, tapped layer name, index where the part after the layer starts)
SMOOTH_NETS = {"fc": (smooth_fc_net, "3", 4), "gap": (smooth_gap_net, "1", 2)}
RELU_NETS = {"fc": (lambda: fc_net(5), "4", 5), "gap": (lambda: gap_net(5), "4", 5)}


def split64(make, split, x):
    """The float64 model cut at the layer: (A (N, C, h, w), head), A = model[:split](x)."""
    m = copy.deepcopy(make()).double().eval()
    with torch.no_grad():
        a = m[:split](x.double())
    return a, m[split:]


def grad_at(head, a, cls):
    """dy_cls/dA (N, C, h, w) in float64, one image's class each."""
    a = a.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(head(a).gather(1, cls.view(-1, 1)).sum(), a)
    return g


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_hessian_products_equal_a_finite_difference_of_the_gradient(kind, x):
    make, layer, split = SMOOTH_NETS[kind]
    a, head = split64(make, split, x)
    cls = head(a).topk(2, dim=1).indices
    model = make().double()
    cap = engine.capture(model, x.double(), resolve_layers(model, layer), target=cls, hessian=True)
    h = 1e-4
    for k in range(2):
        ref = (grad_at(head, a * (1 + h), cls[:, k]) - grad_at(head, a * (1 - h), cls[:, k])) / (2 * h)
        got = cap.hessian_products[0][:, k]
        assert (got - ref).abs().max().item() <= 1e-6 * ref.abs().max().item()
        assert ref.abs().max().item() > 1e-4  # the curved head makes H A non-zero
        torch.testing.assert_close(
            cap.gradients[0][:, k], grad_at(head, a, cls[:, k]), rtol=1e-12, atol=1e-15
        )
    with pytest.raises(ValueError, match="hessian"):
        engine.capture(model, x.double(), resolve_layers(model, layer), hessian=True, input_gradient=True)


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_shapleycam_matches_the_papers_second_order_weights(kind, x):
    make, layer, split = SMOOTH_NETS[kind]
    res = ShapleyCAM(make(), layer)(x, top_k=2)
    a, head = split64(make, split, x)
    h = 1e-4
    for k in range(2):
        cls = res.targets[:, k]
        g = grad_at(head, a, cls)
        hvp = (grad_at(head, a * (1 + h), cls) - grad_at(head, a * (1 - h), cls)) / (2 * h)
        w = (g - 0.5 * hvp).mean((2, 3))  # w^c = mean_ij (g - 1/2 H A)
        ref = torch.relu((w[:, :, None, None] * a).sum(1))
        assert (res.weights[:, k].double() - w).abs().max().item() <= 1e-5 * w.abs().max().item()
        assert (normalize(res.raw[:, k].double()) - normalize(ref)).abs().max().item() <= 1e-5
    gc = registry.get("gradcam")(make(), layer=layer)(x, top_k=2)
    assert (res.maps - gc.maps).abs().max().item() > 0.01  # the Hessian term changes the map


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_shapleycam_is_gradcam_where_the_head_is_piecewise_linear(kind, x):
    make, layer, _ = RELU_NETS[kind]
    res = ShapleyCAM(make(), layer)(x, top_k=2)
    gc = registry.get("gradcam")(make(), layer=layer)(x, top_k=2)
    # H A = 0 after a piecewise-linear head, so the maps are Grad-CAM's up to float32 rounding: Shapley-CAM's
    # gradients come from one backward per target (create_graph), Grad-CAM's from one batched backward, and the
    # two sum in different orders on some CPUs (the Hessian term, where it exists, moves a map by > 0.01: above)
    torch.testing.assert_close(res.weights, gc.weights, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(res.maps, gc.maps, rtol=0, atol=1e-5)


def gradcampp64(d1, d2, d3, a):
    """Grad-CAM++'s weights (N, C) from derivative estimates, written out in float64."""
    s = a.sum((2, 3), keepdim=True)
    den = 2 * d2 + s * d3
    alpha = torch.where(
        den != 0, d2 / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den)
    )
    return (alpha * torch.relu(d1)).sum((2, 3))


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_smoothgradcampp_averages_the_derivatives_over_the_same_noise(kind, x):
    make, layer, split = {"fc": RELU_NETS["fc"], "gap": (lambda: gap_net(5), "3", 4)}[
        kind
    ]  # gap: before the ReLU
    method = SmoothGradCAMPlusPlus(make(), layer, samples=3, std=0.4, seed=5, batch_size=4)
    res = method(x, top_k=2)
    m = copy.deepcopy(make()).double().eval()
    a = m[:split](x.double()).detach()
    eps = method.noise(x.shape[1:], torch.float32, "cpu").double() * 0.4  # the draws of the call
    for k in range(2):
        cls = res.targets[:, k]
        gs = torch.stack([grad_at(m[split:], m[:split](x.double() + e).detach(), cls) for e in eps])
        d1, d2, d3 = gs.mean(0), (gs**2).mean(0), (gs**3).mean(0)
        w = gradcampp64(d1, d2, d3, a)
        ref = torch.relu((w[:, :, None, None] * a).sum(1))  # the clean activations
        assert (res.weights[:, k].double() - w).abs().max().item() <= 1e-5 * w.abs().max().item()
        assert (normalize(res.raw[:, k].double()) - normalize(ref)).abs().max().item() <= 1e-5
    plain = SmoothGradCAMPlusPlus(make(), layer, std=0.0)(x, top_k=2)
    gpp = GradCAMPlusPlus(make(), layer)(x, top_k=2)
    assert (plain.maps - gpp.maps).abs().max().item() <= 1e-6  # std = 0: Grad-CAM++
    assert (res.maps - gpp.maps).abs().max().item() > 0.01  # the noise changes the map
    assert torch.equal(method(x, top_k=2).maps, res.maps)  # seeded: deterministic


def score_gains64(m, x, a, cls, masks_for):
    """mean_s [y(x * M_s^c) - y(x)] (N, C) in float64, one masked input at a time."""
    n, c = a.shape[:2]
    lo = a.amin((2, 3), keepdim=True)
    hi = a.amax((2, 3), keepdim=True)
    base = (a - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))  # per channel at the layer's size
    up = F.interpolate(base, size=x.shape[2:], mode="bilinear", align_corners=False)
    with torch.no_grad():
        clean = m(x).gather(1, cls.view(-1, 1))[:, 0]
        gains = torch.zeros(n, c, dtype=torch.float64)
        samples = masks_for(None, None, None)
        for s in range(samples):
            for i in range(n):
                for ch in range(c):
                    mask = masks_for(s, ch, up[i, ch])
                    gains[i, ch] += m(x[i : i + 1] * mask)[0, cls[i]] - clean[i]
    return gains / samples


def check_score_family(res, make, split, x, masks_for):
    m = copy.deepcopy(make()).double().eval()
    xx = x.double()
    a = m[:split](xx).detach()
    for k in range(res.targets.shape[1]):
        w = torch.softmax(score_gains64(m, xx, a, res.targets[:, k], masks_for), dim=1)
        ref = torch.relu((w[:, :, None, None] * a).sum(1))
        assert (res.weights[:, k].double() - w).abs().max().item() <= 1e-5
        assert (normalize(res.raw[:, k].double()) - normalize(ref)).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_sscam_matches_torchcams_smoothed_score_weights(kind, x):
    make, layer, split = RELU_NETS[kind]
    method = SSCAM(make(), layer, samples=2, std=0.5, seed=3, batch_size=7)
    res = method(x)

    def masks(s, ch, up):
        if s is None:
            return 2
        return up + 0.5 * method.noise(s, ch, up.shape, torch.float32, "cpu").double()

    check_score_family(res, make, split, x, masks)
    assert torch.equal(method(x).maps, res.maps)  # seeded: deterministic
    flat = SSCAM(make(), layer, samples=2, std=0.0)(x)
    assert (flat.maps - res.maps).abs().max().item() > 1e-3  # the noise changes the map (seeded draws)


@pytest.mark.parametrize("kind", ["fc", "gap"])
def test_iscam_matches_torchcams_integrated_score_weights(kind, x):
    make, layer, split = RELU_NETS[kind]
    res = ISCAM(make(), layer, samples=3, batch_size=5)(x, top_k=2)

    def masks(s, ch, up):
        if s is None:
            return 3
        return up * sum(j / 3 for j in range(1, s + 2))  # k_i = sum_{j=1..i} j / S

    check_score_family(res, make, split, x, masks)


def test_dff_figure_colours_each_pixel_by_its_strongest_concept_and_has_a_legend():
    from test_methods_peers import _Planted

    from gradcam.methods.factorization import DeepFeatureFactorization, concept_colours

    x = torch.zeros(2, 4, 8, 8)
    x[:, 0:2, :, :4] = 1.0
    x[:, 2:4, :, 4:] = 2.0
    res = DeepFeatureFactorization(_Planted(), "feat", concepts=2, iterations=500)(x)
    left = int(res.concepts[:, 0].argmax())
    black = torch.zeros(2, 3, 8, 8)
    fig = res.figure(black, labels=["cls-a", "cls-b", "cls-c"], top=2, alpha=0.5, height=8)
    colours = concept_colours(2)
    px = fig.load()
    assert px[1, 1] == tuple(
        round(0.5 * v) for v in colours[left]
    )  # left half: the left concept, full strength
    assert px[6, 1] == tuple(round(0.5 * v) for v in colours[1 - left])
    assert px[12 + 6, 1] == px[6, 1]  # the second image's tile starts after 8 px and a 4 px gap
    assert fig.size[1] >= 8 and fig.size[0] > 2 * 8 + 2 * 4
    assert (
        px[24 + 10, 4 + 16 * left + 7] == colours[left]
    )  # the legend (from x = 24): concept's swatch, 16 px rows
    with pytest.raises(ValueError, match="one image per explained image"):
        res.figure(black[:1])
    assert concept_colours(12)[0] != concept_colours(12)[1] and len(set(concept_colours(12))) == 12


class _Rows(nn.Module):
    """Pass-through that counts the inputs the model is run on."""

    seen = 0

    def forward(self, t):
        _Rows.seen += t.shape[0]
        return t


def dead_channel_net():
    """fc_net with its tapped layer's channels 0-5 dead (bias -100 before the ReLU): flat, all-zero masks."""
    net = fc_net(5)
    with torch.no_grad():
        net[3].bias[:6] = -100.0
    return nn.Sequential(_Rows(), *net).eval()


@pytest.mark.parametrize("method", ["iscam", "sscam-std0"])
def test_flat_channels_are_scored_once_per_image_with_the_same_weights(method, x, monkeypatch):
    def build():
        if method == "iscam":
            return ISCAM(dead_channel_net(), "5", samples=3, batch_size=4)
        return SSCAM(dead_channel_net(), "5", samples=3, std=0.0, batch_size=4)

    with torch.no_grad():
        a = dead_channel_net()[:6](x).flatten(2)
    flat = int((a.amax(2) == a.amin(2)).sum())  # the 6 planted ones in each image, and any other flat one
    assert flat >= 12, flat
    _Rows.seen = 0
    res = build()(x, top_k=2)
    fast = _Rows.seen
    cls = type(build())
    monkeypatch.setattr(cls, "_zero_stays_zero", lambda self: False)
    _Rows.seen = 0
    slow = build()(x, top_k=2)
    # 2 clean inputs + 2 x 16 channels x 3 samples masked inputs; each flat channel's: one zero image per image
    assert (_Rows.seen, fast) == (2 + 2 * 16 * 3, 2 + 2 + (2 * 16 - flat) * 3)
    assert (res.weights - slow.weights).abs().max().item() <= 1e-6
    assert torch.equal(res.maps, slow.maps) or (res.maps - slow.maps).abs().max().item() <= 1e-6
    if method == "iscam":  # and the float64 reference, flat channels included
        check_score_family(
            res,
            dead_channel_net,
            6,
            x,
            lambda s, ch, up: 3 if s is None else up * sum(j / 3 for j in range(1, s + 2)),
        )
