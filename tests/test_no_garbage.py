"""A call leaves no reference cycles behind: the private view, the search's taps and the hooks are freed when the
call returns, not at the garbage collector's next full pass (which, in a process holding torchvision's or timm's
hundreds of thousands of objects, costs several forwards and lands on whichever call triggers it)."""

import gc

import pytest
import torch
from nets import fc_net, gap_net

from gradcam.methods import registry

#: Methods that need an extra or an input larger than the test's.
SKIP = {"lrp": "needs zennit", "occlusion": "window larger than 16 px"}


@pytest.mark.parametrize("name", [n for n in registry.INFO if n not in SKIP])
@pytest.mark.parametrize("make", [gap_net, fc_net], ids=["gap", "fc"])
def test_first_and_warm_calls_leave_no_garbage_cycles(name, make):
    if name == "cam" and make is fc_net:
        pytest.skip("CAM needs a GAP head")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    registry.get(name)(make(5))(x)  # once before: what torch imports lazily on a first use is not the call's
    method = registry.get(name)(make(5))
    gc.collect()
    gc.disable()
    gc.freeze()  # the collections below then walk only what the calls made (a test process holds many objects)
    try:
        method(x)  # the first call: layer="auto" searched in one pass
        first = gc.collect()
        method(x)
        warm = gc.collect()
    finally:
        gc.unfreeze()
        gc.enable()
    assert (first, warm) == (0, 0)


def test_the_differentiable_mode_leaves_no_garbage_cycles_once_its_graph_is_used():
    import gradcam

    net = gap_net(5)
    x = torch.randn(2, 3, 16, 16)

    def step():
        res = gradcam.GradCAM(net, differentiable=True)(x, target=[0, 3])
        return torch.autograd.grad(res.maps.sum(), list(net.parameters()), allow_unused=True)

    step()
    gc.collect()
    gc.disable()
    try:
        grads = step()
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert grads[0] is not None and float(grads[0].abs().sum()) > 0  # the map did reach the first conv
