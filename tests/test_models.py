"""The embedded EfficientNet-Lite0: architecture against the reference package, labels, preprocessing, loaders."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import gradcam
from gradcam.models import LoadedModel, imagenet_labels, load_model
from gradcam.models.efficientnet_lite import Conv2dSame, lite0_weights_path

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="session")
def lite0() -> LoadedModel:
    return load_model("efficientnet-lite0")


def _reference(image_size):
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the reference package prints on load
        ref = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=lite0_weights_path(), image_size=image_size
        )
    return ref.eval()


def test_logits_match_reference_package(lite0):
    """Same logits as the reference package at 224 x 224, and at 197 x 301 against its dynamic TF-'same' padding."""
    torch.manual_seed(0)
    ref = _reference(None)
    for shape in ((1, 3, 224, 224), (1, 3, 197, 301)):
        x = torch.randn(shape)
        with torch.no_grad():
            ours, theirs = lite0.model(x), ref(x)
        assert ours.shape == (1, 1000)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        feats = lite0.model.features(x)
    assert feats.shape == (1, 1280, math.ceil(197 / 32), math.ceil(301 / 32))


def test_conv2d_same_padding_formula():
    """o = ceil(i / s); TF puts the odd padding pixel after: a stride-2 3x3 sum conv on an even input."""
    conv = Conv2dSame(1, 1, 3, 2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    assert y.shape == (1, 1, 2, 2)
    # pad total 1 -> 0 before, 1 after: output (0,0) sums rows 0..2, cols 0..2 of x.
    assert y[0, 0, 0, 0].item() == x[0, 0, :3, :3].sum().item()
    assert y[0, 0, 1, 1].item() == x[0, 0, 2:, 2:].sum().item()  # last row/col is the zero padding


def test_loaded_model_contract(lite0):
    assert not lite0.model.training
    assert len(lite0.labels) == 1000
    assert lite0.labels[0] == "tench" and lite0.labels[281] == "tabby" and lite0.labels[282] == "tiger cat"
    assert lite0.layer == "_head_act"
    assert dict(lite0.model.named_modules())["_head_act"].__class__ is nn.ReLU6
    assert imagenet_labels() == lite0.labels


def test_every_activation_is_its_own_module_called_once(lite0):
    counts: dict = {}
    handles = [
        m.register_forward_hook(lambda mod, i, o: counts.__setitem__(id(mod), counts.get(id(mod), 0) + 1))
        for m in lite0.model.modules()
        if isinstance(m, nn.ReLU6)
    ]
    try:
        with torch.no_grad():
            lite0.model(torch.zeros(1, 3, 64, 64))
    finally:
        for h in handles:
            h.remove()
    assert len(counts) == len(handles) == 1 + 1 + 16 + 15  # stem, head, depthwise x16, expand x15
    assert set(counts.values()) == {1}


def test_load_prints_nothing(capsys):
    load_model()
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_preprocess_whole_image_short_side_and_normalisation(lite0):
    img = Image.new("RGB", (451, 300), (255, 0, 128))
    x = lite0.preprocess(img)
    # short side 300 -> 256; long side 451 * 256 / 300 = 384.9 -> 384 (a multiple of 32): no crop.
    assert x.shape == (3, 256, 384)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([1.0, -1.0, 128 / 255 * 2 - 1]))


def test_cat_photo_is_a_cat(lite0):
    import skimage.data

    x = lite0.preprocess(Image.fromarray(skimage.data.chelsea()))
    with torch.no_grad():
        top = lite0.model(x[None]).topk(3, dim=1).indices[0].tolist()
    assert set(top) <= CAT_CLASSES  # Egyptian cat, tiger cat, tabby


def test_class_id_by_name_and_id(lite0):
    assert lite0.class_id("tiger cat") == 282
    assert lite0.class_id("TIGER  Cat") == 282
    assert lite0.class_id("tabby cat") == 281  # a synonym of 'tabby'
    assert lite0.class_id(7) == 7 and lite0.class_id("7") == 7


def test_class_id_errors(lite0):
    with pytest.raises(ValueError, match=r"Unknown class name 'tigr cat'\. Closest names: 'tiger cat'"):
        lite0.class_id("tigr cat")
    with pytest.raises(ValueError, match=r"Closest names: 'barber chair', 'folding chair', 'rocking chair'"):
        lite0.class_id("chair")
    with pytest.raises(ValueError, match=r"'crane' is shared by several classes: 134 .*517"):
        lite0.class_id("crane")
    with pytest.raises(ValueError, match=r"Class id 1000 is out of range .* \(0\.\.999\)"):
        lite0.class_id(1000)


def test_public_exports():
    assert gradcam.load_model is load_model
    assert callable(gradcam.overlay) and callable(gradcam.explain)


# -- other models by name ---------------------------------------------------------------------------------


def tiny_net() -> nn.Module:
    """A factory for the ``package.module:factory`` form (this test module)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_factory_model_with_weights(tmp_path):
    ref = tiny_net()
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": ref.state_dict()}, path)
    loaded = load_model("test_models:tiny_net", weights=str(path))
    assert loaded.labels == ["class 0", "class 1", "class 2"]
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded.model(x), ref(x))
    res = gradcam.explain(np.zeros((20, 30, 3), np.uint8), model=loaded, target=1)
    assert res.class_ids == [1] and res.maps.shape == (1, 20, 30)


def test_bad_weights_file_is_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"other\.pt does not fit the model"):
        load_model("test_models:tiny_net", weights=str(path))
    with pytest.raises(FileNotFoundError, match="Weights file not found"):
        load_model("test_models:tiny_net", weights=str(tmp_path / "missing.pt"))


def test_missing_packages_and_unknown_names_say_what_to_do(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_vision(name, *a, **kw):
        if name.split(".")[0] in ("torchvision", "timm"):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_vision)
    with pytest.raises(ImportError, match=r"needs the package 'torchvision'.*pip install torchvision"):
        load_model("torchvision:resnet50")
    with pytest.raises(ImportError, match=r"needs the package 'timm'.*pip install timm"):
        load_model("timm:resnet18", weights="w.pt")
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(
        ValueError, match=r"Unknown model 'resnet50'\. A model is one of: 'efficientnet-lite0'"
    ):
        load_model("resnet50")
    with pytest.raises(ImportError, match=r"Cannot import module 'no_such_pkg\.mod'"):
        load_model("no_such_pkg.mod:build")


def test_torchscript_file_loads_and_layer_methods_explain_why_not(tmp_path):
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(tiny_net().eval()), str(path))
    loaded = load_model(str(path))
    assert isinstance(loaded.model, torch.jit.ScriptModule) and len(loaded.labels) == 3
    with pytest.raises(ValueError, match="TorchScript models do not run Python hooks"):
        gradcam.explain(np.zeros((16, 16, 3), np.uint8), model=loaded, layer="0")


def test_device_errors_are_clear():
    with pytest.raises(ValueError, match=r"Unknown device 'gpu0'; use cpu, cuda, cuda:N or mps\."):
        load_model(device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"sees no CUDA GPU; use --device cpu"):
            load_model(device="cuda")
