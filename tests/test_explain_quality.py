"""`gradcam explain --quality`: the input size and box threshold of the embedded model, from one table of
measured settings."""
import pytest

import gradcam.api
import gradcam.photos
from gradcam.cli import main
from gradcam.commands.explain import Job
from gradcam.models import QUALITY_BOX_THRESHOLDS, QUALITY_SIZES, load_model


def test_default_size_comes_from_the_measured_table():
    assert load_model("efficientnet-lite0").size == QUALITY_SIZES["standard"] == 256


@pytest.mark.parametrize("quality", ["standard", "high"])
def test_quality_sets_the_input_size(quality, tmp_path, monkeypatch):
    seen = []

    def fake(images, loaded, method, target, k, paths, inputs=None, box_threshold=None):
        seen.append((loaded.size, box_threshold))
        return []

    monkeypatch.setattr(gradcam.photos, "explain_batch", fake)
    main(["explain", "--demo", "--quality", quality, "--out", str(tmp_path)])
    main(["explain", "--demo", "--quality", quality, "--out", str(tmp_path), "--box-threshold", "0.15"])
    assert seen == [(QUALITY_SIZES[quality], QUALITY_BOX_THRESHOLDS[quality]), (QUALITY_SIZES[quality], 0.15)]


def test_defaults_agree():
    # The explain job's default threshold (kept free of a torch import) is the API's.
    assert Job.__dataclass_fields__["box_threshold"].default == gradcam.api.BOX_THRESHOLD == QUALITY_BOX_THRESHOLDS["standard"]
