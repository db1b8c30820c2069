"""The methods other libraries ship (pytorch-grad-cam, Captum), on the one engine: each against a float64
reference written from its paper, and Captum where its convention matches."""

import copy

import pytest
import torch
import torch.nn.functional as F
from nets import fc_net, gap_net
from torch import nn

from gradcam.explanation import normalize, upsample
from gradcam.methods import registry
from gradcam.methods.attribution import GradientXInput, IntegratedGradients, SmoothGrad, VarGrad
from gradcam.methods.elementwise import GradCAMElementWise
from gradcam.methods.finer import FinerCAM, finer_target
from gradcam.methods.fullgrad import FullGrad
from gradcam.methods.gradients import HiResCAM
from gradcam.methods.kernel_pca import KPCACAM, kernel_pca_projection

SPLIT = 5  # fc_net / gap_net: layer "4" is the ReLU after the second conv


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(3, 3, 16, 16)


def signed_net(seed=3, act=nn.ReLU):
    """A CNN whose layer "4" is a BatchNorm output (signed), then ``act``, a conv, tanh and a linear head."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        act(),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        act(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(8 * 16 * 16, 5),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


def input_grad64(model, x, cls):
    m = copy.deepcopy(model).double().eval()
    xx = x.double().requires_grad_(True)
    y = m(xx)
    (g,) = torch.autograd.grad(y.gather(1, cls.view(-1, 1)).sum(), xx)
    return g, y.detach()


def test_gradient_x_input_matches_captum_and_is_exact_on_a_linear_model(x):
    from captum.attr import InputXGradient

    net = fc_net(5)
    cls = net(x).argmax(1)
    ours = GradientXInput(net)(x)
    ref = InputXGradient(copy.deepcopy(net).eval()).attribute(x.clone(), target=cls)
    assert (ours.pixels[:, 0] - ref).abs().max().item() <= 1e-6
    torch.manual_seed(1)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 4))
    res = GradientXInput(lin)(x, target=2)
    expected = lin[1].weight[2].reshape(3, 16, 16) * x
    assert (res.pixels[:, 0] - expected).abs().max().item() <= 1e-6


@pytest.mark.parametrize("baseline", ["black", "blurred", 0.3])
def test_integrated_gradients_completeness_and_captum(baseline, x):
    from captum.attr import IntegratedGradients as CaptumIG

    net = signed_net(act=nn.Softplus)  # smooth: the trapezoid rule's error is O(1/m^2), not the kinks' O(1/m)
    ig = IntegratedGradients(net, steps=64, baseline=baseline, batch_size=50)
    res = ig(x)
    cls = res.targets[:, 0]
    base = __import__("gradcam.methods.attribution", fromlist=["baseline_for"]).baseline_for(x, baseline)
    with torch.no_grad():
        gap = (net(x) - net(base)).gather(1, cls.view(-1, 1)).squeeze(1)
    total = res.pixels[:, 0].flatten(1).sum(1)
    assert ((total - gap).abs() / gap.abs()).max().item() <= 1e-3  # completeness at 64 steps
    ref = CaptumIG(copy.deepcopy(net)).attribute(
        x.clone(), baselines=base, target=cls, n_steps=65, method="riemann_trapezoid"
    )
    # Captum's trapezoid weights are 1/n on n points (their sum is (n-1)/n, so its IG misses completeness by
    # 1/n); ours are 1/m on m = n - 1 intervals. The same path and gradients: ours = Captum's * n / (n - 1).
    ref = ref * 65 / 64
    assert (res.pixels[:, 0] - ref).abs().max().item() <= 1e-5 * ref.abs().max().item()


def test_integrated_gradients_is_batched_and_the_path_keeps_the_clean_top1(x):
    net = signed_net()
    ig = IntegratedGradients(net, steps=8, batch_size=7)  # chunks that split the path
    whole = ig(x, top_k=2)
    for i in range(x.shape[0]):
        one = ig(x[i : i + 1], target=whole.targets[i : i + 1])
        assert (one.pixels - whole.pixels[i : i + 1]).abs().max().item() <= 1e-6
    assert torch.equal(whole.targets, net(x).topk(2, dim=1).indices)


def test_smoothgrad_with_zero_noise_is_the_plain_gradient_and_matches_a_reference(x):
    net = signed_net()
    cls = net(x).argmax(1)
    g64, _ = input_grad64(net, x, cls)
    plain = SmoothGrad(net, samples=3, noise=0.0)(x)
    assert torch.equal(plain.pixels, __import__("gradcam").Gradient(net)(x).pixels)
    sg = SmoothGrad(net, samples=6, noise=0.2, seed=7, batch_size=4)
    res = sg(x)
    # reference: the same noise draws, each gradient in float64
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1)
    eps = torch.randn((x.shape[0], 6, *x.shape[1:]), generator=torch.Generator().manual_seed(7)).transpose(
        0, 1
    )
    grads = torch.stack([input_grad64(net, x + e * 0.2 * span, cls)[0] for e in eps])
    assert (res.pixels[:, 0].double() - grads.mean(0)).abs().max().item() <= 1e-5
    var = VarGrad(net, samples=6, noise=0.2, seed=7, batch_size=4)(x)
    assert (var.pixels[:, 0].double() - grads.var(0, correction=0)).abs().max().item() <= 1e-6
    assert not torch.equal(res.maps, plain.maps)  # the noise changes the map
    assert torch.equal(sg(x).pixels, res.pixels)  # seeded: deterministic


def test_gradcam_elementwise_differs_from_hirescam_on_a_signed_layer(x):
    net = signed_net()
    layer = "4"  # the second BatchNorm: signed activations
    m = copy.deepcopy(net).double()
    a = m[:5](x.double()).detach().requires_grad_(True)
    y = m[5:](a)
    cls = y.argmax(1)
    (g,) = torch.autograd.grad(y.gather(1, cls.view(-1, 1)).sum(), a)
    ref = torch.relu(g * a.detach()).sum(1, keepdim=True)
    ours = GradCAMElementWise(net, layer)(x)
    assert (normalize(ours.raw.double()) - normalize(ref)).abs().max().item() <= 2e-5
    hires = HiResCAM(net, layer)(x)
    assert (normalize(hires.raw) - normalize(ours.raw)).abs().max().item() > 0.05


def _sk_kernel_pca(a, kernel, gamma):
    """An independent float64 kernel PCA per image (numpy eig of the centred Gram matrix)."""
    import numpy as np

    out = []
    for img in a.double().numpy():
        xx = img.reshape(img.shape[0], -1).T
        xx = xx - xx.mean(0)
        g = 1.0 / xx.shape[1] if gamma is None else gamma
        if kernel == "sigmoid":
            k = np.tanh(g * xx @ xx.T + 1)
        else:
            d = ((xx[:, None, :] - xx[None, :, :]) ** 2).sum(-1)
            k = np.exp(-g * d)
        p = k.shape[0]
        one = np.full((p, p), 1.0 / p)
        kc = k - one @ k - k @ one + one @ k @ one
        vals, vecs = np.linalg.eigh(kc)
        proj = vecs[:, -1] * np.sqrt(max(vals[-1], 0))
        if (proj * img.reshape(img.shape[0], -1).sum(0)).sum() < 0:
            proj = -proj
        out.append(proj.reshape(img.shape[1:]))
    return torch.tensor(np.stack(out))


@pytest.mark.parametrize("kernel,gamma", [("sigmoid", None), ("rbf", 0.05)])
def test_kpcacam_matches_an_independent_kernel_pca(kernel, gamma, x):
    net = gap_net(5).eval()
    a = net[:4](x).detach()
    proj = kernel_pca_projection(a, kernel, gamma)
    ref = _sk_kernel_pca(a, kernel, gamma)
    assert (proj.double() - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
    res = KPCACAM(net, "3", kernel=kernel, gamma=gamma)(x, top_k=2)
    assert torch.equal(res.raw[:, 0], res.raw[:, 1])  # class-independent
    assert (normalize(res.raw[:, 0].double()) - normalize(torch.relu(ref))).abs().max().item() <= 1e-4


def test_finer_target_formula_and_finercam_map(x):
    net = fc_net(6)
    y = net(x).detach().double()
    s = finer_target(None, comparisons=2, alpha=0.7)(y)
    for n in range(x.shape[0]):
        c = int(y[n].argmax())
        others = sorted((j for j in range(6) if j != c), key=lambda j: abs(float(y[n, j] - y[n, c])))[:2]
        p = torch.softmax(y[n], 0)
        ref = sum(p[j] * (y[n, c] - 0.7 * y[n, j]) for j in others) / (sum(p[j] for j in others) + 1e-9)
        assert abs(float(s[n, 0]) - float(ref)) <= 1e-9
    res = FinerCAM(net, "4", comparisons=2, alpha=0.7)(x)
    assert torch.equal(res.targets[:, 0], net(x).argmax(1))
    m = copy.deepcopy(net).double()
    a = m[:SPLIT](x.double()).detach().requires_grad_(True)
    score = finer_target(None, comparisons=2, alpha=0.7)(m[SPLIT:](a))
    (g,) = torch.autograd.grad(score.sum(), a)
    ref_map = torch.relu((g.mean((2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
    assert (normalize(res.raw.double()) - normalize(ref_map)).abs().max().item() <= 2e-5
    plain = FinerCAM(net, "4", alpha=0.0)(x)  # alpha = 0: Grad-CAM of y_c
    gc = registry.get("gradcam")(net, layer="4")(x)
    assert (normalize(plain.raw) - normalize(gc.raw)).abs().max().item() <= 1e-5


def test_fullgrad_matches_the_papers_sum_and_is_class_specific(x):
    net = signed_net()
    with (
        torch.no_grad()
    ):  # psi normalises each channel, so only a zero bias shows: make one BN channel's zero
        bn = net[4]
        bn.eps = 0.0
        bn.running_var[0], bn.weight[0], bn.running_mean[0], bn.bias[0] = 1.0, 1.0, 0.25, 0.25  # exactly 0
    res = FullGrad(net)(x, top_k=2)
    m = copy.deepcopy(net).double().eval()
    xx = x.double().requires_grad_(True)
    outs, h = {}, xx
    for i, layer in enumerate(m):
        h = layer(h)
        if isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)):
            h.retain_grad()
            outs[i] = h
    for k in range(2):
        cls = res.targets[:, k]
        grads = torch.autograd.grad(
            h.gather(1, cls.view(-1, 1)).sum(), [xx] + list(outs.values()), retain_graph=True
        )
        total = normalize((grads[0] * xx.detach()).abs()).sum(1)
        for i, g in zip(outs, grads[1:]):
            layer = m[i]
            if isinstance(
                layer, nn.BatchNorm2d
            ):  # gamma (z - mu) / sqrt(var + eps) + beta: its constant part
                b = layer.bias - layer.weight * layer.running_mean / (layer.running_var + layer.eps).sqrt()
            else:
                b = layer.bias
            b = b.detach().view(1, -1, 1, 1)
            term = normalize((g * b).abs()).sum(1, keepdim=True)
            total = total + F.interpolate(term, size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
        assert (res.maps[:, k].double() - normalize(total)).abs().max().item() <= 1e-5
    assert (res.maps[:, 0] - res.maps[:, 1]).abs().max().item() > 1e-3


@pytest.mark.parametrize(
    "name",
    [
        "gradient-x-input",
        "integrated-gradients",
        "smoothgrad",
        "vargrad",
        "gradcam-elementwise",
        "kpcacam",
        "finercam",
        "fullgrad",
    ],
)
def test_new_methods_are_registered_leave_the_model_unchanged_and_refuse_what_they_cannot_do(name, x):
    net = signed_net()
    before = copy.deepcopy(net.state_dict())
    net.train()
    method = registry.get(name)(net, layer="auto")
    res = method(x)
    assert res.maps.shape == (3, 1, 16, 16) and bool(torch.isfinite(res.maps).all())
    assert net.training and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    if name in ("gradient-x-input", "integrated-gradients", "smoothgrad", "vargrad", "fullgrad"):
        with pytest.raises(ValueError, match="aug_smooth"):
            method(x, aug_smooth=True)
    with pytest.raises(ValueError, match="eigen_smooth"):
        if name in ("gradcam-elementwise", "finercam"):
            raise ValueError("eigen_smooth is supported here")  # supported by the CAM base; nothing to refuse
        method(x, eigen_smooth=True)


def test_upsample_used_by_fullgrad_is_linear():
    t = torch.rand(2, 3, 4, 4)
    a = upsample(t, (16, 16)).sum(1)
    b = upsample(t.sum(1, keepdim=True), (16, 16))[:, 0]
    assert (a - b).abs().max().item() <= 1e-5


def test_nmf_recovers_a_planted_factorisation():
    from gradcam.methods.factorization import nmf

    g = torch.Generator().manual_seed(0)
    w0 = torch.rand(12, 3, generator=g, dtype=torch.float64)
    h0 = torch.rand(3, 40, generator=g, dtype=torch.float64)
    v = w0 @ h0
    w, h = nmf(v, 3, iterations=2000, tol=0)
    assert ((w @ h - v).norm() / v.norm()).item() <= 2e-3
    assert bool((w >= 0).all() and (h >= 0).all())
    w2, h2 = nmf(v, 3, iterations=2000, tol=0)
    assert torch.equal(w, w2) and torch.equal(h, h2)  # seeded: deterministic


class _Planted(nn.Module):
    """Layer "feat" outputs two planted concepts: channels 0-1 on the left half, channels 2-3 on the right."""

    def __init__(self):
        super().__init__()
        self.feat = nn.Identity()
        self.fc = nn.Linear(4, 3, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 0, 0], [0, 0, 1.0, 1.0], [0.1, 0.1, 0.1, 0.1]]))

    def forward(self, x):
        a = self.feat(x)
        return self.fc(a.mean((2, 3)))


def test_dff_finds_planted_concepts_and_names_their_classes():
    from gradcam.methods.factorization import DeepFeatureFactorization

    x = torch.zeros(2, 4, 8, 8)
    x[:, 0:2, :, :4] = 1.0
    x[:, 2:4, :, 4:] = 2.0
    x[1, 2:4] *= 0.5
    res = DeepFeatureFactorization(_Planted(), "feat", concepts=2, iterations=500)(x)
    assert res.maps.shape == (2, 2, 8, 8) and res.concepts.shape == (2, 4)
    left = int(res.concepts[:, 0].argmax())  # the concept made of channels 0-1
    assert res.maps[0, left, :, :4].min() > 0.99 and res.maps[0, left, :, 4:].max() < 0.01
    assert res.maps[0, 1 - left, :, 4:].min() > 0.99 and res.maps[0, 1 - left, :, :4].max() < 0.01
    assert res.top_classes(1)[left, 0].item() == 0 and res.top_classes(1)[1 - left, 0].item() == 1
    assert torch.equal(res.targets[0], res.targets[1])
    with pytest.raises(ValueError, match="concepts, not classes"):
        DeepFeatureFactorization(_Planted(), "feat")(x, target=1)


def test_refinecam_is_the_product_of_the_layers_normalised_gradcampp_maps(x):
    from gradcam.methods.gradients import GradCAMPlusPlus
    from gradcam.methods.multilayer import RefineCAM

    net = signed_net()
    layers = ["2", "5"]
    res = RefineCAM(net, layers)(x, top_k=2)
    parts = [GradCAMPlusPlus(net, layer)(x, top_k=2).maps for layer in layers]
    ref = normalize(parts[0] * parts[1])
    assert (res.maps - ref).abs().max().item() <= 1e-6
    single = RefineCAM(net, "5")(x)
    assert (single.maps - GradCAMPlusPlus(net, "5")(x).maps).abs().max().item() <= 1e-6
    mean_fused = normalize((parts[0] + parts[1]) / 2)  # what the default multi-layer fusion would give
    assert (res.maps - mean_fused).abs().max().item() > 0.05


def test_segeigencam_is_the_signed_principal_component_of_abs_gradient_times_activation(x):
    from gradcam.methods.eigen import EigenGradCAM
    from gradcam.methods.multilayer import SegEigenCAM
    from gradcam.targets import segmentation

    torch.manual_seed(4)
    seg = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(8, 3, 1),
    ).eval()
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:10, 4:10] = True
    target = segmentation(1, mask)
    res = SegEigenCAM(seg, "2")(x, target=target)
    m = copy.deepcopy(seg).double()
    a = m[:3](x.double()).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(target(m[3:](a)).sum(), a)
    for n in range(x.shape[0]):
        t = (g[n].abs() * a[n].detach()).reshape(8, -1).T  # (positions, channels): |g| * A (Eq. 10)
        t = t - t.mean(0)
        _, _, vt = torch.linalg.svd(t, full_matrices=False)
        proj = t @ vt[0]
        if proj.min().abs() > proj.max().abs():  # Eq. 13: the salient side positive
            proj = -proj
        ref = normalize(torch.relu(proj.reshape(16, 16)))
        assert (res.maps[n, 0].double() - ref).abs().max().item() <= 1e-5
    assert res.method == "segeigencam"
    egc = EigenGradCAM(seg, "2")(x, target=target)  # g * A, sign by correlation: a different map
    assert (egc.maps - res.maps).abs().max().item() > 0.05


def test_segeigencam_flips_the_component_where_its_negative_side_is_larger():
    from gradcam import engine
    from gradcam.methods.multilayer import SegEigenCAM

    # one channel, |g| * A = 1 everywhere but 0 at one position: the component (sign: positive correlation with
    # the terms) is 1 - mean, small and positive except a large negative value there; Eq. 13 flips it.
    a = torch.ones(1, 1, 4, 4)
    a[0, 0, 2, 3] = 0.0
    g = -torch.ones(1, 1, 1, 4, 4)  # the absolute gradient: negative gradients count as evidence
    cap = engine.Capture(output=None, scores=torch.zeros(1, 1), targets=torch.zeros(1, 1, dtype=torch.long),
                         layers=[], activations=[a], gradients=[g])  # fmt: skip
    m, _ = SegEigenCAM(nn.Sequential(nn.Identity()), "0")._map(cap, 0)
    assert torch.relu(m)[0, 0].nonzero().tolist() == [[2, 3]]
    assert abs(float(m[0, 0, 2, 3]) - 15 / 16) <= 1e-6


def test_dff_in_the_class_tables_answers_with_the_concept_its_head_scores_highest_for_the_class():
    from gradcam.evaluation.concepts import ConceptClassMaps
    from gradcam.methods.factorization import DeepFeatureFactorization

    x = torch.zeros(2, 4, 8, 8)
    x[:, 0:2, :, :4] = 1.0
    x[:, 2:4, :, 4:] = 2.0
    method = DeepFeatureFactorization(_Planted(), "feat", concepts=2, iterations=500)
    res = method(x)
    adapted = ConceptClassMaps(method)(x, target=torch.tensor([[0, 1], [1, 0]]))
    left = int(res.concepts[:, 0].argmax())  # channels 0-1: class 0's concept (fc row 0)
    assert adapted.maps.shape == (2, 2, 8, 8)
    assert torch.equal(adapted.maps[0, 0], res.maps[0, left]) and torch.equal(
        adapted.maps[0, 1], res.maps[0, 1 - left]
    )
    assert torch.equal(adapted.maps[1, 0], res.maps[1, 1 - left]) and torch.equal(
        adapted.maps[1, 1], res.maps[1, left]
    )
    # class 2 scores both concepts alike (fc row 2 is flat) and still gets one concept's map, never a blend
    two = ConceptClassMaps(method)(x, target=torch.tensor([[2], [2]])).maps
    assert any(torch.equal(two[0, 0], res.maps[0, k]) for k in range(2))
    with pytest.raises(ValueError, match="needs target"):
        ConceptClassMaps(method)(x)
