"""The photos benchmark's split and its rows per ``--quality`` preset and per built-in model."""

import json
import types

import pytest
import torch

from gradcam.cli import main
from gradcam.evaluation import photo_models as pm
from gradcam.evaluation import photos as P
from gradcam.evaluation import runner
from gradcam.models import QUALITY_PRESETS, LoadedModel


def _count(split):
    doc = json.loads(P.BOXES_FILE.read_text())
    rows = [p for p in doc["photos"] if split in (None, p["split"])]
    return len(rows), len({p["file"] for p in rows})


def test_photo_split_names_the_half_and_counts_its_objects():
    assert _count("held_out") == (22, 15) and _count("tuning") == (18, 15) and _count(None) == (40, 30)
    held, text = runner.photo_split("held_out")
    assert {p.split for p in held} == {"held_out"} and len(held) == 22
    assert text == "the held-out half: 22 objects on 15 photos"
    assert runner.photo_split("tuning")[1] == "the tuning half: 18 objects on 15 photos"
    assert runner.photo_split("all")[1] == "both halves: 40 objects on 30 photos"
    with pytest.raises(ValueError, match="split must be one of held_out, tuning, all; got 'test'"):
        runner.photo_split("test")
    assert runner.Settings().split == "held_out"  # the default: the half no default was chosen on


def test_evaluate_cli_split_option(capsys):
    from gradcam.commands.evaluate import _split

    assert [_split(s) for s in ("held_out", "heldout", "held-out", "tuning", "all")] == [
        "held_out",
        "held_out",
        "held_out",
        "tuning",
        "all",
    ]
    with pytest.raises(SystemExit):
        main(["evaluate", "--split", "test"])
    assert "choose held_out, tuning or all (got 'test')" in capsys.readouterr().err


def test_photo_settings_rows_per_preset_and_per_model():
    sizes = {"efficientnet-lite0": 256, "efficientnet-lite1": 256, "efficientnet-lite2": 288}
    rows = pm.photo_settings(sizes)
    assert [(s.label, s.kind) for s in rows] == [(q, "preset") for q in QUALITY_PRESETS] + [
        (m, "model") for m in sizes
    ]
    for s in rows[:3]:
        p = QUALITY_PRESETS[s.label]
        assert (s.model, s.size, s.threshold) == (p.model, p.size, p.box_threshold)
    assert [(s.size, s.threshold) for s in rows[3:]] == [(256, 0.15), (256, 0.15), (288, 0.15)]
    # a model that is not installed loses its model row and the rows of the presets that name it
    no_lite1 = pm.photo_settings({k: v for k, v in sizes.items() if k != "efficientnet-lite1"})
    assert "efficientnet-lite1" not in {s.model for s in no_lite1}
    assert [s.label for s in pm.photo_settings(sizes, quick=True)] == [
        s.label for s in rows if s.model == "efficientnet-lite0"
    ]


class _Stub(torch.nn.Module):
    """Answers photo k's label first on its k-th call (cycling), so the maps below know which photo it is."""

    def __init__(self, photos, wrong=False):
        super().__init__()
        self.photos, self.calls, self.wrong, self.current = photos, 0, wrong, photos[0]

    def forward(self, x):
        self.current = self.photos[self.calls % len(self.photos)]
        self.calls += 1
        out = torch.zeros(x.shape[0], 1000)
        out[:, (self.current.label + 1) % 1000 if self.wrong else self.current.label] = 5.0
        return out


def _perfect_method(loaded):
    """The union of the current photo's boxes as the map of every target (a perfect map)."""

    def method(x, target):
        p = loaded.model.current
        mask = P.box_masks(p.boxes, p.image.size, (x.shape[-1], x.shape[-2])).any(0).float()
        return types.SimpleNamespace(maps=mask.expand(1, target.shape[1], *mask.shape))

    return method


def test_photo_rows_known_answers_on_a_stubbed_model(monkeypatch):
    from gradcam.models import presets

    small = {
        q: presets.Preset(q, p.model, 64 + 32 * (q == "high"), p.box_threshold)
        for q, p in QUALITY_PRESETS.items()
    }
    monkeypatch.setattr(presets, "QUALITY_PRESETS", small)  # the same rows, small inputs (a fast test)
    monkeypatch.setattr("gradcam.models.QUALITY_PRESETS", small)
    by_name = {p.name: p for p in P.load_annotated(split="held_out")}
    one_box = [p for p in by_name.values() if p.scored and len(p.boxes) == 1][:2]
    assert len(one_box) == 2
    notes = []

    def loader(name, wrong=False):
        if name == "efficientnet-lite2":
            raise ImportError("the lite extra is not installed")
        return LoadedModel(_Stub(one_box, wrong), [], layer="x", name=name, size=64)

    rows = pm.photo_rows(one_box, repeats=1, loader=loader, make_method=_perfect_method, note=notes.append)
    assert notes == [
        "photos: model 'efficientnet-lite2' skipped (its preset and model rows too): the lite extra is not installed"
    ]
    expected = [q for q, p in QUALITY_PRESETS.items() if p.model != "efficientnet-lite2"]
    assert [r["label"] for r in rows] == expected + ["efficientnet-lite0", "efficientnet-lite1"]
    for r in rows:  # a perfect map of a right class: every measure at its best
        assert (r["pointing"], r["peaks"], r["boxes"], r["objects"]) == (1.0, 2, 2, 2)
        assert (r["loc_err1"], r["cls_err1"], r["scored"]) == (0.0, 0.0, 2)
    assert {r["label"]: r["cost_ratio"] for r in rows}["efficientnet-lite0"] == 1.0  # the cost base itself
    wrong = pm.photo_rows(
        one_box, quick=True, repeats=1, loader=lambda n: loader(n, wrong=True), make_method=_perfect_method
    )
    assert {r["model"] for r in wrong} == {"efficientnet-lite0"}
    for r in wrong:  # the right box, the wrong class: top-1 localization fails with classification
        assert (r["boxes"], r["loc_err1"], r["cls_err1"]) == (2, 1.0, 1.0)
    # the cost: one timing per (model, short side), the ratio to Lite0 at its own short side
    monkeypatch.setattr(pm, "interleaved_seconds", lambda calls, n, repeats: [0.2, 0.3, 0.5][: len(calls)])
    timed = pm.photo_rows(one_box, repeats=1, loader=loader, make_method=_perfect_method)
    assert {r["label"]: (r["seconds"], r["cost_ratio"]) for r in timed} == {
        "fast": (0.2, 1.0),
        "standard": (0.3, 1.5),
        "high": (0.5, 2.5),
        "efficientnet-lite0": (0.2, 1.0),
        "efficientnet-lite1": (0.3, 1.5),
    }
    table = pm.rows_table(rows[-1:])
    assert table.splitlines()[-1] == (
        f"| efficientnet-lite1 | efficientnet-lite1 | 64 | 15% | 1.000 | 2/2 | 2/2 | 0.000 | 0.000 | "
        f"{rows[-1]['seconds']:.3f} | {rows[-1]['cost_ratio']:.2f} |"
    )


def test_interleaved_seconds_takes_the_fastest_round_per_item():
    order = []
    secs = pm.interleaved_seconds([lambda j: order.append(("a", j)), lambda j: order.append(("b", j))], 2, 2)
    assert order == [("a", 0), ("b", 0), ("a", 1), ("b", 1)] * 2  # round-robin, every setting per item
    assert len(secs) == 2 and all(s >= 0 for s in secs)


def test_run_photos_measures_the_chosen_split_and_adds_the_preset_table(monkeypatch):
    tuning = runner.photo_split("tuning")[0][:4]
    loaded = LoadedModel(_Stub(tuning), [], layer="x", name="efficientnet-lite0", size=64)
    seen = {}

    def fake_rows(photos, **kw):
        seen["photos"], seen["quick"] = [p.name for p in photos], kw["quick"]
        return [
            dict(
                label="fast",
                kind="preset",
                model="m",
                size=64,
                threshold=0.35,
                pointing=1.0,
                peaks=4,
                boxes=3,
                objects=4,
                loc_err1=0.25,
                cls_err1=0.0,
                scored=4,
                seconds=0.5,
                cost_ratio=1.0,
            )
        ]

    monkeypatch.setattr(runner, "_load_imagenet_model", lambda: loaded)
    monkeypatch.setattr(runner, "build", lambda name, model, *a, **k: _perfect_method(loaded))
    monkeypatch.setattr(pm, "photo_rows", fake_rows)
    res = runner.run_photos(
        runner.Settings(quick=True, methods=["gradcam"], split="tuning", log=lambda s: None)
    )
    assert res["meta"]["split"] == "tuning" and res["meta"]["photos"] == [p.name for p in tuning]
    assert seen == {"photos": [p.name for p in tuning], "quick": True}
    assert [r["method"] for r in res["rows"]] == ["gradcam"] and res["rows"][0]["pointing"] == 1.0
    assert "— the tuning half: 18 objects on 15 photos (quick mode: the first 4);" in res["table"]
    assert res["table"].rstrip().splitlines()[-1] == (
        "| `fast` | m | 64 | 35% | 1.000 | 4/4 | 3/4 | 0.250 | 0.000 | 0.500 | 1.00 |"
    )
    settings = runner.Settings(quick=True, methods=["random"], split="tuning", log=lambda s: None)
    seen.clear()
    res = runner.run_photos(settings)  # no gradcam: no preset rows (they are Grad-CAM's), and a note says so
    assert seen == {} and res["presets"] == [] and "per `--quality` preset" not in res["table"]
    assert (
        "photos: the rows per --quality preset and per model are Grad-CAM's; add gradcam to --methods."
        in (settings.notes)
    )
