"""The cascading-randomisation sanity check on a toy model trained in the test (a second or two)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcam import GradCAM
from gradcam.metrics import cascading_randomization
from gradcam.metrics.sanity import parametrised_layers


def _data(n, seed):
    """16x16 noise images with one 5x5 square, red (class 0) or blue (class 1), at a random place."""
    g = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.1 * torch.rand(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(0, 11, (n, 2), generator=g)
    for i in range(n):
        r, c = pos[i].tolist()
        x[i, :, r : r + 5, c : c + 5] = torch.tensor([0.9, 0.1, 0.1] if y[i] == 0 else [0.1, 0.1, 0.9]).view(
            3, 1, 1
        )
    return x, y


@pytest.fixture(scope="module")
def trained():
    return _train()  # one thread, as the whole suite (conftest.py)


def _train():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    x, y = _data(256, 0)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=0.02)
    for _ in range(80):
        loss = F.cross_entropy(net(x), y)
        for p, g in zip(params, torch.autograd.grad(loss, params)):
            p.grad = g
        opt.step()
    net.eval()
    xt, yt = _data(32, 1)
    assert (net(xt).argmax(1) == yt).float().mean() > 0.95
    return net, xt, yt


def test_gradcam_correlation_falls_as_layers_are_randomised(trained):
    net, x, y = trained
    before = copy.deepcopy(net.state_dict())
    res = cascading_randomization(net, lambda m: GradCAM(m, layer="3"), x, y, seed=0)
    assert res.layers == ["6", "2", "0"] == parametrised_layers(net)[::-1]
    c = res.correlation
    assert c[0].item() == 1.0
    assert c[-1] < 0.3  # fully randomised: the map no longer follows the trained one
    assert c[1:].max() < 0.8  # already the top layer's randomisation changes the map
    assert res.per_image.shape == (4, 32)
    # the user's model is untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_randomisation_is_cumulative_from_the_top(trained):
    """After step i, the layers randomised so far ALL differ from the trained ones, the others are intact."""
    net, x, y = trained
    trained_params = {k: v.clone() for k, v in net.state_dict().items()}
    changed_per_call = []

    def explainer(m):
        changed_per_call.append(
            sorted(
                {k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, trained_params[k])}
            )
        )
        return GradCAM(m, layer="3")

    res = cascading_randomization(net, explainer, x, y, seed=0)
    assert res.layers == ["6", "2", "0"]
    assert changed_per_call == [[], ["6"], ["2", "6"], ["0", "2", "6"]]


def test_a_model_independent_map_passes_unchanged(trained):
    net, x, y = trained

    class Edges:
        """A map that ignores the model: the image's own intensity (an 'edge detector')."""

        def __init__(self, model):
            self.model = model

        def __call__(self, x, target=None):
            class R:
                maps = x.mean(1, keepdim=True)

            return R

    res = cascading_randomization(net, Edges, x, y)
    assert torch.allclose(res.correlation, torch.ones(4))


def test_unknown_layer_names_are_reported(trained):
    net, x, y = trained
    with pytest.raises(ValueError, match=r"Unknown layer\(s\) \['head'\]"):
        cascading_randomization(net, lambda m: GradCAM(m, layer="3"), x, y, layers=["head"])
