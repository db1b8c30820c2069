"""``gradcam evaluate --quick`` end to end, and the pieces of the benchmarks (mosaics, baselines, cache)."""

import json

import pytest
import torch

from gradcam.cli import main
from gradcam.evaluation import baselines, mosaics, runner, synthetic
from gradcam.metrics import pointing_hits


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    threads = torch.get_num_threads()
    code = main(
        [
            "evaluate",
            "--quick",
            "--benchmarks",
            "mosaic,synthetic",
            "--out",
            str(out),
            "--cache",
            str(out / "cache"),
            "--threads",
            "1",
        ]
    )
    assert torch.get_num_threads() == threads  # --threads is restored afterwards
    return code, out


def test_quick_evaluate_runs_and_writes_table_and_json(quick):
    code, out = quick
    assert code == 0
    md = (out / "evaluation.md").read_text()
    data = json.loads((out / "evaluation.json").read_text())
    assert md.startswith("<!-- made by: gradcam evaluate --benchmarks mosaic,synthetic --quick")
    assert "| gradcam |" in md and "| random |" in md and "| gaussian |" in md
    assert set(data["results"]) == {"mosaic", "synthetic"}
    rows = {r["method"]: r for r in data["results"]["synthetic"]["models"]["vgg"]["rows"]}
    assert rows["cam"]["note"] == "n/a (no GAP head)"  # CAM does not apply to a fully connected head
    gap = {r["method"]: r for r in data["results"]["synthetic"]["models"]["gap"]["rows"]}
    # On a GAP network Grad-CAM equals CAM up to a constant (Selvaraju et al., Sec. 3.1): same maps, same scores.
    for key in ("pointing", "loc_err_top1", "energy", "disc_mass"):
        assert gap["gradcam"][key] == pytest.approx(gap["cam"][key], abs=1e-3)
    assert len(list((out / "cache").glob("synthetic-*.pt"))) == 2  # trained locally and cached


def test_quick_gradcam_pointing_on_real_mosaics_clearly_beats_random(quick):
    _, out = quick
    rows = {
        r["method"]: r for r in json.loads((out / "evaluation.json").read_text())["results"]["mosaic"]["rows"]
    }
    assert rows["gradcam"]["pointing"] >= rows["random"]["pointing"] + 0.3
    assert rows["gradcam"]["disc_peak"] >= 0.75 > rows["gaussian"]["disc_peak"]
    assert rows["counterfactual"]["disc_peak"] < rows["gradcam"]["disc_peak"]


def test_mosaics_tiles_boxes_and_labels():
    photos = [mosaics.Photo(torch.full((3, 4, 4), float(i)), label=10 + i, name=f"p{i}") for i in range(5)]
    m = mosaics.make_mosaics(photos, 3, seed=1)
    assert m.images.shape == (3, 3, 8, 8) and m.labels.shape == (3, 4)
    assert m.boxes[0].tolist() == [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]]  # (x0, y0, x1, y1)
    for j in range(3):
        assert len(set(m.labels[j].tolist())) == 4
        for k in range(4):  # each tile holds the photo of its label
            x0, y0, x1, y1 = m.boxes[j, k].tolist()
            assert (m.images[j, :, y0:y1, x0:x1] == m.labels[j, k] - 10).all()
            assert m.masks[j, k].sum() == 16
    assert torch.equal(mosaics.make_mosaics(photos, 3, seed=1).images, m.images)
    with pytest.raises(ValueError, match="photos of 4 different classes"):
        mosaics.make_mosaics(photos[:3], 1)


def test_foolbox_photos_are_found():
    photos = mosaics.load_photos(32)
    assert len(photos) == 20 and photos[0].image.shape == (3, 32, 32)
    assert photos[0].label == 243 and 0 <= photos[0].image.min() and photos[0].image.max() <= 1


def test_baselines_random_is_seeded_and_gaussian_is_centred():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.rand(2, 3, 15, 15)
    a = baselines.RandomMap(net, seed=3)(x, top_k=2)
    b = baselines.RandomMap(net, seed=3)(x, top_k=2)
    assert torch.equal(a.maps, b.maps) and a.maps.shape == (2, 2, 15, 15)
    assert not torch.equal(a.maps[0, 0], a.maps[0, 1])
    g = baselines.CentredGaussian(net)(x, target=1).maps
    assert g[0, 0, 7, 7] == 1.0 and g[0, 0, 0, 0] == 0.0 and torch.equal(g[0, 0], g[0, 0].T)
    gt = torch.zeros(2, 1, 15, 15, dtype=torch.bool)
    gt[:, :, 7, 7] = True
    assert pointing_hits(g, gt, tolerance=0).all()


def test_unknown_benchmark_and_method_are_clear():
    with pytest.raises(ValueError, match="Unknown benchmark\\(s\\) nope; choose from mosaic, synthetic, vl"):
        runner.run(["nope"])
    notes = []
    s = runner.Settings(log=notes.append)
    assert runner.build("no-such-method", torch.nn.Linear(2, 2), "auto", s) is None
    assert "method 'no-such-method' is not registered (yet); skipped." in s.notes


def test_evaluate_cli_refuses_unknown_methods_listing_the_known_ones(capsys):
    assert main(["evaluate", "--quick", "--methods", "gradcam,nosuch,nope2"]) == 2
    err = capsys.readouterr().err
    from gradcam.evaluation import baselines  # noqa: F401 - registers the baselines
    from gradcam.methods import registry

    registry.get("gradcam")  # loads every optional method module
    known = ", ".join(sorted(registry.METHODS))
    assert err == f"gradcam: error: --methods: unknown methods 'nosuch', 'nope2'; known methods: {known}.\n"
    assert "cam, counterfactual" in known and "gradcam++" in known and "random" in known


def test_default_cache_dir_is_env_or_home(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path / "c"))
    assert synthetic.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GRADCAM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert synthetic.default_cache_dir() == tmp_path / "home" / ".cache" / "gradcam"


def test_synthetic_cache_is_reused(tmp_path):
    cfg = synthetic.TrainConfig(kind="gap", width=2, n_train=64, epochs=1, size=32)
    net, info = synthetic.load_or_train(cfg, tmp_path, log=lambda s: None)
    again, info2 = synthetic.load_or_train(cfg, tmp_path, log=lambda s: None)
    assert info2["cached"] == info["cached"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # The cache is READ: marker weights written into the cached file come back (retraining could not give them).
    path = info["cached"]
    blob = torch.load(path, weights_only=True)
    blob["state_dict"] = {
        k: torch.full_like(v, 0.25) if v.is_floating_point() else v for k, v in blob["state_dict"].items()
    }
    blob["info"]["marker"] = "read from the cache"
    torch.save(blob, path)
    logged = []
    marked, info3 = synthetic.load_or_train(cfg, tmp_path, log=logged.append)
    assert info3["marker"] == "read from the cache" and logged == []  # not retrained
    assert all((v == 0.25).all() for v in marked.state_dict().values() if v.is_floating_point())
    retrained, _ = synthetic.train(cfg, log=lambda s: None)  # same seed, same weights
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), retrained.state_dict().values()))


def test_chance_baselines_are_never_marked_best():
    from gradcam.evaluation.tables import best_marks

    rows = [
        {"method": "gradcam", "v": 0.5},
        {"method": "random-map", "v": 0.9},
        {"method": "random", "v": 0.8},
        {"method": "gaussian", "v": 0.7},
    ]
    best_marks(rows, [("v", "v", ".3f")])
    assert [r["v"] for r in rows] == ["**0.500**", 0.9, 0.8, 0.7]


def test_best_marks_marks_nothing_below_the_accuracy_threshold():
    from gradcam.evaluation.tables import MIN_ACCURACY_FOR_BEST, accuracy_caveat, best_marks

    cols = [("v", "v", ".3f")]
    rows = [{"method": "a", "v": 0.5}, {"method": "b", "v": 0.9}]
    best_marks(rows, cols, accuracy=MIN_ACCURACY_FOR_BEST - 0.01)
    assert [r["v"] for r in rows] == [0.5, 0.9]
    best_marks(rows, cols, accuracy=MIN_ACCURACY_FOR_BEST)
    assert [r["v"] for r in rows] == [0.5, "**0.900**"]
    assert accuracy_caveat("m", 0.4, 0.8) == (
        "**Caveat:** the m classifies 0.400 of its test images right, below "
        "0.8: its maps explain a model that is often wrong, so nothing is "
        "marked best in its table."
    )


def test_quick_tables_of_inaccurate_models_mark_nothing_and_say_so_first(quick):
    _, out = quick
    md = (out / "evaluation.md").read_text()
    data = json.loads((out / "evaluation.json").read_text())
    body = md.split("-->\n\n", 1)[1]
    models = data["results"]["synthetic"]["models"]
    low = [k for k, v in models.items() if v["meta"]["accuracy"] < 0.8]
    assert low  # the quick CNNs are small (about 0.3-0.4 accuracy)
    for i, kind in enumerate(low):  # the caveats open the output, before any table
        assert body.split("\n\n")[i].startswith(
            f"**Caveat:** the synthetic '{kind}' CNN (quick mode: a small model) "
            f"classifies {models[kind]['meta']['accuracy']:.3f} of its test images"
        )
    assert data["caveats"] and "**Real photos" in body.split("\n\n")[len(low)]
    for part in body.split("**Synthetic scenes")[1:]:
        table = part.split("\n\nNotes:")[0].split("**Real photos")[0]
        assert "**" not in table.split("\n\n", 1)[1]  # no value bolded in the quick synthetic tables
    assert "| **" in body.split("**Synthetic scenes")[0]  # the accurate photo model's table still marks


def test_quick_mosaic_leaves_out_every_many_pass_method_registered_later(monkeypatch):
    from gradcam.methods import registry
    from gradcam.methods.contract import MethodInfo

    assert [n for n in runner.all_methods() if runner.slow_on_photos(n)] == [
        "occlusion",
        "scorecam",
        "rise",
        "integrated-gradients",
        "iscam",
        "smoothgrad",
        "smoothgradcam++",
        "sscam",
        "vargrad",
    ]
    assert not runner.slow_on_photos("ablationcam")  # 1 + C through the layers after the layer only
    for passes, slow in (("1 + n_samples x C", True), ("2 + steps", True), ("2", False), ("1", False)):
        monkeypatch.setitem(registry.INFO, "zz-new", MethodInfo(name="zz-new", forward_passes=passes))
        assert runner.slow_on_photos("zz-new") is slow, passes
    assert not runner.slow_on_photos("not-registered")
