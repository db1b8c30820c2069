"""The peers' own implementations at the same layer and class: pytorch-grad-cam 1.5.7 (ShapleyCAM, FullGrad,
GradCAMElementWise, FinerCAM, KPCA_CAM, SegEigenCAM, RefineCAM) and torch-cam 0.5 (SmoothGradCAMpp, SSCAM,
ISCAM), to 1e-5 where the conventions match (docs/guides/peer-methods.md lists where they do not).

Collected with GRADCAM_COMPAT=1 where grad-cam and torchcam are installed (the ``bench`` extra)."""

import copy

import pytest
import torch
from torch import nn

pgc = pytest.importorskip("pytorch_grad_cam")
torchcam = pytest.importorskip("torchcam")

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam.explanation import normalize  # noqa: E402
from gradcam.methods import registry  # noqa: E402

TOL = 1e-5


def net(scale: float = 1.0):
    """conv-BN-ReLU - conv-BN-SiLU (tapped: "5") - conv-BN-SiLU ("8") - GAP - linear: curved after the layers.

    ``scale`` multiplies the head's weights: gradients ``scale`` times larger make the peers' fixed epsilons
    (pytorch-grad-cam: 1e-6 in Grad-CAM++'s alpha, 1e-7 in its min-max scaling) negligible, so the formulas
    themselves are compared."""
    torch.manual_seed(0)
    layers = []
    for cin, cout, act in ((3, 8, nn.ReLU), (8, 12, nn.SiLU), (12, 16, nn.SiLU)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, stride=2), nn.BatchNorm2d(cout), act()]
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 6))
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model[-1].weight.mul_(scale)
    return model.eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ("shapleycam", "ShapleyCAM"),
        ("gradcam-elementwise", "GradCAMElementWise"),
        ("segeigencam", "SegEigenCAM"),
    ],
)
def test_single_layer_methods_match_pytorch_grad_cam(ours, theirs, x):
    model = net()
    res = registry.get(ours)(model, layer="5")(x)
    ids = res.targets[:, 0]
    cls = getattr(pgc, theirs)
    m = copy.deepcopy(model)
    with cls(model=m, target_layers=[m.get_submodule("5")]) as cam:
        ref = torch.from_numpy(
            cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in ids])
        )
    assert (res.maps[:, 0] - ref).abs().max().item() <= TOL


def test_shapleycam_differs_from_gradcam_on_this_net(x):
    model = net()
    a = registry.get("shapleycam")(model, layer="5")(x)
    b = registry.get("gradcam")(model, layer="5")(x)
    assert (a.maps - b.maps).abs().max().item() > 0.01  # the comparison above is not Grad-CAM's


def test_fullgrad_matches_pytorch_grad_cam(x):
    model = net(scale=1e5)
    res = registry.get("fullgrad")(model)(x)
    m = copy.deepcopy(model)
    with pgc.FullGrad(model=m, target_layers=[]) as cam:
        ref = torch.from_numpy(
            cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in res.targets[:, 0]])
        )
    assert (res.maps[:, 0] - ref).abs().max().item() <= TOL


def test_finercam_matches_pytorch_grad_cam(x):
    model = net()
    res = registry.get("finercam")(model, layer="5", comparisons=3, alpha=1.0)(x)
    m = copy.deepcopy(model)
    with pgc.FinerCAM(model=m, target_layers=[m.get_submodule("5")]) as cam:
        ref = torch.from_numpy(cam(input_tensor=x.clone(), targets=None, alpha=1.0))
    assert (res.maps[:, 0] - ref).abs().max().item() <= TOL


@pytest.mark.parametrize("kernel,gamma", [("sigmoid", None), ("rbf", 0.05)])
def test_kpcacam_matches_pytorch_grad_cam_up_to_the_components_sign(kernel, gamma, x):
    model = net()
    res = registry.get("kpcacam")(model, layer="5", kernel=kernel, gamma=gamma)(x)
    m = copy.deepcopy(model)
    with pgc.KPCA_CAM(model=m, target_layers=[m.get_submodule("5")], kernel=kernel, gamma=gamma) as cam:
        ref = torch.from_numpy(cam(input_tensor=x.clone(), targets=None))
    # scikit-learn fixes the component's sign by its largest entry, gradcam by the channel sum: compare each
    # image with the reference map of the same sign (pytorch-grad-cam keeps the ReLU'd side either way).
    with pgc.KPCA_CAM(model=m, target_layers=[m.get_submodule("5")], kernel=kernel, gamma=gamma) as cam:
        cam.activations_and_grads(x.clone())
        acts = cam.activations_and_grads.activations[0].numpy()
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_kernel

    proj = torch.from_numpy(get_2d_projection_kernel(acts, kernel, gamma))
    ours = res.raw[:, 0]
    for n in range(x.shape[0]):
        p = proj[n] if float((proj[n] * ours[n]).sum()) >= 0 else -proj[n]
        assert (
            normalize(ours[n].unsqueeze(0)) - normalize(torch.relu(p).unsqueeze(0))
        ).abs().max().item() <= TOL
    assert ref.shape == res.maps[:, 0].shape


def test_refinecam_matches_pytorch_grad_cam(x):
    model = net(scale=1e5)
    res = registry.get("refinecam")(model, layer=["5", "8"])(x)
    m = copy.deepcopy(model)
    cam = pgc.RefineCAM(model=m, target_layers=[m.get_submodule("5"), m.get_submodule("8")])
    ref = torch.from_numpy(
        cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in res.targets[:, 0]])
    )
    assert (res.maps[:, 0] - ref).abs().max().item() <= TOL


# -- torch-cam ------------------------------------------------------------------------------------------


class _Draws:
    """A stand-in for torch-cam's ``_distrib``: hands out given noise tensors in order."""

    def __init__(self, draws):
        self.draws = list(draws)

    def sample(self, size):
        d = self.draws.pop(0)
        assert tuple(d.shape) == tuple(size)
        return d


def torchcam_run(cls, model, layer, x, ids, draws=None, eps=None, **kw):
    """torch-cam's weights (N, C) and normalised maps (N, h, w) at the layer's resolution."""
    from torchcam import methods

    m = copy.deepcopy(model)
    got = {}
    with getattr(methods, cls)(m, layer, input_shape=tuple(x.shape[1:]), **kw) as ext:
        if draws is not None:
            ext._distrib = _Draws(draws)
        original = ext._get_weights

        def spy(*args, **kwargs):
            got["w"] = original(*args, **kwargs)
            return got["w"]

        ext._get_weights = spy
        out = m(x.clone())
        cams = ext(class_idx=[int(c) for c in ids], scores=out, **({"eps": eps} if eps is not None else {}))
    # torch-cam divides by (max + 1e-8) after subtracting the min: normalised again, its maps are exact min-max
    return got["w"][0], normalize(cams[0].unsqueeze(1))[:, 0]


def test_iscam_matches_torchcam(x):
    model = net()
    res = registry.get("iscam")(model, layer="5", samples=4)(x)
    w, cam = torchcam_run("ISCAM", model, "5", x, res.targets[:, 0], num_samples=4, batch_size=16)
    assert (res.weights[:, 0] - w).abs().max().item() <= TOL
    assert (normalize(res.raw[:, 0]) - cam).abs().max().item() <= TOL


def test_sscam_matches_torchcam_with_the_same_noise(x):
    model = net()
    method = registry.get("sscam")(model, layer="5", samples=3, std=0.7, seed=2)
    res = method(x)
    c = 12
    draws = [
        torch.stack(
            [torch.stack([method.noise(s, ch, (32, 32), torch.float32, "cpu") for ch in range(c)])] * 3
        )
        * 0.7
        for s in range(3)
    ]
    w, cam = torchcam_run("SSCAM", model, "5", x, res.targets[:, 0], draws=draws, num_samples=3, std=0.7)
    assert (res.weights[:, 0] - w).abs().max().item() <= TOL
    assert (normalize(res.raw[:, 0]) - cam).abs().max().item() <= TOL


def test_smoothgradcampp_matches_torchcam_where_its_alpha_denominator_is_the_papers(x):
    # torch-cam's alpha denominator is 2 D2_ij + sum_ab A_ab D3_ab (one number per channel); the paper's (and
    # gradcam's) is 2 D2_ij + (sum_ab A_ab) D3_ij. They coincide where the gradient is constant over the
    # positions: the last layer before global average pooling ("8").
    model = net()
    plain = registry.get("smoothgradcam++")(model, layer="8", std=0.0)(x)
    ids = plain.targets[:, 0]
    zeros = [torch.zeros_like(x)] * 4
    # eps: torch-cam adds 1e-8 to alpha's denominator (about g^2 here); 1e-30 keeps only 0/0 at 0
    w, cam = torchcam_run("SmoothGradCAMpp", model, "8", x, ids, draws=zeros, eps=1e-30, num_samples=4)
    assert (plain.weights[:, 0] - w).abs().max().item() <= TOL * float(w.abs().max())
    assert (normalize(plain.raw[:, 0]) - cam).abs().max().item() <= TOL


def test_smoothgradcampp_noisy_gradients_are_torchcams_for_the_same_draws(x):
    from gradcam import engine

    model = net()
    method = registry.get("smoothgradcam++")(model, layer="5", samples=3, std=0.3, seed=4)
    res = method(x)
    ids = res.targets[:, 0]
    e = method.noise(x.shape[1:], x.dtype, "cpu") * 0.3
    seen = []
    from torchcam import methods

    m = copy.deepcopy(model)
    with methods.SmoothGradCAMpp(m, "5", num_samples=3, std=0.3, input_shape=tuple(x.shape[1:])) as ext:
        ext._distrib = _Draws([d.expand_as(x).clone() for d in e])
        backprop = ext._backprop

        def spy(*args, **kwargs):
            backprop(*args, **kwargs)
            seen.append(ext.hook_g[0].clone())

        ext._backprop = spy
        m(x.clone())
        ext(class_idx=[int(c) for c in ids])
    theirs = torch.stack(seen)  # (samples, N, C, h, w): torch-cam's gradient at each noisy input
    cap = engine.capture(model, x, method.layers_for(x), target=ids.view(-1, 1))
    d1, d2, d3 = method._moments(x, cap, ids.view(-1, 1), False, None)[0]
    for ours, ref in ((d1, theirs.mean(0)), (d2, (theirs**2).mean(0)), (d3, (theirs**3).mean(0))):
        assert (ours[:, 0] - ref).abs().max().item() <= TOL * float(ref.abs().max())
