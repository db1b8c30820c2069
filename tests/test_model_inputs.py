"""Model input options: a fixed-size model (an ``image_size`` attribute) gets the whole photo at exactly its
size; --size/--crop/--mean/--std override; a refused input is one line naming the shape and the option."""

import sys
import types

import pytest
import torch
from PIL import Image
from torch import nn

import gradcam
from gradcam.cli import main
from gradcam.io import demo_photo
from gradcam.models import load_model
from gradcam.models.inputs import configure_input, parse_size, parse_triple


class FixedNet(nn.Module):
    """Refuses any input but 3 x 64 x 64, like a ViT; 4 x 4 grid at ``features``."""

    image_size = 64

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 16, stride=16), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        if tuple(x.shape[-2:]) != (64, 64):
            raise AssertionError(f"Input size ({x.shape[-2]}x{x.shape[-1]}) doesn't match model (64x64).")
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture
def fixed(monkeypatch):
    mod = types.ModuleType("fixed_zoo")
    mod.make = FixedNet
    monkeypatch.setitem(sys.modules, "fixed_zoo", mod)
    return "fixed_zoo:make"


def test_fixed_size_model_gets_the_whole_photo_at_its_size(fixed, tmp_path, capsys):
    lm = load_model(fixed)
    assert lm.fixed_size == (64, 64) and lm.input_source == "image_size attribute"
    photo = Image.open(demo_photo()).convert("RGB")  # 451 x 300
    x = lm.preprocess(photo)
    ref = (
        torch.from_numpy(__import__("numpy").array(photo.resize((64, 64), Image.BICUBIC))).permute(2, 0, 1)
        / 255.0
    )
    torch.testing.assert_close(
        x, (ref - torch.tensor(lm.mean).view(3, 1, 1)) / torch.tensor(lm.std).view(3, 1, 1)
    )
    assert main(["explain", "--demo", "--model", fixed, "--out", str(tmp_path), "--maps"]) == 0
    maps = torch.load(tmp_path / "demo_chelsea.maps.pt", weights_only=True)
    assert maps.shape == (1, 64, 64)
    r = gradcam.explain(demo_photo(), model=fixed, size=64, crop="resize", mean=0.5, std=(0.5, 0.5, 0.5))
    assert r.input_maps.shape == (1, 64, 64) and r.maps.shape == (1, 300, 451)


def test_a_refused_input_is_one_line_naming_shape_and_option(fixed, tmp_path, capsys):
    assert main(["explain", "--demo", "--model", fixed, "--out", str(tmp_path), "--crop", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(
        "gradcam: error: The model fixed_zoo:make cannot take an input of shape (1, 3, 256, 384) "
        "(AssertionError: Input size (256x384) doesn't match model (64x64).); give it a fixed "
        "input with --size N --crop resize"
    )
    assert main(["explain", "--demo", "--model", fixed, "--out", str(tmp_path), "--size", "48"]) == 2
    assert "cannot take an input of shape (1, 3, 48, 48)" in capsys.readouterr().err


def test_size_mean_std_options_apply_and_bad_values_say_what_they_are():
    lm = load_model("efficientnet-lite0")
    configure_input(lm, size=320, mean="0.4,0.4,0.4", std=0.25)
    assert (lm.size, lm.mean, lm.std, lm.fixed_size) == (320, (0.4, 0.4, 0.4), (0.25, 0.25, 0.25), None)
    assert lm.preprocess(Image.new("RGB", (640, 480))).shape == (3, 320, 416)
    configure_input(lm, size="224x256", crop="resize")
    assert lm.fixed_size == (224, 256) and lm.preprocess(Image.new("RGB", (640, 480))).shape == (3, 224, 256)
    assert parse_size("224×320") == (224, 320) and parse_triple("1 2 3", "mean") == (1.0, 2.0, 3.0)
    with pytest.raises(
        ValueError, match=r"size must be a number of pixels \(224\) or HxW \(224x320\); got 'big'"
    ):
        parse_size("big")
    with pytest.raises(ValueError, match="std must be three positive numbers"):
        parse_triple("0.5,0,0.5", "std")
    with pytest.raises(ValueError, match="short side .* for an exact HxW input add --crop resize"):
        configure_input(load_model("efficientnet-lite0"), size="224x256")
    with pytest.raises(ValueError, match="crop must be one of auto, none, resize"):
        configure_input(load_model("efficientnet-lite0"), crop="center")
