"""`gradcam explain --quality`: the input size of the embedded model, from one table of measured sizes."""
import pytest

import gradcam.api
from gradcam.cli import main
from gradcam.models import QUALITY_SIZES, load_model


def test_default_size_comes_from_the_measured_table():
    assert load_model("efficientnet-lite0").size == QUALITY_SIZES["standard"] == 256


@pytest.mark.parametrize("quality", ["standard", "high"])
def test_quality_sets_the_input_size(quality, tmp_path, monkeypatch):
    seen = []

    def fake(images, loaded, method, target, k, paths, inputs=None):
        seen.append(loaded.size)
        return []

    monkeypatch.setattr(gradcam.api, "explain_batch", fake)
    main(["explain", "--demo", "--quality", quality, "--out", str(tmp_path)])
    assert seen == [QUALITY_SIZES[quality]]
