"""Defects a new user hit: volume results, compiled models, inference mode, channels-last outputs, the
CLI's error handling, cached models kept alive, peaks and boxes conventions, constant outputs, targets."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

import gradcam
from gradcam import api, cli
from gradcam.explanation import Explanation


def _exp(maps: torch.Tensor) -> Explanation:
    n, k = maps.shape[:2]
    return Explanation(
        maps=maps,
        raw=maps,
        weights=None,
        targets=torch.zeros(n, k, dtype=torch.long),
        scores=torch.zeros(n, k),
        layer="l",
    )


# -- volumes: repr, peaks, boxes, overlay, rich display -------------------------------------------------


def test_volume_results_repr_peaks_boxes_overlay_and_display():
    m = torch.zeros(1, 1, 4, 5, 6)
    m[0, 0, 1:3, 2:4, 3:6] = 0.6  # a block: z 1..2, y 2..3, x 3..5
    m[0, 0, 2, 3, 4] = 1.0  # its peak at (x, y, z) = (4, 3, 2)
    exp = _exp(m)
    assert repr(exp) == "Explanation(method='gradcam', layer='l', maps=(1, 1, 4, 5, 6), targets=[[0]])"
    assert exp.peaks().tolist() == [[[4, 3, 2]]]
    assert exp.boxes().tolist() == [[[3, 2, 1, 6, 4, 3]]]  # (x0, y0, z0, x1, y1, z1), exclusive ends
    img = exp.overlay(torch.rand(4, 5, 6), n=0, k=0)
    assert img.height == 5 and img.width >= 6
    html = exp._repr_html_()
    assert "slice z = 2" in html and "<img" in html


def test_volume_model_result_repr_and_peaks():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    res = gradcam.GradCAM(model)(torch.randn(2, 1, 6, 8, 10))
    assert "maps=(2, 1, 6, 8, 10)" in repr(res)
    pk = res.peaks()
    assert pk.shape == (2, 1, 3)
    for i in range(2):
        x, y, z = pk[i, 0].tolist()
        assert res.maps[i, 0, z, y, x] == res.maps[i, 0].max()


def test_pixel_explanation_of_a_volume():
    from gradcam.explanation import normalize
    from gradcam.pixels import PixelExplanation, saliency

    torch.manual_seed(0)
    pixels = torch.randn(1, 1, 1, 4, 6, 8)  # (N, K, C, D, H, W): a pixel-space result of a volume
    raw = saliency(pixels)
    res = PixelExplanation(
        maps=normalize(raw, dims=3),
        raw=raw,
        weights=None,
        targets=torch.tensor([[1]]),
        scores=torch.zeros(1, 1),
        layer="input",
        method="gradient",
        pixels=pixels,
    )
    assert (
        repr(res)
        == "PixelExplanation(method='gradient', layer='input', pixels=(1, 1, 1, 4, 6, 8), targets=[[1]])"
    )
    x, y, z = res.peaks()[0, 0].tolist()
    assert res.maps[0, 0, z, y, x] == 1.0 and res.boxes().shape == (1, 1, 6)
    assert "slice z = " in res._repr_html_() and res.image().shape == (1, 1, 1, 4, 6, 8)


# -- torch.compile --------------------------------------------------------------------------------------


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.c2(torch.relu(self.c1(x)))).mean((2, 3)))


def test_compiled_model_takes_its_original_layer_names():
    net = Net()
    compiled = torch.compile(net, backend="eager")
    x = torch.randn(1, 3, 16, 16)
    ref = gradcam.GradCAM(net, layer="c2")(x)
    for name in ("c2", "_orig_mod.c2"):
        res = gradcam.GradCAM(compiled, layer=name)(x)
        assert res.layer == "c2"
        torch.testing.assert_close(res.maps, ref.maps)
    auto = gradcam.GradCAM(compiled)(x)
    assert auto.layer == "c2"
    torch.testing.assert_close(auto.maps, ref.maps)


# -- inference mode -----------------------------------------------------------------------------------


def test_inference_mode_says_why_and_no_grad_works():
    net = Net()
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        with pytest.raises(
            RuntimeError, match=r"cannot be computed inside torch.inference_mode\(\).*outside"
        ):
            gradcam.GradCAM(net)(x)
        with pytest.raises(RuntimeError, match=r"inside torch.inference_mode\(\)"):
            gradcam.GradCAM(net, layer="c2")(x)
        with pytest.raises(RuntimeError, match=r"inside torch.inference_mode\(\)"):
            gradcam.Gradient(net)(x)
        made_inside = torch.randn(1, 3, 16, 16)
    with pytest.raises(RuntimeError, match=r"created inside torch.inference_mode\(\).*clone"):
        gradcam.GradCAM(net, layer="c2")(made_inside)
    ref = gradcam.GradCAM(net, layer="c2")(made_inside.clone())
    with torch.no_grad():
        res = gradcam.GradCAM(net, layer="c2")(made_inside.clone())
    torch.testing.assert_close(res.maps, ref.maps)
    assert float(res.maps.max()) == 1.0


# -- channels-last outputs ----------------------------------------------------------------------------


class ChannelsLast(nn.Module):
    """Stride-4 stem, then (N, h, w, C) and a Linear on the last axis (as ConvNeXt/Swin blocks)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.lin = nn.Linear(16, 16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        h = self.lin(self.stem(x).permute(0, 2, 3, 1))
        return self.head(torch.relu(h).mean((1, 2)))


def test_channels_last_linear_read_on_the_inputs_grid():
    model = ChannelsLast()
    x = torch.randn(1, 3, 32, 48)
    res = gradcam.GradCAM(model)(x, target=2)
    assert res.layer == "lin" and res.raw.shape == (1, 1, 8, 12)  # an 8 x 12 grid with C = 16, not C = 8
    a = model.lin(model.stem(x).permute(0, 2, 3, 1)).detach().requires_grad_(True)
    y = model.head(torch.relu(a).mean((1, 2)))[0, 2]
    (g,) = torch.autograd.grad(y, a)
    want = torch.relu((g.mean((1, 2), keepdim=True) * a).sum(-1))  # (1, 8, 12)
    torch.testing.assert_close(res.raw[:, 0], want.detach(), rtol=1e-5, atol=1e-6)


class Square(nn.Module):
    """A patch embedding written functionally: no submodule whose kind tells the layout."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 3, 4, 4) * 0.1)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, stride=4)


class AmbiguousNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.block = Square()  # (N, 8, 8, 8) on 32 x 32: either reading fits, and its kind does not tell
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.block(x).mean((2, 3)))


def test_ambiguous_layout_warns_instead_of_guessing_silently():
    with pytest.warns(RuntimeWarning, match=r"reads as channels-first \(N, C, h, w\) or channels-last"):
        res = gradcam.GradCAM(AmbiguousNet())(torch.randn(1, 3, 32, 32))
    assert res.layer == "block" and res.raw.shape == (1, 1, 8, 8)


# -- the CLI: programming errors are not usage errors ---------------------------------------------------


def _parser_raising(exc):
    import argparse

    def build(*_):
        p = argparse.ArgumentParser(prog="gradcam")
        p.add_argument("--debug", action="store_true")
        sub = p.add_subparsers(dest="command")
        boom = sub.add_parser("boom")

        def func(args):
            raise exc

        boom.set_defaults(func=func)
        return p

    return build


def test_cli_bug_exits_1_with_one_line_and_debug_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(TypeError("unsupported operand")))
    monkeypatch.delenv("GRADCAM_DEBUG", raising=False)
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "gradcam: internal error: TypeError: unsupported operand (run with --debug "
        "or GRADCAM_DEBUG=1 for the traceback)"
    ]
    assert cli.main(["--debug", "boom"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv("GRADCAM_DEBUG", "1")
    assert cli.main(["boom"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_cli_bad_input_is_still_a_usage_error(monkeypatch, capsys):
    monkeypatch.setattr(cli, "build_parser", _parser_raising(ValueError("--alpha must be in [0, 1]; got 2.")))
    assert cli.main(["boom"]) == 2
    assert capsys.readouterr().err == "gradcam: error: --alpha must be in [0, 1]; got 2.\n"
    with pytest.raises(SystemExit) as e:
        cli.main(["--no-such-option"])
    assert e.value.code == 2


# -- gradcam.explain's caches do not keep models alive -------------------------------------------------


def test_method_cache_frees_the_model_with_its_last_reference():
    from gradcam.models import LoadedModel

    model = Net().eval()
    loaded = LoadedModel(model=model, labels=["a", "b", "c"], layer="c2", name="net")
    m = api.get_method(loaded, "gradcam")
    assert api.get_method(loaded, "gradcam") is m  # cached while the model lives
    gone, key = weakref.ref(model), id(loaded)
    assert key in api._METHODS
    del model, loaded, m
    gc.collect()
    assert gone() is None
    assert key not in api._METHODS


def test_named_models_are_an_lru_of_stated_size(monkeypatch):
    monkeypatch.setattr(api, "_MODELS", type(api._MODELS)())
    made = []

    def fake_load(name, weights=None):
        made.append(name)
        return object()

    monkeypatch.setattr(api, "load_model", fake_load)
    for i in range(api.MODEL_CACHE_SIZE + 2):
        api.get_model(f"m{i}")
    assert len(api._MODELS) == api.MODEL_CACHE_SIZE == 4
    api.get_model("m5")
    api.get_model("m0")  # evicted: loaded again
    assert made == [f"m{i}" for i in range(6)] + ["m0"]


# -- peaks (x, y) and boxes from Python, one default threshold, box rules -------------------------------


def test_explanation_peaks_are_x_y_and_boxes_use_the_cli_default():
    from gradcam.regions import BOX_THRESHOLD, PAPER_BOX_THRESHOLD

    m = torch.zeros(1, 1, 6, 10)
    m[0, 0, 1, 7] = 1.0  # row 1, column 7
    m[0, 0, 4, 1:4] = 0.3  # below 0.45 of the max, above 0.15
    exp = _exp(m)
    assert exp.peaks().tolist() == [[[7, 1]]]
    assert BOX_THRESHOLD == api.BOX_THRESHOLD == 0.45 and PAPER_BOX_THRESHOLD == 0.15
    assert exp.boxes().tolist() == [[[7, 1, 8, 2]]]
    assert exp.boxes(threshold=0.15, rule="all").tolist() == [[[1, 1, 8, 5]]]
    from PIL import Image

    photo = Image.new("RGB", (20, 12), (0, 0, 0))
    over = exp.overlay(photo, alpha=1.0, colormap="gray")
    import numpy as np

    grey = np.asarray(over)[..., 0]
    y, x = np.unravel_index(grey.argmax(), grey.shape)
    assert over.size == (20, 12) and 14 <= x < 16 and 2 <= y < 4  # the peak (7, 1) at twice the map's scale
    from gradcam.metrics import pointing

    xy, valid = pointing.peaks(m)
    assert xy.tolist() == [[[7, 1]]] and valid.tolist() == [[True]]


def test_box_rules_largest_peak_all():
    from gradcam.regions import map_boxes

    m = torch.zeros(12, 20)
    m[1:3, 1:3] = 1.0  # small segment holding the peak
    m[6:11, 8:18] = 0.6  # the largest segment
    assert map_boxes(m, 0.45, "largest").tolist() == [8, 6, 18, 11]
    assert map_boxes(m, 0.45, "peak").tolist() == [1, 1, 3, 3]
    assert map_boxes(m, 0.45, "all").tolist() == [1, 1, 18, 11]
    with pytest.raises(ValueError, match="box rule must be one of largest, peak, all"):
        map_boxes(m, 0.45, "biggest")


def test_explain_batch_stores_the_box_rule(monkeypatch):
    from PIL import Image

    from gradcam.models import LoadedModel

    torch.manual_seed(0)
    loaded = LoadedModel(model=Net().eval(), labels=["a", "b", "c"], layer="c2", name="net", size=32)
    img = Image.new("RGB", (40, 32), (120, 30, 200))
    method = api.get_method(loaded, "gradcam")
    for rule in ("largest", "peak", "all"):
        res = api.explain_batch([img], loaded, method, box_rule=rule)[0]
        assert res.box_rule == rule and res.to_dict()["explanations"][0]["box_rule"] == rule
    with pytest.raises(ValueError, match="box rule"):
        api.explain_batch([img], loaded, method, box_rule="nope")


# -- a constant output; targets that cannot match --------------------------------------------------------


def test_zero_head_says_the_output_does_not_depend_on_the_input_and_caches_it():
    net = Net()
    nn.init.zeros_(net.fc.weight)
    calls = []
    net.c1.register_forward_hook(lambda *a: calls.append(1))
    method = gradcam.GradCAM(net)
    x = torch.randn(1, 3, 16, 16)
    with pytest.warns(RuntimeWarning, match="The model's output does not depend on its input") as rec:
        res = method(x)
    assert not any("Pick a layer" in str(w.message) for w in rec)
    assert torch.equal(res.maps, torch.zeros_like(res.maps))
    first = len(calls)
    calls.clear()
    with pytest.warns(RuntimeWarning, match="does not depend on its input"):
        method(x)
    assert len(calls) == 1 < first  # the search is not repeated: one capture


def test_a_list_of_segmentation_targets_gives_one_map_each():
    from gradcam.targets import segmentation

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    x = torch.randn(2, 3, 12, 12)
    both = gradcam.GradCAM(model, layer="1")(x, target=[segmentation(1), segmentation(2)])
    for k, c in enumerate((1, 2)):
        one = gradcam.GradCAM(model, layer="1")(x, target=segmentation(c))
        torch.testing.assert_close(both.maps[:, k], one.maps[:, 0])
    with pytest.raises(TypeError, match="mixes callables and class ids"):
        gradcam.GradCAM(model, layer="1")(x, target=[segmentation(1), 2])


class Detector(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        s = torch.sigmoid(self.conv(x).mean((1, 2, 3)))
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 8.0, 8.0]]),
                "scores": s[i : i + 1],
                "labels": torch.tensor([1]),
            }
            for i in range(x.shape[0])
        ]


def test_detection_box_matching_nothing_says_so_with_the_best_iou():
    from gradcam.targets import detection

    with pytest.warns(RuntimeWarning, match=r"no detection matched box 0 of image 0; best IoU 0\.14") as rec:
        gradcam.GradCAM(Detector(), layer="conv")(
            torch.randn(1, 3, 16, 16), target=detection([[4, 4, 12, 12]])
        )
    assert not any("no gradient of the target reaches" in str(w.message) for w in rec)


def test_demo_photo_after_plain_import():
    import os

    assert os.path.isfile(gradcam.demo_photo()) and gradcam.io.demo_photo() == gradcam.demo_photo()


def test_renamed_resolvers_keep_their_old_names_with_a_warning():
    from gradcam import layers, targets

    net = Net()
    with pytest.warns(DeprecationWarning, match="renamed resolve_layers"):
        assert layers.resolve(net, "c2") == layers.resolve_layers(net, "c2")
    out = torch.tensor([[0.1, 2.0, 0.3]])
    with pytest.warns(DeprecationWarning, match="renamed resolve_targets"):
        scores, ids = targets.resolve(out, None, 1, 1)
    assert ids.tolist() == [[1]] and scores.tolist() == [[2.0]]


def test_moved_modules_keep_their_old_paths_with_a_warning():
    import importlib
    import sys

    for old, new in (
        ("gradcam.evaluation.scenes", "gradcam.datasets.scenes"),
        ("gradcam.metrics.faithfulness_more", "gradcam.metrics.feature_removal"),
        ("gradcam.metrics.localisation_more", "gradcam.metrics.relevance"),
    ):
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new):
            mod = importlib.import_module(old)
        assert mod is importlib.import_module(new)
