"""The 3-D benchmark ``volumes``: its data, its measures (known answers), and the published table reproduced
to the digit from the committed weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from gradcam.datasets import lesions
from gradcam.evaluation import volumes as V
from gradcam.evaluation.runner import Settings
from gradcam.methods import registry

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "docs" / "results" / "volumes-benchmark.json"
#: Grad-CAM's 3-D pointing beats the centre (gaussian) and random baselines by at least this much (stated on
#: docs/results/volumes-benchmark.md).
MARGIN = 0.5


def test_lesion_volumes_are_seeded_and_their_masks_and_boxes_agree():
    a, b = lesions.make_lesions(12, seed=5), lesions.make_lesions(12, seed=5)
    assert torch.equal(a.volumes, b.volumes) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.volumes, lesions.make_lesions(12, seed=6).volumes)
    assert int(a.labels.sum()) == 6  # half carry a lesion
    for i in range(12):
        m = a.masks[i]
        if a.labels[i] == 0:
            assert not m.any() and a.boxes[i].tolist() == [0] * 6
            assert torch.equal(a.volumes[i], a.healthy[i])  # no lesion: the twin is the volume
            continue
        z, y, x = torch.nonzero(m, as_tuple=True)
        box = [int(x.min()), int(y.min()), int(z.min()), int(x.max()) + 1, int(y.max()) + 1, int(z.max()) + 1]
        assert a.boxes[i].tolist() == box
        changed = (a.volumes[i, 0] != a.healthy[i, 0]).float()
        # the lesion changes its ball and a partial-volume rim at most one voxel wide, nothing else
        near = torch.nn.functional.max_pool3d(m.float()[None, None], 3, stride=1, padding=1)[0, 0]
        assert bool((changed <= near).all()) and bool(changed[m].all())
        assert float((a.volumes[i, 0][m] - a.healthy[i, 0][m]).mean()) < -0.05  # hypodense


def test_pointing_iou_energy_and_auc_known_answers():
    maps = torch.zeros(2, 8, 8, 8)
    maps[0, 2, 3, 4] = 1.0  # peak (x, y, z) = (4, 3, 2)
    maps[1, 7, 7, 7] = 1.0
    masks = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    masks[:, 2, 3, 6] = True  # 2 voxels from the first peak
    assert V.pointing_hits_3d(maps, masks, tolerance=2.0).tolist() == [True, False]
    assert V.pointing_hits_3d(maps, masks, tolerance=1.9).tolist() == [False, False]
    assert V.pointing_hits_3d(torch.zeros(1, 8, 8, 8), masks[:1]).tolist() == [False]  # flat map: a miss
    a = torch.tensor([[0, 0, 0, 2, 2, 2], [0, 0, 0, 2, 2, 2], [0, 0, 0, 0, 0, 0]])
    b = torch.tensor([[1, 0, 0, 3, 2, 2], [0, 0, 0, 2, 2, 2], [0, 0, 0, 0, 0, 0]])
    assert V.iou_3d(a, b).tolist() == pytest.approx([4 / 12, 1.0, 0.0])
    m = torch.zeros(1, 4, 4, 4)
    m[0, 0, 0, :2] = torch.tensor([3.0, 1.0])
    mk = torch.zeros(1, 4, 4, 4, dtype=torch.bool)
    mk[0, 0, 0, 0] = True
    assert V.energy_in_mask(m, mk).tolist() == [0.75]
    assert V.energy_in_mask(torch.zeros(1, 4, 4, 4), mk).tolist() == [0.0]
    assert V.auc(torch.tensor([1.0, 0.0, 0.0])).item() == 0.25


class _Counts(nn.Module):
    """p(class 1) = sigmoid(number of voxels that equal 1, minus 2): a model whose answer is known."""

    def forward(self, x):
        s = (x == 1).flatten(1).float().sum(1) - 2
        return torch.stack([torch.zeros_like(s), s], 1)


def test_perturbation_curves_replace_voxels_in_the_maps_order():
    x = torch.zeros(1, 1, 2, 2, 2)
    x[0, 0, 0, 0, :] = 1  # two "lesion" voxels
    twin = torch.zeros_like(x)
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, :] = torch.tensor([2.0, 1.0])  # the two lesion voxels rank first
    c = V.perturbation_curves(_Counts(), x, twin, maps, 1, steps=4)  # 2 voxels per step
    torch.testing.assert_close(c["deletion"][0], torch.sigmoid(torch.tensor([0.0, -2, -2, -2, -2])))
    torch.testing.assert_close(c["insertion"][0], torch.sigmoid(torch.tensor([-2.0, 0, 0, 0, 0])))
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 1, 1, :] = torch.tensor([2.0, 1.0])  # the lesion voxels rank last (ties: by position)
    c = V.perturbation_curves(_Counts(), x, twin, maps, 1, steps=4)
    # the lesion voxels rank 3rd and 4th: both go at step 2 (4 voxels changed)
    torch.testing.assert_close(c["deletion"][0], torch.sigmoid(torch.tensor([0.0, 0, -2, -2, -2])))


def test_baselines_handle_volumes_gaussian_peaks_at_the_centre():
    net = nn.Sequential(nn.Flatten(), nn.Linear(7 * 9 * 11, 2))
    x = torch.randn(2, 1, 7, 9, 11)
    g = registry.get("gaussian")(net)(x, target=1).maps
    assert g.shape == (2, 1, 7, 9, 11)
    assert g[0, 0, 3, 4, 5] == 1.0 and float(g.min()) == 0.0  # the centre voxel is the maximum
    assert torch.equal(g[0, 0, 3, 4], g[0, 0, 3, 4].flip(0))  # symmetric
    r1 = registry.get("random-map")(net, seed=3)(x, target=1).maps
    r2 = registry.get("random-map")(net, seed=3)(x, target=1).maps
    assert r1.shape == (2, 1, 7, 9, 11) and torch.equal(r1, r2) and not torch.equal(r1[0], r1[1])
    assert registry.info("gaussian").handles_volumes and registry.info("random-map").handles_volumes


def test_volume_methods_are_those_that_handle_volumes():
    keep, skip = V.volume_methods(["gradcam", "occlusion", "gaussian", "dff", "nope"])
    assert keep == ["gradcam", "gaussian"] and skip == ["occlusion", "dff", "nope"]


def test_the_published_table_reproduces_from_the_committed_weights():
    assert V.committed_weights(V.VolumeTrainConfig()) is not None  # no training here: the committed file
    published = json.loads(PUBLISHED.read_text())["results"]["volumes"]
    names = ["gradcam", "random", "gaussian"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the published run (--threads 1)
    try:
        res = V.run(Settings(methods=names, log=lambda s: None))
    finally:
        torch.set_num_threads(threads)
    assert res["meta"]["accuracy"] == published["meta"]["accuracy"]
    rows = {r["method"]: r for r in res["rows"]}
    want = {r["method"]: r for r in published["rows"]}
    for name in names:
        for key in ("pointing", "box_iou", "loc_acc", "energy", "deletion", "insertion"):
            assert rows[name][key] == want[name][key], (name, key)
    # the stated margins (docs/results/volumes-benchmark.md)
    g = rows["gradcam"]["pointing"]
    assert g >= rows["gaussian"]["pointing"] + MARGIN and g >= rows["random"]["pointing"] + MARGIN


def test_gradcam_evaluate_benchmarks_volumes_from_the_command_line(tmp_path, capsys):
    from gradcam.cli import main

    argv = ["evaluate", "--quick", "--benchmarks", "volumes", "--methods", "gradcam,occlusion"]
    assert main(argv + ["--threads", "1", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "evaluation.json").read_text())
    assert res["command"] == "gradcam evaluate --benchmarks volumes --quick --methods gradcam,occlusion"
    vol = res["results"]["volumes"]
    assert [r["method"] for r in vol["rows"]] == ["gradcam"]  # occlusion has no volume form: no row, a note
    assert vol["meta"]["explained_volumes"] == 24 and vol["meta"]["steps"] == 8
    assert any(n.startswith("volumes: occlusion do not handle volumes") for n in res["notes"])
    assert "| gradcam |" in (tmp_path / "evaluation.md").read_text()
