"""Several methods on one batch (gradcam.explain_many, the folder job's --method a,b,c): the methods that share a
layer share one capture (one forward, one backward), and every map equals that of the method run alone."""

from __future__ import annotations

import pytest
import torch
from models_zoo import TinyViT
from torch import nn

import gradcam
from gradcam.methods import registry

ATOL = 1e-6  # float32 maps in [0, 1]: the shared capture is the same arithmetic as each method's own


class _CountBackward(torch.autograd.Function):
    calls = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        _CountBackward.calls += 1
        return g


class Net(nn.Module):
    """conv - BN (a signed layer) - ReLU - conv - ReLU - GAP - linear; counts its forwards and its backwards."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.c2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.fc = nn.Linear(8, 5)
        self.forwards = []  # a list: the engine runs a private copy of the module, sharing its attributes

    def forward(self, x):
        self.forwards.append(x.shape[0])
        a = torch.relu(self.c2(torch.relu(self.bn(self.c1(x)))))
        return self.fc(_CountBackward.apply(a.mean((2, 3))))


def _x(n=3, size=12):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _alone(name, model, layer, x, **call):
    return registry.get(name)(model, layer=layer)(x, **call)


def _count(model, fn):
    model.forwards.clear()
    _CountBackward.calls = 0
    out = fn()
    return out, len(model.forwards), _CountBackward.calls


@pytest.mark.parametrize("layer", ["c2", "auto"])
def test_gradcam_eigencam_layercam_share_one_forward_and_one_backward(layer):
    model, x = Net(), _x()
    methods = [registry.get(n)(model, layer=layer) for n in ("gradcam", "eigencam", "layercam")]
    res, forwards, backwards = _count(model, lambda: gradcam.explain_many(methods, x, top_k=2))
    assert (forwards, backwards) == (1, 1)  # each alone: three forwards, two backwards
    res2, forwards, backwards = _count(model, lambda: gradcam.explain_many(methods, x, top_k=2))
    assert (forwards, backwards) == (1, 1)  # warm ("auto": the chosen layer cached) the same
    for name, r, r2 in zip(("gradcam", "eigencam", "layercam"), res, res2):
        alone = _alone(name, Net(), layer, x, top_k=2)
        assert r.method == name and r.layer == alone.layer == "c2"
        torch.testing.assert_close(r.maps, alone.maps, rtol=0, atol=ATOL)
        torch.testing.assert_close(r2.maps, alone.maps, rtol=0, atol=ATOL)


def test_every_map_equals_its_method_alone_with_options_on_a_signed_layer():
    # 'bn' is signed (before the ReLU): HiResCAM, element-wise Grad-CAM and Grad-CAM differ there; eigen_smooth
    # (a non-default option) on one method only; Score-CAM (perturbation) and Finer-CAM run as they do alone.
    model, x = Net(), _x()
    names = [
        "gradcam",
        "hirescam",
        "gradcam-elementwise",
        "gradcam++",
        "xgradcam",
        "eigengradcam",
        "scorecam",
    ]
    methods = [registry.get(n)(model, layer="bn") for n in names]
    methods.append(registry.get("layercam")(model, layer="bn", eigen_smooth=True))
    methods.append(registry.get("finercam")(model, layer="bn"))
    target = torch.tensor([1, 4, 2])
    res, forwards, backwards = _count(model, lambda: gradcam.explain_many(methods, x, target=target))
    assert backwards == 1 + 1  # the shared capture's, and Finer-CAM's own (Score-CAM needs none)
    alone = [registry.get(n)(Net(), layer="bn")(x, target=target) for n in names]
    alone.append(registry.get("layercam")(Net(), layer="bn", eigen_smooth=True)(x, target=target))
    alone.append(registry.get("finercam")(Net(), layer="bn")(x, target=target))
    assert not torch.allclose(alone[0].maps, alone[1].maps, atol=1e-3)  # the layer is signed: they differ
    for r, a in zip(res, alone):
        assert r.method == a.method
        torch.testing.assert_close(r.maps, a.maps, rtol=0, atol=ATOL)
        torch.testing.assert_close(r.scores, a.scores, rtol=0, atol=0)
    cf = gradcam.explain_many(methods[:2], x, target=target, counterfactual=True)
    for r, n in zip(cf, names[:2]):
        a = registry.get(n)(Net(), layer="bn")(x, target=target, counterfactual=True)
        torch.testing.assert_close(r.maps, a.maps, rtol=0, atol=ATOL)


def test_a_vit_shares_what_it_can_and_eigencam_keeps_its_own_layer():
    # On a ViT the gradient methods choose a layer inside the last block, Eigen-CAM the latest map: two captures.
    model = TinyViT(depth=3)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    calls = []
    model.register_forward_pre_hook(lambda m, i: calls.append(1))
    names = ("gradcam", "eigencam", "layercam")
    res = gradcam.explain_many([registry.get(n)(model) for n in names], x)
    assert len(calls) == 2
    for name, r in zip(names, res):
        a = registry.get(name)(model)(x)
        assert r.layer == a.layer
        torch.testing.assert_close(r.maps, a.maps, rtol=0, atol=ATOL)
    assert res[0].layer == res[2].layer == "blocks.2.norm1" != res[1].layer


def test_a_refused_option_raises_before_any_work():
    model, x = Net(), _x()
    methods = [registry.get(n)(model, layer="c2") for n in ("gradcam", "eigencam")]
    with pytest.raises(ValueError, match=r"EigenCAM \('eigencam'\) cannot honour counterfactual=True"):
        gradcam.explain_many(methods, x, counterfactual=True)
    assert model.forwards == []


def test_the_folder_job_runs_three_methods_on_the_forwards_of_one(tmp_path, monkeypatch, capsys):
    import importlib

    import skimage.data
    from PIL import Image

    from gradcam.cli import main

    pipeline_run = importlib.import_module("gradcam.pipeline.run")

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage.data.chelsea()).reduce(3).save(folder / "cat.png")
    Image.fromarray(skimage.data.coffee()).reduce(4).save(folder / "cup.png")
    forwards = []
    real = pipeline_run._load_model

    def load(options):
        loaded = real(options)
        loaded.model.register_forward_pre_hook(lambda m, i: forwards.append(i[0].shape[0]))
        return loaded

    monkeypatch.setattr(pipeline_run, "_load_model", load)
    assert main(["explain", str(folder), "--out", str(tmp_path / "one")]) == 0
    one = list(forwards)
    forwards.clear()
    many = ["explain", str(folder), "--out", str(tmp_path / "many"), "--method", "gradcam,eigencam,layercam"]
    assert main(many) == 0
    assert forwards == one == [2]  # both photos in one batch: one forward for all three methods
    assert main(["explain", str(folder), "--out", str(tmp_path / "lc"), "--method", "layercam"]) == 0
    for stem in ("cat", "cup"):  # each overlay is that of a one-method run, byte for byte
        got = tmp_path / "many"
        assert (got / f"{stem}.png").read_bytes() == (tmp_path / "one" / f"{stem}.png").read_bytes()
        assert (got / f"{stem}.layercam.png").read_bytes() == (
            tmp_path / "lc" / f"{stem}.layercam.png"
        ).read_bytes()
