"""Fixed-size models (ViT) through ``gradcam explain``: the model's own input size and normalisation,
maps at their 14x14 token grid, and a one-line error naming the input shape and --size."""

import json

import pytest
import torch
from PIL import Image

import gradcam
from gradcam.api import get_method
from gradcam.cli import main
from gradcam.io import demo_photo


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    photo = Image.open(demo_photo()).convert("RGB")  # 451 x 300: not square, not 224
    photo.save(folder / "chelsea.jpg", quality=92)
    photo.crop((40, 10, 340, 290)).save(folder / "chelsea_crop.jpg", quality=92)
    return folder


def _vit(lib):
    torch.manual_seed(0)
    if lib == "timm":
        import timm

        return "timm:vit_small_patch16_224", timm.create_model("vit_small_patch16_224", pretrained=False)
    import torchvision

    model = torchvision.models.get_model("vit_b_16", weights=None)
    torch.nn.init.normal_(
        model.heads.head.weight, std=0.02
    )  # torchvision's head starts at zero: re-initialise
    return "torchvision:vit_b_16", model


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
def test_vit_explains_a_folder_at_its_own_size_with_a_14x14_map(lib, photos, tmp_path, capsys):
    name, model = _vit(lib)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    assert (
        main(
            [
                "explain",
                str(photos),
                "--model",
                name,
                "--weights",
                str(weights),
                "--out",
                str(out),
                "--json",
                "--maps",
            ]
        )
        == 0
    )
    loaded = gradcam.load_model(name, weights=str(weights))
    assert loaded.fixed_size == (224, 224)
    if lib == "timm":  # timm's data config for this ViT: mean = std = 0.5
        assert loaded.mean == (0.5, 0.5, 0.5) and loaded.std == (0.5, 0.5, 0.5)
    else:  # torchvision's weights transforms: ImageNet's
        assert loaded.mean == (0.485, 0.456, 0.406) and loaded.std == (0.229, 0.224, 0.225)
    for stem in ("chelsea", "chelsea_crop"):
        maps = torch.load(out / f"{stem}.maps.pt", weights_only=True)
        assert maps.shape == (1, 224, 224)
        rec = json.loads((out / f"{stem}.json").read_text())
        assert rec["model"] == name
        x = loaded.preprocess(Image.open(photos / f"{stem}.jpg").convert("RGB"))
        assert x.shape == (3, 224, 224)
        res = get_method(loaded, "gradcam")(x[None])
        assert tuple(res.raw.shape[-2:]) == (14, 14)  # the ViT's 14 x 14 patch-token grid


@pytest.mark.parametrize("lib", ["timm", "torchvision"])
def test_a_wrong_size_is_a_one_line_error_naming_shape_and_option(lib, photos, tmp_path, capsys):
    name, model = _vit(lib)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    rc = main(
        [
            "explain",
            str(photos / "chelsea.jpg"),
            "--model",
            name,
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "o"),
            "--crop",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if "cannot take an input" in ln]
    assert len(line) == 1 and "(1, 3, 256, 384)" in line[0] and "--size N --crop resize" in line[0]
    # --size 224 --crop resize puts it right again; Python takes the same options.
    r = gradcam.explain(
        str(photos / "chelsea.jpg"), model=name, weights=str(weights), size=224, crop="resize"
    )
    assert r.input_maps.shape == (1, 224, 224)
