"""Issue 11: the CAM family against float64 references written from each paper's formula, identities,
batching, top-k, model safety, aug_smooth and eigen_smooth."""

import copy

import pytest
import torch
import torch.nn.functional as F
from nets import ResBlockNet, fc_net, gap_net
from torch import nn

import gradcam
from gradcam.explanation import normalize
from gradcam.methods import registry
from gradcam.methods.smoothing import first_component

SPLIT, LAYER = 5, "4"  # fc_net / gap_net: the tapped layer is the ReLU after the second conv
NETS = [fc_net, gap_net]


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(3, 3, 16, 16)


def grads64(model, x, cls):
    """float64 A (N, C, h, w), dy/dA for y = head(A)[n, cls[n]], and the logits: an independent split forward."""
    m = copy.deepcopy(model).double().eval()
    a = m[:SPLIT](x.double()).detach().requires_grad_(True)
    y = m[SPLIT:](a)
    (g,) = torch.autograd.grad(y.gather(1, cls.view(-1, 1)).sum(), a)
    return a.detach(), g, y.detach()


def close(ours, ref, tol=2e-5):
    """Maps agree after min-max normalisation (ReLU'd raw maps of the layer, float32 vs float64)."""
    a, b = normalize(ours.double()), normalize(ref.double())
    assert (a - b).abs().max().item() <= tol, (a - b).abs().max().item()


def svd_projection(t):
    """(N, C, h, w) terms -> projection on the first principal component by a full SVD, sign to the channel sum."""
    n, c, h, w = t.shape
    out = []
    for i in range(n):
        xm = t[i].reshape(c, -1).T.double()
        xc = xm - xm.mean(0)
        _, _, vh = torch.linalg.svd(xc, full_matrices=True)
        p = xc @ vh[0]
        if (p * xm.sum(1)).sum() < 0:
            p = -p
        out.append(p.reshape(h, w))
    return torch.stack(out)


# -- each method against its paper's formula -------------------------------------------------------------


def ref_gradcampp(a, g, y):
    # Chattopadhay et al., Eq. 19 with Y = exp(S): dY/dA = e^S g, d2Y = e^S g^2, d3Y = e^S g^3 (S piecewise linear).
    e = torch.exp(y).view(-1, 1, 1, 1)
    d1, d2, d3 = e * g, e * g**2, e * g**3
    den = 2 * d2 + a.sum((2, 3), keepdim=True) * d3
    alpha = torch.where(den != 0, d2 / den, torch.zeros_like(den))
    w = (alpha * torch.relu(d1)).sum((2, 3))
    return torch.relu((w[:, :, None, None] * a).sum(1))


def ref_xgradcam(a, g, y):
    w = (a * g).sum((2, 3)) / a.sum((2, 3))
    w = torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    return torch.relu((w[:, :, None, None] * a).sum(1))


def ref_hirescam(a, g, y):
    return torch.relu((g * a).sum(1))


def ref_layercam(a, g, y):
    return torch.relu((torch.relu(g) * a).sum(1))


def ref_eigencam(a, g, y):
    return torch.relu(svd_projection(a))


def ref_eigengradcam(a, g, y):
    return torch.relu(svd_projection(g * a))


REFERENCES = {
    "gradcam++": ref_gradcampp,
    "xgradcam": ref_xgradcam,
    "hirescam": ref_hirescam,
    "layercam": ref_layercam,
    "eigencam": ref_eigencam,
    "eigengradcam": ref_eigengradcam,
}


@pytest.mark.parametrize("make", NETS)
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradient_and_eigen_methods_match_the_papers_formula(make, name, x):
    model = make()
    res = registry.get(name)(model, layer=LAYER)(x, target=[1, 4, 7])
    a, g, logits = grads64(model, x, res.targets[:, 0])
    y = logits.gather(1, res.targets[:, :1])[:, 0]
    ref = REFERENCES[name](a, g, y)
    assert res.raw.shape == (3, 1, 8, 8)
    close(res.raw[:, 0], ref)
    # the maps are the raw maps upsampled bilinearly and min-max normalised
    up = F.interpolate(ref[:, None], size=(16, 16), mode="bilinear", align_corners=False)
    close(res.maps, up)


def brute_force_ablation(model, x, cls):
    """Desai & Ramaswamy: w_c = (y - y_c) / y, y_c with channel c of the layer zeroed: C separate full forwards."""
    m = copy.deepcopy(model).double().eval()
    layer = dict(m.named_modules())[LAYER]
    xd = x.double()
    with torch.no_grad():
        a = m[:SPLIT](xd)
        y = m(xd).gather(1, cls.view(-1, 1))[:, 0]
        w = torch.zeros(x.shape[0], a.shape[1], dtype=torch.float64)
        for c in range(a.shape[1]):

            def zero(mod, inp, out, c=c):
                out = out.clone()
                out[:, c] = 0
                return out

            h = layer.register_forward_hook(zero)
            yc = m(xd).gather(1, cls.view(-1, 1))[:, 0]
            h.remove()
            w[:, c] = (y - yc) / y
    return torch.relu((w[:, :, None, None] * a).sum(1)), w


def brute_force_score(model, x, cls):
    """Wang et al.: w_c = softmax(f(x * normalise(up(A_c))))[cls]: C separate full forwards."""
    m = copy.deepcopy(model).double().eval()
    xd = x.double()
    with torch.no_grad():
        a = m[:SPLIT](xd)
        w = torch.zeros(x.shape[0], a.shape[1], dtype=torch.float64)
        for c in range(a.shape[1]):
            up = F.interpolate(a[:, c : c + 1], size=x.shape[-2:], mode="bilinear", align_corners=False)
            lo, hi = up.amin((2, 3), keepdim=True), up.amax((2, 3), keepdim=True)
            mask = torch.where(hi > lo, (up - lo) / (hi - lo).clamp_min(1e-300), torch.zeros_like(up))
            w[:, c] = m(xd * mask).softmax(1).gather(1, cls.view(-1, 1))[:, 0]
    return torch.relu((w[:, :, None, None] * a).sum(1)), w


@pytest.mark.parametrize("make", NETS)
def test_ablationcam_matches_brute_force(make, x):
    model = make()
    res = gradcam.AblationCAM(model, layer=LAYER, batch_size=5)(x)
    ref, w = brute_force_ablation(model, x, res.targets[:, 0])
    assert (res.weights[:, 0].double() - w).abs().max().item() <= 1e-4 * w.abs().max().item()
    close(res.raw[:, 0], ref)


@pytest.mark.parametrize("make", NETS)
def test_scorecam_matches_brute_force(make, x):
    model = make()
    res = gradcam.ScoreCAM(model, layer=LAYER, batch_size=7)(x)
    ref, w = brute_force_score(model, x, res.targets[:, 0])
    assert (res.weights[:, 0].double() - w).abs().max().item() <= 1e-5
    close(res.raw[:, 0], ref)


def test_scorecam_scores_the_zero_image_once_per_image_for_dead_channels(x):
    # Channels 0-5 of the tapped ReLU are dead (bias -100): each masks the input to the zero image. Channel 6 is
    # made constant and non-zero (its conv weights zeroed, bias 0.5): flat after the ReLU but not zero, so it is
    # scored as any other channel (its upsampled mask may vary by rounding before the normalisation).
    model = fc_net()
    with torch.no_grad():
        model[3].bias[:6] = -100.0
        model[3].weight[6] = 0.0
        model[3].bias[6] = 0.5
    rows = []
    counted = nn.Sequential(*model)
    counted.register_forward_pre_hook(lambda mod, inp: rows.append(inp[0].shape[0]))
    res = gradcam.ScoreCAM(counted, layer=LAYER, batch_size=7)(x, top_k=2)
    with torch.no_grad():
        a = model[:SPLIT](x).flatten(2)
    live = int((a.abs().amax(2) > 0).sum())  # at most 3 x 10; an image may have other dead channels
    assert 24 <= live <= 30 and bool((a[:, 6] == 0.5).all())
    # the capture (3 images), one zero image per image, then the live channels in batches of 7
    assert rows == [3, 3] + [7] * (live // 7) + ([live % 7] if live % 7 else [])
    for k in range(2):
        ref, w = brute_force_score(model, x, res.targets[:, k])
        assert (res.weights[:, k].double() - w).abs().max().item() <= 1e-5
        close(res.raw[:, k], ref)
    blank = model.double()(torch.zeros(1, 3, 16, 16, dtype=torch.float64)).softmax(1)[0]
    expected = blank[res.targets[:, 0]].float()
    assert torch.allclose(res.weights[:, 0, :6], expected[:, None].expand(3, 6), atol=1e-6)


def test_ablationcam_skips_dead_channels_with_zero_weight(x):
    # Channels 0-5 of the tapped ReLU are dead (bias -100): ablating one changes nothing, so it needs no pass
    # and its weight is exactly 0; the others match the brute force.
    model = fc_net()
    with torch.no_grad():
        model[3].bias[:6] = -100.0
        a = model[:SPLIT](x).flatten(2)
    live = int((a.abs().amax(2) > 0).sum())
    assert 24 <= live <= 30
    rows = []
    model[5].register_forward_pre_hook(lambda mod, inp: rows.append(inp[0].shape[0]))  # after the layer
    res = gradcam.AblationCAM(model, layer=LAYER, batch_size=5)(x, top_k=2)
    assert rows == [3] + [5] * (live // 5) + ([live % 5] if live % 5 else [])  # the record, then live ones
    assert bool((res.weights[:, :, :6] == 0).all())
    for k in range(2):
        ref, w = brute_force_ablation(model, x, res.targets[:, k])
        assert (res.weights[:, k].double() - w).abs().max().item() <= 1e-4 * w.abs().max().item()
        close(res.raw[:, k], ref)


def test_ablationcam_on_a_residual_block_and_with_inplace_writes_matches_brute_force(x):
    # ResBlockNet: a shared in-place ReLU before and after the layer, `out += identity` after it.
    model = ResBlockNet()
    res = gradcam.AblationCAM(model, layer="bn", batch_size=3)(x, target=2)
    m = copy.deepcopy(model).eval()
    acts = {}
    h = m.bn.register_forward_hook(lambda mod, i, o: acts.update(a=o.clone()))
    with torch.no_grad():
        y = m(x)[:, 2]
    h.remove()
    ws = []
    for c in range(8):

        def zero(mod, inp, out, c=c):
            out = out.clone()
            out[:, c] = 0
            return out

        h = m.bn.register_forward_hook(zero)
        with torch.no_grad():
            ws.append((y - m(x)[:, 2]) / y)
        h.remove()
    w = torch.stack(ws, 1)
    assert (res.weights[:, 0] - w).abs().max().item() <= 1e-5
    close(res.raw[:, 0], torch.relu((w[:, :, None, None] * acts["a"]).sum(1)))


class InputWriter(nn.Module):
    """Writes into its input in place (x.add_(0)): the replay's shared rows must fall back to full forwards."""

    def __init__(self):
        super().__init__()
        self.net = gap_net()

    def forward(self, x):
        x.add_(0.0)
        return self.net(x)


def test_ablationcam_falls_back_to_full_forwards_when_the_model_writes_in_place(x):
    model = InputWriter()
    res = gradcam.AblationCAM(model, layer="net.4", batch_size=4)(x)
    ref, w = brute_force_ablation(model.net, x, res.targets[:, 0])
    assert (res.weights[:, 0].double() - w).abs().max().item() <= 1e-4 * w.abs().max().item()


class _Block(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 6, 3, padding=1), act

    def forward(self, x):
        return self.act(self.conv(x))


class TrickyNet(nn.Module):
    """One ReLU module called inside a block, just before the layer and after it (same shapes each time); an
    in-place write into a module's output before the layer (h.mul_(2)) that also feeds a skip connection."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.act = nn.ReLU()
        self.block = _Block(self.act)
        self.conv2, self.conv3 = nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        h = self.conv2(self.block(x))
        h.mul_(2.0)
        g = self.act(self.conv3(self.act(h))) + h
        return self.fc(g.mean((2, 3)))


@pytest.mark.parametrize("batch_size", [1, 4])
def test_ablationcam_replay_with_shared_modules_and_inplace_writes_matches_brute_force(batch_size, x):
    model = TrickyNet()
    res = gradcam.AblationCAM(model, layer="conv3", batch_size=batch_size)(x, target=1)
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        y = m(x)[:, 1]
        ws = []
        for c in range(6):
            h = m.conv3.register_forward_hook(lambda mod, i, o, c=c: o.index_fill(1, torch.tensor([c]), 0.0))
            ws.append((y - m(x)[:, 1]) / y)
            h.remove()
    w = torch.stack(ws, 1)
    assert (res.weights[:, 0] - w).abs().max().item() <= 1e-5 * w.abs().max().item()


def test_rise_matches_the_mask_sum_and_masks_are_bernoulli_grids(x):
    model = gap_net()
    rise = gradcam.RISE(model, n_masks=40, grid=4, p=0.5, seed=3, batch_size=16)
    res = rise(x, target=2)
    cells, shifts = rise._draw("cpu")
    masks = rise.masks(torch.arange(40), (16, 16), cells, shifts)
    assert masks.shape == (40, 16, 16) and masks.min() >= 0 and masks.max() <= 1
    # a mask is the 4x4 Bernoulli grid upsampled to 5 cells of 4 px, cropped at the drawn shift (< 4 px)
    big = F.interpolate(cells[:1, None], size=(20, 20), mode="bilinear", align_corners=False)[0, 0]
    sy, sx = int(shifts[0, 0] * 4), int(shifts[0, 1] * 4)
    assert torch.equal(masks[0], big[sy : sy + 16, sx : sx + 16])
    m = copy.deepcopy(model).double().eval()
    ref = torch.zeros(3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        for i in range(40):
            p = m(x.double() * masks[i].double()).softmax(1)[:, 2]
            ref += p[:, None, None] * masks[i].double()
    ref /= 0.5 * 40
    assert (res.raw[:, 0].double() - ref).abs().max().item() <= 1e-5
    close(res.maps[:, 0], ref)


# -- identities -------------------------------------------------------------------------------------------


def test_hirescam_equals_gradcam_on_a_gap_linear_head(x):
    model = gap_net()
    a = gradcam.HiResCAM(model, layer=LAYER)(x, top_k=2)
    b = gradcam.GradCAM(model, layer=LAYER)(x, top_k=2)
    assert (a.raw - b.raw).abs().max().item() <= 1e-6 * b.raw.abs().max().item()
    assert (a.maps - b.maps).abs().max().item() <= 1e-5
    # ... and differs from it on a fully connected head, where dy/dA varies over positions
    c = gradcam.HiResCAM(fc_net(), layer=LAYER)(x)
    d = gradcam.GradCAM(fc_net(), layer=LAYER)(x)
    assert (c.maps - d.maps).abs().max().item() > 0.1


def test_xgradcam_weights_equal_gradcam_weights_where_activations_are_constant_per_channel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5))
    x = torch.rand(2, 3, 1, 1).expand(2, 3, 4, 4).contiguous() + 0.5  # constant per channel
    xg = gradcam.XGradCAM(model, layer="0")(x, top_k=2)
    g = gradcam.GradCAM(model, layer="0")(x, top_k=2)
    assert (xg.weights - g.weights).abs().max().item() <= 1e-6 * g.weights.abs().max().item()
    assert g.weights.abs().max().item() > 1e-3


def test_eigencam_is_class_independent(x):
    model = fc_net()
    m = gradcam.EigenCAM(model, layer=LAYER)
    a, b = m(x, top_k=3), m(x, target=9)
    assert torch.equal(a.maps[:, 0], a.maps[:, 2]) and torch.equal(a.maps[:, 1], b.maps[:, 0])
    assert b.maps.amax((2, 3)).min().item() == 1.0  # not a flat map


def test_randomcam_is_seeded(x):
    model = fc_net()
    a = gradcam.RandomCAM(model, layer=LAYER, seed=1)(x, top_k=2)
    b = gradcam.RandomCAM(model, layer=LAYER, seed=1)(x, top_k=2)
    c = gradcam.RandomCAM(model, layer=LAYER, seed=2)(x, top_k=2)
    assert torch.equal(a.maps, b.maps) and (a.maps - c.maps).abs().max().item() > 0.1
    assert a.weights.shape == (3, 2, 16) and a.weights.abs().max().item() <= 1
    act = model.eval()[:SPLIT](x)
    close(a.raw[:, 1], torch.relu(torch.einsum("nc,nchw->nhw", a.weights[:, 1], act)))


# -- batching, top-k, model safety ------------------------------------------------------------------------

ALL = [
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
    "eigengradcam",
    "scorecam",
    "ablationcam",
    "rise",
    "random",
]


def build(name, model):
    kw = (
        {"n_masks": 24, "batch_size": 10}
        if name == "rise"
        else {"batch_size": 10}
        if name in ("scorecam", "ablationcam")
        else {}
    )
    return registry.get(name)(model, layer=LAYER, **kw)


@pytest.mark.parametrize("name", ALL)
def test_batched_equals_one_at_a_time_and_top_k_equals_separate_calls(name, x):
    model = fc_net()
    m = build(name, model)
    res = m(x, top_k=2)
    for n in range(3):
        one = m(x[n : n + 1], top_k=2)
        assert torch.equal(one.targets, res.targets[n : n + 1])
        if name != "random":  # RandomCAM draws per call: the same only for the same batch
            assert (one.maps - res.maps[n : n + 1]).abs().max().item() <= 1e-5
    for k in range(2):
        sep = m(x, target=res.targets[:, k])
        if name != "random":
            assert (sep.maps[:, 0] - res.maps[:, k]).abs().max().item() <= 1e-5


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [
            (m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks), "forward" in m.__dict__)
            for m in model.modules()
        ],
        [p.requires_grad for p in model.parameters()],
    )


def _same(s, t):
    assert s[0].keys() == t[0].keys() and all(torch.equal(s[0][k], t[0][k]) for k in s[0])
    assert s[1] == t[1] and s[2] == t[2]


@pytest.mark.parametrize("name", ALL)
def test_model_unchanged_afterwards_also_on_exception(name, x):
    model = ResBlockNet().train()
    model.fc.weight.requires_grad_(False)
    before = _snapshot(model)
    m = registry.get(name)(model, layer="bn", **({"n_masks": 8} if name == "rise" else {}))
    m(x, top_k=2)
    _same(before, _snapshot(model))
    calls = []

    def bad(out):  # fails on its second call (inside the perturbation passes for those methods)
        calls.append(1)
        if len(calls) > 1 or name not in ("scorecam", "ablationcam", "rise"):
            raise RuntimeError("target failed")
        return out[:, 0]

    with pytest.raises(RuntimeError, match="target failed"):
        m(x, target=bad)
    _same(before, _snapshot(model))
    assert model.training


# -- smoothing ----------------------------------------------------------------------------------------------


class FlipNet(nn.Module):
    """Horizontally symmetric kernels, no biases, GAP + linear: flip-equivariant and positively homogeneous."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.c1, self.c2 = (
            nn.Conv2d(3, 6, 3, padding=1, bias=False),
            nn.Conv2d(6, 8, 3, padding=1, bias=False),
        )
        with torch.no_grad():
            for c in (self.c1, self.c2):
                c.weight.copy_((c.weight + c.weight.flip(-1)) / 2)
        self.fc = nn.Linear(8, 5, bias=False)

    def forward(self, x):
        a = torch.relu(self.c2(torch.relu(self.c1(x))))
        return self.fc(a.mean((2, 3)))


@pytest.mark.parametrize("name", ["gradcam", "gradcam++", "hirescam", "layercam"])
def test_aug_smooth_maps_are_mapped_back_exactly(name, x):
    model = FlipNet()
    m = registry.get(name)(model, layer="c2")
    plain = m(x, top_k=2)
    smooth = m(x, top_k=2, aug_smooth=True)
    assert torch.equal(smooth.targets, plain.targets)
    assert (smooth.maps - plain.maps).abs().max().item() <= 1e-5
    # on an asymmetric model the augmented views do change the map
    other = registry.get(name)(fc_net(), layer=LAYER)
    a, b = other(x, top_k=3, aug_smooth=True), other(x, top_k=3)
    assert (a.maps - b.maps).abs().max().item() > 0.01
    assert torch.equal(a.targets, b.targets)  # the classes of the un-augmented images


def test_aug_smooth_refuses_callable_targets(x):
    with pytest.raises(ValueError, match="aug_smooth=True needs class targets"):
        gradcam.GradCAM(fc_net(), layer=LAYER, aug_smooth=True)(x, target=lambda out: out[:, 0])


@pytest.mark.parametrize("size", [16, 8])  # 8x8 positions > 16 channels, and 4x4 positions <= 16 channels
def test_eigen_smooth_matches_a_full_svd(size):
    torch.manual_seed(1)
    xs = torch.randn(2, 3, size, size)
    model = gap_net()
    res = gradcam.GradCAM(model, layer=LAYER)(xs, target=3, eigen_smooth=True)
    m = copy.deepcopy(model).double().eval()
    a = m[:SPLIT](xs.double()).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(m[SPLIT:](a)[:, 3].sum(), a)
    w = g.mean((2, 3))
    ref = torch.relu(svd_projection(w[:, :, None, None] * a.detach()))
    close(res.raw[:, 0], ref)
    assert (res.raw[:, 0].double() - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()  # the scale too
    assert (res.raw - gradcam.GradCAM(model, layer=LAYER)(xs, target=3).raw).abs().max().item() > 1e-3


def test_first_component_of_zero_terms_is_zero():
    assert torch.equal(first_component(torch.zeros(1, 2, 4, 3, 3)), torch.zeros(1, 2, 3, 3))


def test_layercam_fuses_layers_with_tanh_scaling_and_maximum(x):
    model = fc_net()
    res = gradcam.LayerCAM(model, layer=["1", LAYER])(x, target=0)
    scaled = []
    for e in res.per_layer.values():
        r = e.raw[:, 0] / e.raw[:, 0].amax((1, 2), keepdim=True)
        up = F.interpolate(torch.tanh(2 * r)[:, None], size=(16, 16), mode="bilinear", align_corners=False)
        scaled.append(up[:, 0])
    close(res.maps[:, 0], torch.maximum(*scaled))


def test_perturbation_methods_refuse_counterfactual(x):
    for cls in (gradcam.ScoreCAM, gradcam.AblationCAM):
        with pytest.raises(ValueError, match="uses no gradients"):
            cls(fc_net(), layer=LAYER)(x, counterfactual=True)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        gradcam.ScoreCAM(fc_net(), batch_size=0)


def test_registry_names_and_exports():
    for name, cls in [
        ("gradcam++", gradcam.GradCAMPlusPlus),
        ("xgradcam", gradcam.XGradCAM),
        ("hirescam", gradcam.HiResCAM),
        ("layercam", gradcam.LayerCAM),
        ("eigencam", gradcam.EigenCAM),
        ("eigengradcam", gradcam.EigenGradCAM),
        ("scorecam", gradcam.ScoreCAM),
        ("ablationcam", gradcam.AblationCAM),
        ("rise", gradcam.RISE),
        ("random", gradcam.RandomCAM),
    ]:
        assert registry.get(name) is cls and cls.name == name


def test_aug_smooth_in_several_passes_equals_one_pass(x, monkeypatch):
    from gradcam.methods import smoothing

    m = gradcam.LayerCAM(fc_net(), layer=["1", LAYER])
    monkeypatch.setattr(smoothing, "VIEW_BATCH", 64)  # 3 images x 6 views: one pass
    one = m(x, top_k=2, aug_smooth=True)
    monkeypatch.setattr(smoothing, "VIEW_BATCH", 4)  # 3 images: one view per pass
    several = m(x, top_k=2, aug_smooth=True)
    assert (one.maps - several.maps).abs().max().item() <= 1e-5
    assert (one.raw - several.raw).abs().max().item() <= 1e-5 * one.raw.abs().max().item()


@pytest.mark.parametrize("name", ["gradcam", "scorecam", "ablationcam"])
def test_aug_smooth_explains_the_classes_of_the_unaugmented_images(name, x):
    m = build(name, fc_net())
    plain = m(x, top_k=2)
    a = m(x, top_k=2, aug_smooth=True)
    b = m(x, target=plain.targets[:, 1], aug_smooth=True)
    assert torch.equal(a.targets, plain.targets) and torch.equal(b.targets[:, 0], plain.targets[:, 1])
    assert torch.allclose(a.scores, plain.scores, atol=1e-5)
    assert (a.maps[:, 1] - b.maps[:, 0]).abs().max().item() <= 1e-5


def test_scorecam_default_batch_fits_the_pixel_budget_and_does_not_change_the_maps(x):
    from gradcam.methods.perturbation import SCORE_PIXEL_BUDGET, auto_batch_size

    assert auto_batch_size((224, 224)) == SCORE_PIXEL_BUDGET // (224 * 224) == 5
    assert auto_batch_size((256, 384)) == 2 and auto_batch_size((4096, 4096)) == 1
    model = gap_net()
    default = gradcam.ScoreCAM(model, layer=LAYER)
    assert default.batch_size is None
    big = gradcam.ScoreCAM(model, layer=LAYER, batch_size=64)(x)
    torch.testing.assert_close(default(x).maps, big.maps, rtol=0, atol=1e-5)
