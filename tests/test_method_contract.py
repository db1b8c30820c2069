"""The one method contract, checked for every registered method on a tiny net: the call signature, every
option honoured or refused with a clear error, the user's model unchanged, batched = one at a time, the
registry's metadata true (tokens, volumes), and the differentiable mode of the one capture engine."""

import inspect
import subprocess
import sys

import pytest
import torch
from models_zoo import Tiny3DCNN, TinyViT, assert_unchanged, snapshot
from torch import nn

import gradcam
from gradcam import engine
from gradcam.explanation import Explanation
from gradcam.methods import registry
from gradcam.methods.contract import OPTIONS, Method, MethodInfo
from gradcam.pixels import PixelExplanation

NAMES = list(registry.METHODS)
#: Constructor arguments that make the slow methods small enough for 12 x 12 images.
SMALL = {"occlusion": {"window": 4, "stride": 2}, "rise": {"n_masks": 24, "grid": 3}}
#: Random methods whose draws follow the batch order (per image and target): a batch of one draws row 0 only.
DRAWS_PER_ROW = {"random", "random-map", "smoothgrad", "vargrad"}
#: Methods whose maps are concepts shared by the batch (no target; a batch is factorised as a whole).
CONCEPTS = {n for n in registry.METHODS if registry.info(n).family == "concepts"}


class Net(nn.Module):
    """conv - BN - ReLU - conv - ReLU - GAP - linear; ``scale`` (a forward keyword) multiplies the logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x, scale=1.0):
        a = torch.relu(self.c2(torch.relu(self.bn(self.c1(x)))))
        return self.fc(a.mean((2, 3))) * scale


def build(name, model, **kw):
    try:
        return registry.get(name)(
            model, layer="auto" if name in ("rise",) else "c2", **{**SMALL.get(name, {}), **kw}
        )
    except ImportError as e:  # a method of an optional extra (lrp: zennit) where it is not installed
        assert "pip install 'gradcam[" in str(e)
        pytest.skip(f"{name}: {e}")


def construct(name, model, **kw):
    """``registry.get(name)(model, layer="auto", ...)``; skipped where the method's optional extra is absent."""
    try:
        return registry.get(name)(model, layer="auto", **kw)
    except ImportError as e:
        assert "pip install 'gradcam[" in str(e)
        pytest.skip(f"{name}: {e}")


def what(name, **kw):
    """The target keywords of a call: none for concept methods (their maps are not classes)."""
    return {} if name in CONCEPTS else kw


def images(n=3, dtype=torch.float64):
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(1), dtype=dtype)


def test_every_method_is_registered_at_once_with_metadata():
    code = (
        "import sys; from gradcam.methods import registry; "
        "assert 'random-map' in registry.METHODS and 'gaussian' in registry.METHODS; "
        "assert 'gradcam.evaluation' not in sys.modules; print(len(registry.METHODS))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(NAMES) >= 19
    for name in NAMES:
        info = registry.info(name)
        assert isinstance(info, MethodInfo) and info.name == name and info.summary
        assert info.family in ("cam", "cam-gradient-free", "perturbation", "pixel", "concepts", "baseline")
        assert info.output in ("maps", "pixels") and set(info.options) <= set(OPTIONS)
    with pytest.raises(ValueError, match="Unknown method 'nope'; choose one of: ablationcam, cam, "):
        registry.get("nope")


@pytest.mark.parametrize("name", NAMES)
def test_call_signature_is_the_contract(name):
    m = build(name, Net())
    assert isinstance(m, Method)
    params = list(inspect.signature(m.__call__).parameters.values())
    assert [p.name for p in params] == ["x", "target", "top_k", *OPTIONS, "precision"]
    assert [p.default for p in params[1:]] == [None, None, False, None, None, None, None]
    assert all(p.kind is p.KEYWORD_ONLY for p in params[3:])


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("name", NAMES)
def test_every_option_is_honoured_or_refused_clearly(name, option):
    model = Net().double().eval()
    x = images(2)
    info = registry.info(name)
    value = {"scale": 2.0} if option == "forward_kwargs" else True
    if option not in info.options:
        message = rf"\('{build(name, model).name}'\) cannot honour {option}="
        with pytest.raises(ValueError, match=message):
            build(name, model)(x, **what(name, target=[1, 2]), **{option: value})
        if option in ("aug_smooth", "eigen_smooth"):  # a constructor setting: refused at construction
            with pytest.raises(ValueError, match=message):
                build(name, model, **{option: True})
        return
    plain = build(name, model)(x, **what(name, target=[1, 2]))
    res = build(name, model)(x, **what(name, target=[1, 2]), **{option: value})
    assert isinstance(res, PixelExplanation if info.output == "pixels" else Explanation)
    assert res.maps.shape == plain.maps.shape and res.maps.shape[::2] == (2, 12)
    if option == "forward_kwargs":  # the keyword reached the model: the logits doubled
        if name in CONCEPTS:
            torch.testing.assert_close(res.output, 2 * plain.output, rtol=1e-12, atol=0)
        else:
            torch.testing.assert_close(res.scores, 2 * plain.scores, rtol=1e-12, atol=0)
    if option == "counterfactual":
        assert res.counterfactual
    if option in ("aug_smooth", "eigen_smooth"):
        built = build(name, model, **{option: True})(x, target=[1, 2])
        torch.testing.assert_close(built.maps, res.maps, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_the_users_model_is_unchanged(name, monkeypatch):
    model = Net()
    model.train()
    model.c1.bias.requires_grad_(False)
    calls = []
    model.c2.register_forward_hook(lambda m, i, o: calls.append(1))  # a user's own hook stays and still runs
    before = snapshot(model)
    flags = []
    model.c1.register_forward_pre_hook(lambda m, i: flags.append([mm.training for mm in model.modules()]))
    before = snapshot(model)
    switched = []
    original_train = nn.Module.train
    mine = {id(m) for m in model.modules()}

    def train(self, mode=True):
        if id(self) in mine:
            switched.append((type(self).__name__, mode))
        return original_train(self, mode)

    monkeypatch.setattr(nn.Module, "train", train)
    build(name, model)(images(2, torch.float32), **what(name, top_k=2))
    assert_unchanged(model, before)
    assert not switched and flags and all(all(f) for f in flags)  # never switched, not even during the call
    assert calls and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_at_a_time(name):
    if name in CONCEPTS:
        pytest.skip("concepts are factorised over the whole batch: a batch is not its images one at a time")
    # float64: the batched and single forwards differ by rounding only (~1e-16 relative, a few hundred terms
    # per value), far below the 1e-10 allowed on maps in [0, 1].
    model = Net().double().eval()
    x = images(3)
    target = [1, 4, 2]
    batched = build(name, model)(x, target=target)
    rows = range(1) if name in DRAWS_PER_ROW else range(3)
    for i in rows:
        one = build(name, model)(x[i : i + 1], target=target[i])
        torch.testing.assert_close(one.maps[0], batched.maps[i], rtol=0, atol=1e-10)
        torch.testing.assert_close(one.scores[0], batched.scores[i], rtol=1e-12, atol=1e-12)
    if name in DRAWS_PER_ROW:  # seeded: the same call again gives the same maps
        torch.testing.assert_close(build(name, model)(x, target=target).maps, batched.maps, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n in NAMES if registry.info(n).handles_volumes])
def test_methods_that_claim_volumes_explain_volumes(name):
    model = Tiny3DCNN()
    before = snapshot(model)
    res = construct(name, model, **SMALL.get(name, {}))(torch.randn(2, 1, 8, 12, 10), **what(name, top_k=2))
    assert (
        res.maps.shape[0] == 2 and res.maps.shape[2:] == (8, 12, 10) and bool(torch.isfinite(res.maps).all())
    )
    assert_unchanged(model, before)


@pytest.mark.filterwarnings("ignore:TinyViT has no ReLU-like activation")
@pytest.mark.parametrize("name", [n for n in NAMES if registry.info(n).handles_tokens])
def test_methods_that_claim_tokens_explain_a_vit(name):
    model = TinyViT()
    res = construct(name, model, **SMALL.get(name, {}))(torch.randn(2, 3, 16, 16), **what(name, top_k=2))
    assert res.maps.shape[0] == 2 and res.maps.shape[2:] == (16, 16) and bool(torch.isfinite(res.maps).all())


@pytest.mark.parametrize("name", [n for n in NAMES if not registry.info(n).handles_volumes])
def test_methods_without_volumes_refuse_them_clearly(name):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        construct(name, Tiny3DCNN(), **SMALL.get(name, {}))(torch.randn(1, 1, 8, 12, 10))


def test_capture_carries_declared_fields_only():
    cap = engine.capture(Net(), images(1, torch.float32), [], target=0, gradients=False)
    with pytest.raises(AttributeError):
        cap.perturbation_scores = []  # not a field: refused
    res = registry.get("scorecam")(Net(), layer="c2")(images(1, torch.float32), target=0)
    assert res.weights.shape == (1, 1, 8)


# -- the differentiable mode of engine.capture ------------------------------------------------------------


def _watch(model, monkeypatch):
    """Record every train()/eval() on the user's modules and every module's flags at each forward."""
    switched, flags = [], []
    original_train = nn.Module.train
    mine = {id(m) for m in model.modules()}

    def train(self, mode=True):
        if id(self) in mine:
            switched.append(mode)
        return original_train(self, mode)

    monkeypatch.setattr(nn.Module, "train", train)
    model.register_forward_pre_hook(lambda m, i: flags.append([mm.training for mm in model.modules()]))
    return switched, flags


def test_differentiable_mode_never_switches_the_users_model(monkeypatch):
    model = Net()
    model.train()
    switched, flags = _watch(model, monkeypatch)
    before = snapshot(model)
    res = gradcam.GradCAM(model, layer="c2", differentiable=True)(images(2, torch.float32), target=[0, 3])
    assert res.maps.requires_grad and not switched and flags and all(all(f) for f in flags)
    assert_unchanged(model, before)
    (g,) = torch.autograd.grad(res.maps.sum(), [model.c1.weight])  # the graph reaches the parameters
    assert float(g.abs().sum()) > 0
    # eval-mode BN in the view: the maps equal those of a model switched to eval by hand
    ref = gradcam.GradCAM(Net().eval(), layer="c2")(images(2, torch.float32), target=[0, 3])
    torch.testing.assert_close(res.maps.detach(), ref.maps, rtol=0, atol=1e-6)


def test_differentiable_mode_honours_auto_reshape_and_volumes():
    vit = TinyViT()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    plain = gradcam.GradCAM(vit)(x, top_k=2)
    diff = gradcam.GradCAM(vit, differentiable=True)(x, top_k=2)
    assert diff.layer == plain.layer and diff.maps.requires_grad
    torch.testing.assert_close(diff.maps.detach(), plain.maps, rtol=0, atol=1e-5)
    (g,) = torch.autograd.grad(diff.maps.sum(), [vit.head.weight])
    assert float(g.abs().sum()) > 0
    cnn = Tiny3DCNN()
    v = torch.randn(2, 1, 8, 12, 10, generator=torch.Generator().manual_seed(0))
    d3 = gradcam.GradCAM(cnn, differentiable=True)(v, top_k=2)
    torch.testing.assert_close(d3.maps.detach(), gradcam.GradCAM(cnn)(v, top_k=2).maps, rtol=0, atol=1e-5)
    assert d3.maps.shape == (2, 2, 8, 12, 10) and d3.maps.requires_grad


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "guided-gradcam"])
def test_differentiable_is_refused_at_construction_where_the_graph_is_lost(name):
    with pytest.raises(ValueError, match="differentiable=True supports layer-based CAM methods only"):
        registry.get(name)(Net(), layer="c2", differentiable=True)


def test_exactly_one_capture_function():
    import gradcam.differentiable as d

    src = inspect.getsource(d)
    assert "register_forward_hook" not in src and "_Tap" not in src and "model.eval()" not in src
    assert d.capture.__doc__ and "engine.capture" in inspect.getsource(d.capture)


@pytest.mark.parametrize(
    "old, new, names",
    [
        ("gradcam.methods.gradients", "gradcam.methods.gradient_weighted", ["GradCAMPlusPlus", "LayerCAM"]),
        ("gradcam.methods.gradient", "gradcam.methods.input_gradient", ["Gradient", "call_context"]),
    ],
)
def test_renamed_modules_keep_working_with_a_deprecation_warning(old, new, names):
    import importlib

    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated; import from {new}"):
        mod = importlib.import_module(old)
    for n in names:
        assert getattr(mod, n) is getattr(importlib.import_module(new), n)


def test_no_cycle_between_base_and_smoothing():
    import ast

    from gradcam.methods import smoothing

    tree = ast.parse(inspect.getsource(smoothing))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(m and m.endswith("base") for m in imported)


def test_auto_layer_is_found_in_one_pass():
    # A ViT's latest maps (the final norm, the last block's output and MLP) get no gradient at their patch
    # tokens; however many candidates fail, the first call runs the model once (one forward lists and taps
    # every candidate, backward passes in stages reach them), and later calls once (the chosen layer).
    model = TinyViT(depth=3)
    calls = []
    model.register_forward_pre_hook(lambda m, i: calls.append(i[0].shape[0]))
    cam = gradcam.GradCAM(model)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    first = cam(x, top_k=2)
    assert first.layer == "blocks.2.norm1" and calls == [2]
    calls.clear()
    second = cam(x, top_k=2)
    assert second.layer == "blocks.2.norm1" and calls == [2]
    torch.testing.assert_close(second.maps, first.maps, rtol=0, atol=1e-6)
    named = gradcam.GradCAM(model, layer="blocks.2.norm1")(x, top_k=2)
    torch.testing.assert_close(first.maps, named.maps, rtol=0, atol=1e-6)


def test_gradcam_methods_command_prints_the_table_and_json(capsys):
    import json

    from gradcam import cli

    assert cli.main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == NAMES
    assert rows[NAMES.index("rise")] == registry.info("rise").as_dict()
    assert rows[NAMES.index("gradcam")]["options"] == list(OPTIONS)
    assert cli.main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "FAMILY",
        "OUTPUT",
        "GRADIENTS",
        "FORWARDS/IMAGE",
        "TOKENS",
        "VOLUMES",
        "OPTIONS",
    ]
    assert [line.split()[0] for line in lines[1:]] == NAMES
    assert lines[1 + NAMES.index("occlusion")].split() == [
        "occlusion",
        "perturbation",
        "maps",
        "no",
        "1",
        "+",
        "windows",
        "yes",
        "no",
        "counterfactual",
    ]
