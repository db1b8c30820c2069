"""Guided backpropagation, Guided Grad-CAM, plain gradients and the pixel-space helpers."""

import pytest
import torch
import torch.nn.functional as F
from nets import fc_net
from torch import nn

import gradcam
from gradcam import engine
from gradcam.explanation import normalize
from gradcam.layers import resolve_layers
from gradcam.methods import registry
from gradcam.methods.guided import GuidedReLUMode, relu_like
from gradcam.models import load_model
from gradcam.pixels import PixelExplanation, saliency, to_image


def _act(kind: str):
    """One ReLU(6)-like activation written in the way ``kind`` names."""
    return {
        "module": nn.ReLU(),
        "module-inplace": nn.ReLU(inplace=True),
        "F.relu": F.relu,
        "F.relu-inplace": lambda t: F.relu(t, inplace=True),
        "torch.relu": torch.relu,
        "relu_": lambda t: t.relu_(),
        "clamp": lambda t: torch.clamp(t, min=0),
        "clamp-method": lambda t: t.clamp(0),
        "clamp_min": lambda t: t.clamp_min(0),
        "threshold": lambda t: F.threshold(t, 0, 0),
        "hardtanh-0-inf": lambda t: F.hardtanh(t, 0.0, 1e30),
        "relu6-module": nn.ReLU6(),
        "relu6-module-inplace": nn.ReLU6(inplace=True),
        "F.relu6": F.relu6,
        "clamp-0-6": lambda t: torch.clamp(t, 0, 6),
        "hardtanh-0-6": lambda t: F.hardtanh(t, 0.0, 6.0),
        "clip_-0-6": lambda t: t.clip_(0, 6),
        "clip-0-6": lambda t: t.clip(0, 6),
        "torch.clip-0-6": lambda t: torch.clip(t, 0, 6),
        "clip-min-0": lambda t: t.clip(min=0),
    }[kind]


class ActNet(nn.Module):
    """conv -> act -> conv -> act -> mean -> linear -> act -> linear, activation written as ``kind``."""

    def __init__(self, kind: str = "module", seed: int = 0, scale: float = 1.0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 5)
        self.scale = scale
        acts = [_act(kind) for _ in range(3)]
        for i, a in enumerate(acts):
            if isinstance(a, nn.Module):
                self.add_module(f"act{i}", a)
        self._acts = [a if not isinstance(a, nn.Module) else None for a in acts]

    def a(self, i: int, t: torch.Tensor) -> torch.Tensor:
        f = self._acts[i] or getattr(self, f"act{i}")
        return f(t)

    def forward(self, x):
        x = self.a(1, self.c2(self.a(0, self.c1(x * self.scale))))
        return self.fc2(self.a(2, self.fc1(x.mean((2, 3)) * 4)))


def _x(n=3, size=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_guided_backprop_matches_captum():
    from captum.attr import GuidedBackprop as CaptumGuided

    model, x = ActNet("module"), _x()
    res = gradcam.GuidedBackprop(model)(x, top_k=2)
    assert isinstance(res, PixelExplanation) and res.pixels.shape == (3, 2, 3, 12, 12)
    for k in range(2):
        ref = CaptumGuided(model).attribute(x, target=res.targets[:, k].tolist())
        assert (res.pixels[:, k] - ref).abs().max() <= 1e-5
    plain = gradcam.Gradient(model)(x, top_k=2).pixels
    assert (res.pixels - plain).abs().max() > 1e-3  # the guided rule changed something


@pytest.mark.parametrize(
    "kind",
    [
        "module-inplace",
        "F.relu",
        "F.relu-inplace",
        "torch.relu",
        "relu_",
        "clamp",
        "clamp-method",
        "clamp_min",
        "threshold",
        "hardtanh-0-inf",
        "clip-min-0",
    ],
)
def test_functional_relu_forms_give_the_module_map(kind):
    x = _x()
    ref = gradcam.GuidedBackprop(ActNet("module"))(x, target=[0, 2, 4])
    res = gradcam.GuidedBackprop(ActNet(kind))(x, target=[0, 2, 4])
    assert torch.allclose(res.pixels, ref.pixels, atol=1e-6, rtol=0)
    assert torch.equal(res.maps, ref.maps) or torch.allclose(res.maps, ref.maps, atol=1e-5)


@pytest.mark.parametrize(
    "kind",
    [
        "relu6-module-inplace",
        "F.relu6",
        "clamp-0-6",
        "hardtanh-0-6",
        "clip_-0-6",
        "clip-0-6",
        "torch.clip-0-6",
    ],
)
def test_relu6_forms_agree_and_are_guided(kind):
    x = _x()
    ref_model = ActNet("relu6-module", scale=3.0)  # scaled so that some units exceed 6
    ref = gradcam.GuidedBackprop(ref_model)(x, target=1).pixels
    res = gradcam.GuidedBackprop(ActNet(kind, scale=3.0))(x, target=1).pixels
    assert torch.allclose(res, ref, atol=1e-6, rtol=0)
    plain = gradcam.Gradient(ref_model)(x, target=1).pixels
    assert (ref - plain).abs().max() > 1e-3


def test_relu_like_classifies_calls():
    t = torch.zeros(2)
    assert relu_like(F.relu, (t,), {"inplace": True}) == (t, None, True)
    assert relu_like(torch.clamp, (t,), {"min": 0, "max": 6}) == (t, 6.0, False)
    assert relu_like(F.hardtanh, (t,), {"min_val": 0.0, "max_val": 6.0, "inplace": False}) == (t, 6.0, False)
    assert relu_like(torch.Tensor.clamp_min_, (t, 0), {}) == (t, None, True)
    for func, args, kwargs in [
        (torch.clamp, (t,), {"min": -1}),
        (torch.clamp, (t,), {"max": 1}),
        (torch.clamp, (t,), {"min": torch.tensor(0.0)}),
        (F.hardtanh, (t,), {"min_val": -1.0, "max_val": 1.0, "inplace": False}),
        (F.threshold, (t, 0.5, 0.0), {}),
        (F.leaky_relu, (t,), {}),
        (torch.sigmoid, (t,), {}),
    ]:
        assert relu_like(func, args, kwargs) is None, func


def _relu6_input_grads(model, method, x):
    """Gradients arriving at the input of every nn.ReLU6 call, recorded with tensor hooks."""
    grads, handles = [], []

    def fwd(mod, inp, out):
        if inp[0].requires_grad:
            inp[0].register_hook(grads.append)

    for m in model.modules():
        if isinstance(m, nn.ReLU6):
            handles.append(m.register_forward_hook(fwd))
    try:
        res = method(model)(x)
    finally:
        for h in handles:
            h.remove()
    return res, grads


@pytest.fixture(scope="module")
def lite0():
    from skimage import data
    from skimage.transform import resize

    loaded = load_model("efficientnet-lite0")
    img = torch.from_numpy(resize(data.chelsea(), (128, 192), anti_aliasing=True)).float()  # RGB in [0, 1]
    x = ((img.permute(2, 0, 1) - 0.5) / 0.5).unsqueeze(0)  # the checkpoint's normalisation
    return loaded, x


def test_efficientnet_lite0_relu6_are_guided(lite0):
    loaded, x = lite0
    model = loaded.model
    guided, g_grads = _relu6_input_grads(model, gradcam.GuidedBackprop, x)
    plain, p_grads = _relu6_input_grads(model, gradcam.Gradient, x)
    assert loaded.labels[int(guided.targets[0, 0])] == "Egyptian cat"
    n_relu6 = sum(isinstance(m, nn.ReLU6) for m in model.modules())
    assert len(g_grads) == len(p_grads) == n_relu6 == 33
    # No negative gradient passes any activation with the guided rule; the plain gradient has some.
    assert min(float(g.min()) for g in g_grads) >= 0
    assert min(float(g.min()) for g in p_grads) < 0
    diff = (guided.pixels - plain.pixels).abs().max()
    assert diff > 0.1 * plain.pixels.abs().max()
    # Guided Grad-CAM on the real model is the product of its parts.
    gg = gradcam.GuidedGradCAM(model, layer=loaded.layer)(x)
    cam = gradcam.GradCAM(model, layer=loaded.layer)(x)
    assert torch.allclose(gg.pixels, guided.pixels * cam.maps.unsqueeze(2), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("counterfactual", [False, True])
def test_guided_gradcam_equals_guided_backprop_times_gradcam(counterfactual):
    # fc_net: conv-relu-pool-conv(3)-relu-flatten-linear-relu-linear: ReLUs lie between the layer and the score.
    model, x = fc_net(num_classes=6), _x(n=2, size=16)
    gg = gradcam.GuidedGradCAM(model, layer="3")(x, top_k=2, counterfactual=counterfactual)
    gb = gradcam.GuidedBackprop(model)(x, top_k=2, counterfactual=counterfactual)
    cam = gradcam.GradCAM(model, layer="3")(x, top_k=2, counterfactual=counterfactual)
    assert torch.allclose(gg.pixels, gb.pixels * cam.maps.unsqueeze(2), atol=1e-7, rtol=1e-5)
    assert torch.allclose(gg.cam.maps, cam.maps, atol=1e-6) and torch.allclose(
        gg.weights, cam.weights, atol=1e-7
    )
    assert torch.equal(gg.raw, gg.cam.raw) and gg.layer == "3" and gg.method == "guided-gradcam"
    assert torch.equal(gg.targets, cam.targets) and gg.counterfactual is counterfactual
    assert torch.allclose(gg.maps, normalize(saliency(gg.pixels)), atol=1e-6)
    # The layer gradient must be the plain one: differentiating the layer under the guided rule differs.
    guided_layer = engine.capture(
        model, x, resolve_layers(model, "3"), top_k=2, input_gradient=True, context=GuidedReLUMode
    )
    assert (guided_layer.gradients[0].mean((-2, -1)) - gg.weights).abs().max() > 1e-4


def test_guided_gradcam_runs_one_forward():
    model, x = fc_net(num_classes=6), _x(n=2, size=16)
    calls = []
    h = model.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        gradcam.GuidedGradCAM(model, layer="3")(x, top_k=3)
    finally:
        h.remove()
    assert len(calls) == 1


def test_every_image_and_target_is_explained():
    model, x = ActNet("module-inplace"), _x(n=3)
    batch = gradcam.GuidedBackprop(model)(x, target=[[0, 3], [1, 2], [4, 0]])
    for i in range(3):
        for k in range(2):
            one = gradcam.GuidedBackprop(model)(x[i : i + 1], target=int(batch.targets[i, k]))
            assert torch.allclose(batch.pixels[i, k], one.pixels[0, 0], atol=1e-6, rtol=0)
            assert torch.allclose(batch.scores[i, k], one.scores[0, 0])


def test_gradient_is_the_input_gradient():
    model, x = ActNet("module"), _x(n=2)
    res = gradcam.Gradient(model)(x, target=[1, 3])
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    ref = torch.autograd.grad(out[0, 1] + out[1, 3], xr)[0]
    assert torch.allclose(res.pixels[:, 0], ref, atol=1e-7)
    assert torch.allclose(res.maps, normalize(ref.abs().amax(1, keepdim=True)), atol=1e-6)
    cf = gradcam.Gradient(model)(x, target=[1, 3], counterfactual=True)
    assert torch.equal(cf.pixels, -res.pixels) and cf.counterfactual


def test_warns_when_the_model_has_no_relu():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10 * 10, 3))
    x = _x(n=1)
    with pytest.warns(UserWarning, match="has no ReLU-like activation"):
        res = gradcam.GuidedBackprop(model)(x, target=0)
    assert torch.equal(res.pixels, gradcam.Gradient(model)(x, target=0).pixels)


def _snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "types": [type(m) for m in model.modules()],
        "hooks": [
            len(m._forward_hooks)
            + len(m._forward_pre_hooks)
            + len(m._backward_hooks)
            + len(getattr(m, "_backward_pre_hooks", {}))
            for m in model.modules()
        ],
        "modes": torch._C._len_torch_function_stack(),
        "relu": (F.relu, torch.relu, torch.Tensor.relu, F.hardtanh, torch.clamp),
    }


def _assert_same(a, b):
    assert a["state"].keys() == b["state"].keys()
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"])
    for key in ("training", "requires_grad", "types", "hooks", "modes"):
        assert a[key] == b[key], key
    assert all(f is g for f, g in zip(a["relu"], b["relu"]))


def _boom(out):
    raise RuntimeError("boom in target")


@pytest.mark.parametrize("method", ["guided-backprop", "guided-gradcam", "gradient", "occlusion"])
def test_model_unchanged_also_after_an_exception(method):
    model = fc_net(num_classes=4)
    model.train()
    model[0].weight.requires_grad_(False)
    x = _x(n=2, size=16)
    before = _snapshot(model)
    kw = {"window": 8, "stride": 8} if method == "occlusion" else {}
    explainer = registry.get(method)(model, layer="3", **kw)
    explainer(x, top_k=2)
    _assert_same(before, _snapshot(model))
    with pytest.raises(RuntimeError, match="boom in target"):
        explainer(x, target=_boom)
    _assert_same(before, _snapshot(model))
    # Afterwards autograd is plain again: a ReLU passes negative gradients.
    xr = x.clone().requires_grad_(True)
    model.eval()
    out = model(xr)
    ref = torch.autograd.grad(out[:, 1].sum(), xr)[0]
    assert torch.allclose(gradcam.Gradient(model)(x, target=1).pixels[:, 0], ref, atol=1e-7)


def test_registry_and_errors():
    model = ActNet()
    assert isinstance(registry.get("guided-backprop")(model, layer="auto"), gradcam.GuidedBackprop)
    assert isinstance(registry.get("guided-gradcam")(model, layer="c2"), gradcam.GuidedGradCAM)
    assert isinstance(registry.get("gradient")(model, layer="auto"), gradcam.Gradient)
    assert isinstance(registry.get("occlusion")(model, layer="auto"), gradcam.Occlusion)
    with pytest.raises(
        ValueError, match=r"reduce must be one of abs-max, abs-sum, l2, positive; got 'max'\."
    ):
        gradcam.GuidedBackprop(model, reduce="max")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module; got function"):
        gradcam.GuidedBackprop(lambda t: t)
    with pytest.raises(ValueError, match=r"Input must have shape \(N, C, H, W\)"):
        gradcam.GuidedBackprop(model)(torch.zeros(3, 12, 12))


def test_saliency_and_image_helpers():
    g = torch.tensor([[-3.0, 1.0], [2.0, -2.0], [0.5, 0.0]]).reshape(1, 1, 3, 1, 2)
    assert saliency(g, "abs-max").flatten().tolist() == [3.0, 2.0]
    assert saliency(g, "abs-sum").flatten().tolist() == [5.5, 3.0]
    assert saliency(g, "positive").flatten().tolist() == [2.5, 1.0]
    assert torch.allclose(saliency(g, "l2").flatten(), torch.tensor([13.25**0.5, 5.0**0.5]))
    sym = to_image(g, "symmetric").flatten()
    assert torch.allclose(
        sym, torch.tensor([0.0, 0.5 + 0.5 / 3, 0.5 + 1 / 3, 0.5 - 1 / 3, 0.5 + 0.25 / 3, 0.5])
    )
    std = to_image(g, "std")
    ref = (0.5 + 0.1 * (g - g.mean()) / g.std(correction=0)).clamp(0, 1)
    assert torch.allclose(std, ref, atol=1e-6)
    zero = torch.zeros(2, 1, 3, 4, 4)
    assert torch.equal(to_image(zero), torch.full_like(zero, 0.5))
    assert torch.equal(to_image(zero, "symmetric"), torch.full_like(zero, 0.5))
    res = gradcam.Gradient(ActNet())(_x(n=1), target=0)
    assert torch.equal(res.image(), to_image(res.pixels)) and res.saliency("l2").shape == (1, 1, 12, 12)
    assert float(res.maps.amax()) == 1.0 and float(res.maps.amin()) == 0.0
    with pytest.raises(ValueError, match=r"Pixel-space results have shape \(N, K, C, H, W\); got \(3, 4\)\."):
        saliency(torch.zeros(3, 4))
