"""LRP through zennit (needs torchvision, so it runs in the compatibility environment)."""

import copy

import pytest
import torch
from torch import nn

zennit = pytest.importorskip("zennit")
torchvision = pytest.importorskip("torchvision")

from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat  # noqa: E402
from zennit.torchvision import ResNetCanonizer  # noqa: E402

from gradcam.methods import registry  # noqa: E402


def vgg_like():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(32, 16),
        nn.ReLU(),
        nn.Linear(16, 5),
    )
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def zennit_reference(model, x, cls, composite):
    model = copy.deepcopy(model).eval()
    with Gradient(model=model, composite=composite) as attributor:
        _, rel = attributor(x.clone(), torch.eye(5)[cls])
    return rel


@pytest.mark.parametrize(
    "name,make",
    [
        ("epsilon-plus-flat", lambda x: EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])),
        (
            "epsilon-gamma-box",
            lambda x: EpsilonGammaBox(
                low=torch.full_like(x, -1.0),
                high=torch.full_like(x, 1.0),
                canonizers=[SequentialMergeBatchNorm()],
            ),
        ),
        ("alpha-beta", lambda x: EpsilonAlpha2Beta1(canonizers=[SequentialMergeBatchNorm()])),
    ],
)
def test_lrp_matches_zennit_and_leaves_the_model_unchanged(name, make):
    net = vgg_like()
    before = copy.deepcopy(net.state_dict())
    torch.manual_seed(1)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    res = registry.get("lrp")(net, composite=name)(x, top_k=2)
    for k in range(2):
        cls = res.targets[:, k]
        ref = zennit_reference(net, x, cls, make(x))
        assert (res.pixels[:, k] - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert not any(m._forward_hooks or m._backward_hooks for m in net.modules())


def test_lrp_on_a_torchvision_resnet_uses_the_resnet_canonizer():
    net = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    res = registry.get("lrp")(net)(x)
    ref = zennit_reference(net, x, res.targets[:, 0], EpsilonPlusFlat(canonizers=[ResNetCanonizer()]))
    assert (res.pixels[:, 0] - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
