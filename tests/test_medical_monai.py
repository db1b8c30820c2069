"""MONAI's 3-D networks, untouched: Grad-CAM maps equal a float64 reference at the chosen layer (<= 1e-5).

Random weights, small volumes (a second or two per network on one CPU thread); skipped without MONAI
(CI installs the ``medical`` extra).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from models_zoo import assert_unchanged, snapshot

nets = pytest.importorskip("monai.networks.nets")
pytest.importorskip("einops")

import gradcam  # noqa: E402
from gradcam.targets import segmentation  # noqa: E402
from gradcam.volumes import tokens_to_volume  # noqa: E402

TOL = 1e-5


def reference(model, x, layer, score, to_map=None):
    """Grad-CAM in float64 on a copy: alpha = mean over (d, h, w) of dy/dA, ReLU(sum_c alpha_c A_c), trilinear
    upsampling (align_corners=False), min-max normalised."""
    m = copy.deepcopy(model).double().eval()
    store = {}
    h = dict(m.named_modules())[layer].register_forward_hook(lambda mod, i, o: store.__setitem__("a", o))
    try:
        y = score(m(x.double()))
    finally:
        h.remove()
    (g,) = torch.autograd.grad(y.sum(), store["a"])
    a = store["a"]
    if to_map is not None:
        a, g = to_map(a), to_map(g)
    cam = torch.relu((g.mean(dim=(2, 3, 4), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[2:], mode="trilinear", align_corners=False)[:, 0]
    lo = cam.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = cam.flatten(1).amax(1).view(-1, 1, 1, 1)
    return (cam - lo) / (hi - lo)


def logits(c):
    return lambda out: (out[0] if isinstance(out, tuple) else out)[:, c]


def check(model, x, layer="auto", reshape=None, to_map=None, target=None, score=None):
    model.eval()
    before = snapshot(model)
    res = gradcam.GradCAM(model, layer=layer, reshape=reshape)(x, target=target)
    assert_unchanged(model, before)
    assert res.maps.shape == (x.shape[0], 1, *x.shape[2:])
    c = int(res.targets[0, 0])
    ref = reference(model, x, res.layer, score or logits(c), to_map)
    err = (res.maps[:, 0].double() - ref).abs().max().item()
    assert err <= TOL, (res.layer, err)
    assert float(ref.amax().detach()) == pytest.approx(
        1.0
    )  # a map that varies: the comparison means something
    return res


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_densenet121():
    res = check(
        nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2), torch.randn(1, 1, 32, 32, 32)
    )
    assert res.layer == "features.transition3.conv"


def test_resnet18():
    res = check(
        nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2), torch.randn(1, 1, 24, 24, 24)
    )
    assert res.layer == "layer4"


def test_seresnet50():
    model = nets.SEResNet50(spatial_dims=3, in_channels=1, num_classes=2, layers=(1, 1, 1, 1))
    check(model, torch.randn(1, 1, 32, 32, 32))


def test_efficientnet_bn():
    model = nets.EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=3, in_channels=1, num_classes=2
    )
    # At 32^3 the head is one voxel; stage 4 (stride 16) is 2^3. Random weights leave activations ~1e-15 here,
    # but the normalised map is still exact.
    check(model, torch.randn(1, 1, 32, 32, 32), layer="_blocks.4")


def test_vit_3d_with_the_token_reshape():
    model = nets.ViT(
        in_channels=1,
        img_size=16,
        patch_size=4,
        hidden_size=32,
        mlp_dim=64,
        num_layers=2,
        num_heads=4,
        classification=True,
        num_classes=2,
        spatial_dims=3,
    )
    grid = tokens_to_volume(4, 4, 4, skip=1)  # 64 patches of 4^3 voxels after the class token
    # blocks.0: the last block's patch tokens never reach the class token that the head reads
    check(model, torch.randn(1, 1, 16, 16, 16), layer="blocks.0", reshape=grid, to_map=grid)


def test_unet_segmentation_target():
    model = nets.UNet(
        spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8, 16), strides=(2, 2), num_res_units=1
    )
    x = torch.randn(1, 1, 16, 16, 16)
    mask = torch.zeros(16, 16, 16)
    mask[4:10, 6:12, 2:8] = 1
    res = check(
        model,
        x,
        layer="model.1",
        target=segmentation(1, mask),
        score=lambda out: (out[:, 1] * mask).flatten(1).sum(1),
    )
    assert res.raw.shape == (1, 1, 8, 8, 8)


def test_monai_prefix_loads_and_explains():
    from gradcam.models import load_model

    with pytest.warns(UserWarning, match="random weights"):
        loaded = load_model("monai:DenseNet121(spatial_dims=3,in_channels=1,out_channels=2)")
    assert loaded.labels == ["class 0", "class 1"] and loaded.name.startswith("monai:DenseNet121")
    with pytest.raises(ValueError, match="no network 'DenseNet999'"):
        load_model("monai:DenseNet999(spatial_dims=3)")
    with pytest.raises(ValueError, match="literals"):
        load_model("monai:DenseNet121(spatial_dims=__import__('os'))")


@pytest.mark.parametrize(
    "name", ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "XGradCAM", "LayerCAM", "EigenCAM", "EigenGradCAM"]
)
def test_cam_family_on_densenet121_volumes(name):
    model = nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2).eval()
    before = snapshot(model)
    res = getattr(gradcam, name)(model)(torch.randn(2, 1, 32, 32, 32), top_k=2)
    assert_unchanged(model, before)
    assert res.maps.shape == (2, 2, 32, 32, 32) and torch.isfinite(res.maps).all()
    assert float(res.maps.amax()) == pytest.approx(1.0)


def _seg_check(model, size, layer):
    x = torch.randn(1, 1, size, size, size)
    mask = torch.zeros(size, size, size)
    mask[size // 4 : size // 2, size // 3 : 2 * size // 3, 2 : size // 2] = 1
    return check(
        model,
        x,
        layer=layer,
        target=segmentation(1, mask),
        score=lambda out: (out[:, 1] * mask).flatten(1).sum(1),
    )


def test_segresnet_segmentation_target():
    model = nets.SegResNet(
        spatial_dims=3, in_channels=1, out_channels=2, init_filters=8, blocks_down=(1, 1, 1), blocks_up=(1, 1)
    )
    res = _seg_check(model, 32, "auto")
    # the last activation before the final 1x1x1 convolution (after the final GroupNorm), at full resolution
    assert (res.layer, tuple(res.raw.shape[2:])) == ("act_mod", (32, 32, 32))


def test_swinunetr_segmentation_target():
    # 64^3 is the smallest input: five halvings leave 2^3 at the bottleneck (InstanceNorm needs > 1 voxel)
    model = nets.SwinUNETR(
        in_channels=1,
        out_channels=2,
        feature_size=12,
        depths=(1, 1, 1, 1),
        num_heads=(1, 1, 1, 1),
        spatial_dims=3,
    )
    res = _seg_check(model, 64, "auto")
    assert (res.layer, tuple(res.raw.shape[2:])) == ("decoder1", (64, 64, 64))
