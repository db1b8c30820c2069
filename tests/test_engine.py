"""Issue 2: the Grad-CAM engine — exactness against references, batching, safety, errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
from nets import DictNet, ResBlockNet, fc_net, gap_net
from torch import nn

import gradcam
from gradcam.explanation import normalize


def reference_gradcam(
    model: nn.Sequential, split: int, x: torch.Tensor, cls: torch.Tensor, size, mode="bilinear"
):
    """Independent float64 Grad-CAM: A = features(x), y = head(A)[n, c], alpha = mean dy/dA, ReLU, upsample, min-max."""
    m = copy.deepcopy(model).double().eval()
    feats, head = m[:split], m[split:]
    a = feats(x.double()).detach().requires_grad_(True)
    y = head(a)
    out = []
    for n in range(x.shape[0]):
        (g,) = torch.autograd.grad(y[n, int(cls[n])], a, retain_graph=True)
        alpha = g[n].mean(dim=(1, 2))
        cam = torch.relu((alpha[:, None, None] * a[n].detach()).sum(0))
        up = F.interpolate(cam[None, None], size=size, mode=mode, align_corners=False)[0, 0]
        lo, hi = up.min(), up.max()
        out.append((up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up))
    return torch.stack(out)


@pytest.fixture
def x():
    torch.manual_seed(0)
    return torch.randn(4, 3, 16, 16)


@pytest.mark.parametrize("make,split,layer", [(fc_net, 5, "4"), (gap_net, 5, "4")])
def test_matches_float64_reference(make, split, layer, x):
    model = make()
    res = gradcam.GradCAM(model, layer=layer)(x)
    ref = reference_gradcam(model, split, x, res.targets[:, 0], x.shape[-2:])
    assert res.maps.shape == (4, 1, 16, 16)
    assert (res.maps[:, 0].double() - ref).abs().max().item() <= 1e-5
    # the default target is each image's top-1 class, scored before softmax
    logits = model.eval()(x)
    assert torch.equal(res.targets[:, 0], logits.argmax(1))
    assert torch.allclose(res.scores[:, 0], logits.max(1).values, atol=1e-6)


@pytest.mark.parametrize("make,layer", [(fc_net, "4"), (gap_net, "4")])
def test_matches_captum_layer_gradcam(make, layer, x):
    captum_attr = pytest.importorskip("captum.attr")
    model = make().eval()
    res = gradcam.GradCAM(model, layer=layer)(x, target=3)
    mod = dict(model.named_modules())[layer]
    theirs = captum_attr.LayerGradCam(model, mod).attribute(x, target=3, relu_attributions=True)
    assert theirs.shape == res.raw.shape
    assert (normalize(theirs) - normalize(res.raw)).abs().max().item() <= 1e-5


def test_gradcam_equals_cam_on_gap_network(x):
    model = gap_net()
    g = gradcam.GradCAM(model, layer="4")(x, top_k=3)
    c = gradcam.CAM(model, layer="4")(x, top_k=3)
    assert torch.equal(g.targets, c.targets)
    assert (g.maps - c.maps).abs().max().item() <= 1e-5
    # alpha = w / Z exactly (Z = h * w of the layer)
    z = g.raw.shape[-1] * g.raw.shape[-2]
    assert torch.allclose(g.weights * z, c.weights, atol=1e-5)


def test_cam_rejects_non_gap_head(x):
    with pytest.raises(ValueError, match="global average pooling"):
        gradcam.CAM(fc_net(), layer="4")(x)


# Batching changes the order of float32 sums (a batch of 4 and a batch of 1 can take different kernel
# blockings), so a map computed in a batch and alone may differ by rounding, never by more than the
# worst-case rounding of the sums behind one map value: each sum of L terms is exact to L * eps relative
# to the sum of |terms|, and a map value depends on conv1 (L = 27), conv2 (L = 72), the gradient mean over
# the 8 x 8 layer (L = 64) and the channel sum (L = 16). The map is normalised to [0, 1], so the bound
# holds in map units on any CPU. In float64 the same sums agree to ~1e-15: there a 1e-12 bound catches any
# real difference (a wrong image or class order) that rounding could hide in float32.
F32_BATCH_TOL = (27 + 72 + 64 + 16) * torch.finfo(torch.float32).eps  # 2.1e-5


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, F32_BATCH_TOL)])
def test_batch_equals_single_and_topk_equals_separate_calls(x, dtype, tol):
    model = gap_net().to(dtype)
    x = x.to(dtype)
    cam = gradcam.GradCAM(model, layer="4")
    batch = cam(x, top_k=5)
    assert batch.maps.shape == (4, 5, 16, 16)
    for i in range(x.shape[0]):
        alone = cam(x[i : i + 1], top_k=5)
        assert torch.equal(alone.targets[0], batch.targets[i])
        assert (alone.maps[0] - batch.maps[i]).abs().max().item() <= tol
    for j in range(5):
        sep = cam(x, target=batch.targets[:, j].tolist())
        assert (sep.maps[:, 0] - batch.maps[:, j]).abs().max().item() <= tol
        scale = batch.weights[:, j].abs().max().item()
        assert (sep.weights[:, 0] - batch.weights[:, j]).abs().max().item() <= tol * scale


def test_top_k_are_the_best_classes_in_descending_order(x):
    model = gap_net()
    res = gradcam.GradCAM(model, layer="4")(x, top_k=4)
    logits = model.eval()(x)
    best = torch.topk(logits, 4, dim=1)
    assert torch.equal(res.targets, best.indices)
    assert torch.allclose(res.scores, best.values, atol=1e-6)
    assert bool((res.scores[:, :-1] > res.scores[:, 1:]).all())


def test_target_forms(x):
    model = gap_net()
    cam = gradcam.GradCAM(model, layer="4")
    one = cam(x, target=2)
    assert one.targets.tolist() == [[2]] * 4
    per = cam(x, target=[1, 2, 3, 4])
    assert per.targets[:, 0].tolist() == [1, 2, 3, 4]
    two = cam(x, target=[[1, 2]] * 4)
    assert two.maps.shape == (4, 2, 16, 16)
    # a callable gives any differentiable scalar: the difference of two logits equals the linear combination
    diff = cam(x, target=lambda out: out[:, 3] - out[:, 7])
    w = model[-1].weight.detach()
    z = diff.raw.shape[-1] * diff.raw.shape[-2]
    assert torch.allclose(diff.weights[:, 0] * z, (w[3] - w[7]).expand(4, -1), atol=1e-5)
    assert diff.targets.tolist() == [[-1]] * 4


def test_counterfactual_negates_gradients(x):
    model = gap_net()
    cam = gradcam.GradCAM(model, layer="4")
    cf = cam(x, target=5, counterfactual=True)
    neg = cam(x, target=lambda out: -out[:, 5])
    assert torch.equal(cf.weights, neg.weights)
    assert torch.equal(cf.maps, neg.maps)
    assert torch.equal(cf.weights, -cam(x, target=5).weights)


def test_dict_output_and_auto_layer_skips_branch_the_target_ignores(x, caplog):
    model = DictNet()
    cam = gradcam.GradCAM(model)
    with caplog.at_level("DEBUG", logger="gradcam"):
        res = cam(x, target=lambda out: out["logits"][:, 3] - out["logits"][:, 1])
    # 'aux' is the last spatial output, but the logits do not depend on it
    assert res.layer == "features"
    assert "features" in caplog.text
    assert cam(x, target=1).layer == "features"  # dict with 'logits' works with class ids too


def test_auto_layer_on_sequential_is_last_spatial_module(x):
    assert gradcam.GradCAM(gap_net())(x).layer == "4"
    assert gradcam.GradCAM(fc_net())(x).layer == "4"


def test_inplace_add_after_layer_and_shared_module_calls(x):
    model = ResBlockNet()
    res = gradcam.GradCAM(model, layer="bn")(x)
    assert res.raw.shape == (4, 1, 16, 16)
    with pytest.raises(ValueError, match=r"Layer 'relu' is called 2 times .* layer='relu@0' \.\.\. 'relu@1'"):
        gradcam.GradCAM(model, layer="relu")(x)
    last = gradcam.GradCAM(model, layer="relu@1")(x)
    # relu@1 is the input of the pooling: Grad-CAM there equals CAM from the fc weights
    cam = gradcam.CAM(model, layer="relu@1")(x)
    assert (last.maps - cam.maps).abs().max().item() <= 1e-5
    assert gradcam.GradCAM(model)(x).layer == "relu@1"


def test_layer_as_module_object_and_list(x):
    model = gap_net()
    by_obj = gradcam.GradCAM(model, layer=model[4])(x)
    by_name = gradcam.GradCAM(model, layer="4")(x)
    assert by_obj.layer == "4" and torch.equal(by_obj.maps, by_name.maps)
    multi = gradcam.GradCAM(model, layer=["2", "4"])(x)
    assert multi.layer == "2+4"
    assert set(multi.per_layer) == {"2", "4"}
    expect = normalize((multi.per_layer["2"].maps + multi.per_layer["4"].maps) / 2)
    assert torch.allclose(multi.maps, expect, atol=1e-6)
    # several layers in one pass give the same per-layer maps as one layer at a time
    assert (multi.per_layer["2"].maps - gradcam.GradCAM(model, layer="2")(x).maps).abs().max() <= 1e-6


def test_interpolation_modes_are_the_ones_asked_for():
    # A 15 x 15 input and an 8 x 8 layer: a non-integer scale, where all four modes give different maps.
    torch.manual_seed(4)
    x15 = torch.randn(2, 3, 15, 15)
    maps = {}
    for mode in ("bilinear", "nearest", "bicubic", "area"):
        res = gradcam.GradCAM(gap_net(), layer="4", interpolation=mode)(x15)
        assert res.interpolation == mode and res.raw.shape == (2, 1, 8, 8)
        kw = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
        up = F.interpolate(res.raw, size=(15, 15), mode=mode, **kw)
        expect = normalize(up.clamp_min(0))  # bicubic overshoots below zero: clamped, as the docs say
        assert (res.maps - expect).abs().max().item() <= 1e-6, mode
        maps[mode] = res.maps
    for mode in ("nearest", "bicubic", "area"):
        assert (maps[mode] - maps["bilinear"]).abs().max().item() > 1e-2, mode
    assert (maps["area"] - maps["nearest"]).abs().max().item() > 1e-2


def test_flat_map_is_zero_not_nan(x):
    model = gap_net()
    with torch.no_grad():
        model[-1].weight.zero_()
    res = gradcam.GradCAM(model, layer="4")(x)
    assert torch.equal(res.maps, torch.zeros_like(res.maps))  # zeros, not NaN (NaN != 0)


def test_deterministic_and_equal_to_the_float64_reference_in_any_batch_order(x):
    model = fc_net()
    cam = gradcam.GradCAM(model, layer="4")
    first = cam(x, top_k=3)
    for _ in range(3):  # repeated calls are bit-identical
        again = cam(x, top_k=3)
        assert torch.equal(again.maps, first.maps) and torch.equal(again.raw, first.raw)
    for k in range(3):  # ... and right: every target's map is the float64 reference's
        ref = reference_gradcam(model, 5, x, first.targets[:, k], x.shape[-2:])
        assert (first.maps[:, k].double() - ref).abs().max().item() <= 1e-5
    for perm in ([3, 2, 1, 0], [1, 3, 0, 2]):  # an image's result does not depend on its place in the batch
        shuffled = cam(x[perm], top_k=3)
        assert torch.equal(shuffled.targets, first.targets[perm])
        assert (shuffled.maps - first.maps[perm]).abs().max().item() <= F32_BATCH_TOL


def _snapshot(model):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [(n, m.training) for n, m in model.named_modules()],
        [(n, p.requires_grad) for n, p in model.named_parameters()],
        [(n, type(m)) for n, m in model.named_modules()],
    )


def _no_hooks(model):
    return all(
        not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules()
    )


def test_model_left_unchanged_also_after_exception(x):
    model = gap_net()
    model.train()
    model[0].weight.requires_grad_(False)  # a mixed state must come back exactly
    model[3].train(False)
    before = _snapshot(model)
    gradcam.GradCAM(model, layer="4")(x, top_k=2)
    gradcam.CAM(model, layer="4")(x)
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])  # BN running stats untouched too
    assert before[1:] == after[1:] and _no_hooks(model)
    assert all(p.grad is None for p in model.parameters())

    def boom(out):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        gradcam.GradCAM(model, layer="4")(x, target=boom)
    with pytest.raises(RuntimeError, match="target failed"):
        gradcam.GradCAM(model)(x, target=boom)
    after = _snapshot(model)
    assert before[1:] == after[1:] and _no_hooks(model)


def _graph(t):
    """Names of the autograd nodes that ``t`` depends on."""
    names, stack, seen = [], [t.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.append(type(node).__name__)
        stack.extend(n for n, _ in node.next_functions)
    return names


def test_only_the_head_after_the_layer_is_recorded_and_no_parameter_gradient(x):
    model = fc_net()  # conv relu pool conv relu | flatten linear relu linear; layer "4" = the second relu
    graphs = []

    def score(out):
        graphs.append(_graph(out))
        return out[:, 1]

    gradcam.GradCAM(model, layer="4")(x, target=score)
    (names,) = graphs
    # Recorded: the head and the tapped activation (a leaf, cloned); not the convolutions before the
    # layer, and no parameter of the head (it does not require grad in the call).
    assert "ConvolutionBackward0" not in names and "MaxPool2DWithIndicesBackward0" not in names
    assert names.count("AccumulateGrad") == 1
    assert names.count("AddmmBackward0") == 2
    assert all(p.grad is None for p in model.parameters())


# ---- bad input ------------------------------------------------------------------------------


def test_error_unknown_layer_lists_closest():
    with pytest.raises(ValueError, match=r"Unknown layer 'fetures'.*Closest names: features"):
        gradcam.GradCAM(DictNet(), layer="fetures")


def test_error_layer_not_reached(x):
    with pytest.raises(ValueError, match="Layer 'unused' was never reached by the forward pass"):
        gradcam.GradCAM(DictNet(), layer="unused")(x, target=1)


def test_error_target_does_not_depend_on_layer(x):
    with pytest.raises(ValueError, match="The target does not depend on layer 'aux'"):
        gradcam.GradCAM(DictNet(), layer="aux")(x, target=1)


def test_error_class_out_of_range(x):
    with pytest.raises(
        ValueError, match=r"Target class 10 is out of range for a model with 10 outputs \(valid ids: 0..9\)"
    ):
        gradcam.GradCAM(gap_net(), layer="4")(x, target=10)
    with pytest.raises(ValueError, match="Target class -1 is out of range"):
        gradcam.GradCAM(gap_net(), layer="4")(x, target=[0, 1, 2, -1])


def test_error_target_list_length(x):
    with pytest.raises(ValueError, match="The target list has 2 class ids but the batch has 4 images"):
        gradcam.GradCAM(gap_net(), layer="4")(x, target=[1, 2])


def test_error_input_shape(x):
    cam = gradcam.GradCAM(gap_net(), layer="4")
    with pytest.raises(
        ValueError,
        match=r"Input must have shape \(N, C, H, W\); got \(3, 16, 16\). For one image, add a batch",
    ):
        cam(x[0])
    with pytest.raises(TypeError, match="Input must be a floating-point tensor"):
        cam((x * 255).to(torch.uint8))
    with pytest.raises(TypeError, match="Input must be a torch.Tensor"):
        cam(x.numpy())


def test_error_dtype_meta_channels_last_and_lists(x):
    cam = gradcam.GradCAM(gap_net().double(), layer="4")
    with pytest.raises(
        TypeError,
        match=r"^Input is torch.float32 but the model's parameters are torch.float64; make "
        r"them match, e.g. x.to\(torch.float64\) or model.to\(torch.float32\).$",
    ):
        cam(x)
    with pytest.raises(ValueError, match=r"^Input is a meta tensor \(a shape without data\)"):
        gradcam.GradCAM(gap_net(), layer="4")(torch.empty(4, 3, 16, 16, device="meta"))
    with torch.device("meta"):
        meta_model = gap_net()
    with pytest.raises(
        ValueError,
        match=r"^The model's parameters are on the 'meta' device .* "
        r"model.to_empty\(device='cpu'\)",
    ):
        gradcam.GradCAM(meta_model, layer="4")(x)
    partly = gap_net()
    with torch.device("meta"):
        partly[3] = nn.Conv2d(8, 16, 3, padding=1, stride=2)  # one layer left without data
    with pytest.raises(ValueError, match=r"^The model's parameters are on the 'meta' device"):
        gradcam.GradCAM(partly, layer="4")(x)
    nhwc = x.permute(0, 2, 3, 1)  # (4, 16, 16, 3)
    for explainer in (
        gradcam.GradCAM(gap_net(), layer="4"),
        gradcam.GradCAM(gap_net()),
        gradcam.Gradient(gap_net()),
    ):
        with pytest.raises(
            ValueError,
            match=r"^Input of shape \(4, 16, 16, 3\) looks like channels-last images "
            r"\(N, H, W, C\); the model takes \(N, C, H, W\): use x.permute\(0, 3, 1, 2\).$",
        ):
            explainer(nhwc)
    for explainer in (
        gradcam.GradCAM(gap_net()),
        gradcam.GradCAM(gap_net(), layer="4"),
        gradcam.GuidedBackprop(gap_net()),
    ):
        with pytest.raises(
            TypeError,
            match=r"^Input must be one torch.Tensor of shape \(N, C, H, W\); got a list of 4 "
            r"tensors. Stack the images into one batch: torch.stack\(images\)",
        ):
            explainer(list(x))
    # A model whose first convolution takes as many channels as the input's dim 1 is not channels-last.
    torch.manual_seed(0)
    wide = nn.Sequential(
        nn.Conv2d(16, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )
    assert gradcam.GradCAM(wide, layer="0")(torch.randn(1, 16, 5, 3)).maps.shape == (1, 1, 5, 3)


def test_error_non_spatial_layer(x):
    with pytest.raises(
        ValueError, match=r"Layer '6' outputs shape \(4, 16\), not a spatial map.*tokens_to_grid"
    ):
        gradcam.GradCAM(gap_net(), layer="6")(x)


def test_error_no_spatial_layer_for_auto():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match=r"No submodule of Sequential outputs a spatial map"):
        gradcam.GradCAM(mlp)(torch.randn(2, 3, 2, 2))


def test_error_top_k_too_large_and_exclusive(x):
    cam = gradcam.GradCAM(gap_net(), layer="4")
    with pytest.raises(ValueError, match=r"top_k=11 is larger than the number of classes \(10\)"):
        cam(x, top_k=11)
    with pytest.raises(ValueError, match="Pass either target=... or top_k=..., not both"):
        cam(x, target=1, top_k=2)


def test_error_nan_scores(x):
    x = x.clone()
    x[2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"The model produced NaN/Inf scores for image\(s\) \[2\]"):
        gradcam.GradCAM(gap_net(), layer="4")(x)


def test_error_bad_callable_targets(x):
    cam = gradcam.GradCAM(gap_net(), layer="4")
    with pytest.raises(ValueError, match="Do not sum over the batch"):
        cam(x, target=lambda out: out[:, 1].sum())
    with pytest.raises(ValueError, match="not connected by autograd to '4'"):
        cam(x, target=lambda out: out[:, 1].detach())
    with pytest.raises(TypeError, match="is a class name"):
        cam(x, target="tabby")


def test_tokens_to_grid_drops_the_class_token_and_keeps_the_layout():
    grid = torch.arange(2 * 5 * 3 * 4, dtype=torch.float32).reshape(2, 5, 3, 4)  # (N, D, h, w), all distinct
    cls = torch.full((2, 1, 5), -1.0)
    tokens = torch.cat([cls, grid.flatten(2).transpose(1, 2)], 1)  # (N, 1 + h*w, D), row-major patches
    assert torch.equal(gradcam.tokens_to_grid(3, 4)(tokens), grid)
    assert torch.equal(gradcam.tokens_to_grid(3, 4, skip=0)(tokens[:, 1:]), grid)
    with pytest.raises(
        ValueError,
        match=r"tokens_to_grid\(3, 4, skip=1\) expects \(N, 13, D\) tokens, got shape \(2, 12, 5\)",
    ):
        gradcam.tokens_to_grid(3, 4)(tokens[:, 1:])


def test_tokens_to_grid_reshape():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(3)
            self.embed = nn.Conv2d(3, 8, 4, stride=4)
            self.block = nn.Linear(8, 8)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            t = self.embed(x).flatten(2).transpose(1, 2)  # (N, 16, 8)
            t = torch.cat([t.mean(1, keepdim=True), t], 1)  # a class token in front
            t = self.block(t)
            return self.head(t[:, 1:].mean(1))

    model = Tokens()
    x = torch.randn(2, 3, 16, 16)
    res = gradcam.GradCAM(model, layer="block", reshape=gradcam.tokens_to_grid(4, 4))(x)
    assert res.raw.shape == (2, 1, 4, 4) and res.maps.shape == (2, 1, 16, 16)
    # Without reshape= the grid (4 x 4 after one class token) is inferred from T and the input size.
    inferred = gradcam.GradCAM(model, layer="block")(x)
    assert torch.equal(inferred.maps, res.maps)


class _GradModeInside(nn.Module):
    """Calls its features inside its own enable_grad block: grad mode is reset right after the layer."""

    def __init__(self, base: nn.Sequential):
        super().__init__()
        self.features, self.head = base[:5], base[5:]

    def forward(self, x):
        with torch.enable_grad():
            f = self.features(x)
        return self.head(f)


def test_model_that_resets_grad_mode_gives_the_same_maps(x):
    base = gap_net()
    expect = gradcam.GradCAM(base, layer="4")(x, top_k=2)
    wrapped = _GradModeInside(base)
    got = gradcam.GradCAM(wrapped, layer="features.4")(x, top_k=2)
    assert torch.equal(got.targets, expect.targets)
    assert (got.maps - expect.maps).abs().max().item() <= 1e-6


def test_grad_mode_of_the_caller_is_kept(x):
    cam = gradcam.GradCAM(gap_net(), layer="4")
    cam(x)
    assert torch.is_grad_enabled()
    with torch.no_grad():
        res = cam(x)  # explaining needs gradients: it works inside the caller's no_grad block too
        assert not torch.is_grad_enabled()
    assert res.maps.shape == (4, 1, 16, 16) and float(res.maps.max()) == 1.0


class _SeqNet(nn.Module):
    """Image rows as a sequence through a GRU (it keeps its weights in a list too: ``_flat_weights``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gru = nn.GRU(4 * 16, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        f = torch.relu(self.conv(x))  # (N, 4, 16, 16)
        seq = f.permute(0, 2, 1, 3).flatten(2)  # (N, 16 rows, 64)
        return self.fc(self.gru(seq)[0][:, -1])


def test_a_gru_head_records_no_parameter(x):
    model = _SeqNet()
    graphs = []

    def score(out):
        graphs.append(_graph(out))
        return out[:, 0]

    res = gradcam.GradCAM(model, layer="conv")(x, target=score)
    assert names_ok(graphs[0]) and res.maps.shape == (4, 1, 16, 16)
    ref = copy.deepcopy(model).eval()
    a = ref.conv(x).detach().requires_grad_(True)
    seq = torch.relu(a).permute(0, 2, 1, 3).flatten(2)
    (g,) = torch.autograd.grad(ref.fc(ref.gru(seq)[0][:, -1])[:, 0].sum(), a)
    assert torch.allclose(res.weights[:, 0], g.mean((-2, -1)), atol=1e-7, rtol=1e-5)


class _ListHead(nn.Module):
    """Keeps its weight in a plain list as well, and uses that copy in forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.weight = nn.Parameter(torch.randn(3, 16) / 4)
        self.weights = [self.weight]

    def forward(self, f):
        return F.linear(f.mean((2, 3)), self.weights[0])


def test_a_parameter_kept_in_a_list_is_not_recorded_either(x):
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), _ListHead())
    graphs = []
    res = gradcam.GradCAM(model, layer="1")(x, target=lambda out: (graphs.append(_graph(out)), out[:, 2])[1])
    assert names_ok(graphs[0])
    z = 16 * 16
    assert torch.allclose(res.weights[:, 0] * z, model[2].weight[2].detach().expand(4, -1), atol=1e-6)


def names_ok(names):
    """Only the tapped activation is a leaf of the recorded graph (no parameter is)."""
    return names.count("AccumulateGrad") == 1 and "ConvolutionBackward0" not in names


def test_eval_mode_false_updates_batchnorm_statistics_of_the_model_itself(x):
    model = gap_net().train()
    before = model[1].running_mean.clone()
    gradcam.GradCAM(model, layer="4")(x)
    assert torch.equal(model[1].running_mean, before)  # eval mode (the default): untouched
    gradcam.GradCAM(model, layer="4", eval_mode=False)(x)
    expect = 0.9 * before + 0.1 * model[0](x).mean((0, 2, 3)).detach()
    assert torch.allclose(model[1].running_mean, expect, atol=1e-6)
    assert model.training and all(m.training for m in model.modules())
