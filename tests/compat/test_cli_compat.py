"""``gradcam explain --model torchvision:NAME / timm:NAME --weights FILE`` on a folder of real photos."""

import json

import pytest
import torch
from PIL import Image

import gradcam
from gradcam.cli import main
from gradcam.image import load_image
from gradcam.io import demo_photo

# Real photos without scikit-image (not in this environment): the bundled demo photo, mirrored, and a crop.
PHOTOS = {
    "chelsea": lambda im: im,
    "chelsea_mirrored": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "chelsea_crop": lambda im: im.crop((40, 10, 340, 290)),
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    photo = Image.open(demo_photo()).convert("RGB")
    for name, fn in PHOTOS.items():
        fn(photo).save(folder / f"{name}.jpg", quality=92)
    return folder


@pytest.mark.parametrize(
    "lib,arch,layer", [("torchvision", "resnet18", "layer4"), ("timm", "resnet18", "layer4")]
)
def test_cli_explains_a_folder_with_a_library_model(lib, arch, layer, photos, tmp_path):
    torch.manual_seed(0)
    if lib == "torchvision":
        import torchvision

        model = torchvision.models.get_model(arch, weights=None)
    else:
        import timm

        model = timm.create_model(arch, pretrained=False)
    weights = tmp_path / "w.pt"
    torch.save(model.state_dict(), weights)
    out = tmp_path / "out"
    name = f"{lib}:{arch}"
    assert (
        main(
            ["explain", str(photos), "--model", name, "--weights", str(weights), "--out", str(out), "--json"]
        )
        == 0
    )
    loaded = gradcam.load_model(name, weights=str(weights))
    for stem in PHOTOS:
        rec = json.loads((out / f"{stem}.json").read_text())
        assert rec["model"] == name and rec["layer"] == layer
        photo = load_image(str(photos / f"{stem}.jpg"))
        with torch.no_grad():
            probs = loaded.model(loaded.preprocess(photo)[None]).softmax(1)[0]
        top = int(probs.argmax())
        assert rec["predictions"][0]["id"] == top and rec["explanations"][0]["id"] == top
        assert abs(rec["explanations"][0]["probability"] - float(probs[top])) < 1e-5
        assert Image.open(out / f"{stem}.png").size == photo.size
