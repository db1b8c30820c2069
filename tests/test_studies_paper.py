"""``gradcam study segmentation|trust|agent``: the pieces against known answers, and the quick studies'
direction with a margin (seeded, deterministic)."""

import json
import math

import pytest
import torch

from gradcam.cli import main
from gradcam.commands.study import finding
from gradcam.studies import segmentation as seg
from gradcam.studies import trust


def _study(capsys, *argv):
    assert main(["study", *argv, "--quick", "--json", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1  # one JSON object, nothing else on stdout
    return json.loads(out[0])


# -- segmentation: pieces ---------------------------------------------------------------------------


def test_gwrp_weights_ranks_geometrically_and_zero_decay_is_max():
    probs = torch.tensor([0.1, 0.9, 0.5, 0.3]).view(1, 1, 2, 2).repeat(1, 2, 1, 1)
    g = seg.gwrp(probs, torch.tensor([0.5, 0.0]))
    # sorted 0.9, 0.5, 0.3, 0.1 with weights 1, 1/2, 1/4, 1/8: (0.9 + 0.25 + 0.075 + 0.0125) / 1.875
    assert float(g[0, 0]) == pytest.approx(1.2375 / 1.875, abs=1e-6)
    assert float(g[0, 1]) == pytest.approx(0.9, abs=1e-7)


def test_seeds_follow_the_thresholds_of_the_peak():
    maps = torch.tensor([[[2.0, 1.2], [0.2, 0.5]]])  # peak 2: shares 1, 0.6, 0.1, 0.25
    cues = seg.seeds_from_maps(maps, torch.tensor([3]), fg=0.5, bg=0.15)
    assert cues.tolist() == [[[4, 4], [0, -1]]]  # class 3 -> label 4; low saliency -> background 0


def test_mean_iou_counts_over_the_set():
    truth = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    # background: TP 1, union 2 -> 0.5; label 1: TP 2, union 3 -> 2/3; labels absent from both are left out
    assert seg.mean_iou(pred, truth) == pytest.approx(round((0.5 + 2 / 3) / 2, 4))


def test_constrain_loss_is_zero_when_the_output_is_constant_in_each_superpixel():
    logits = torch.zeros(1, 6, 2, 4)
    logits[0, 2, :, :2] = 3.0  # label 2 left, uniform right: constant inside each superpixel
    sp = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1]]])
    cues = torch.full((1, 2, 4), -1)
    cues[0, 0, 0] = 2
    present = torch.tensor([[True, False, True, False, False, False]])
    losses = seg.sec_losses(logits, cues, present, sp)
    assert float(losses["constrain"]) == pytest.approx(0.0, abs=1e-6)
    p2 = math.exp(3) / (math.exp(3) + 5)
    assert float(losses["seed"]) == pytest.approx(-math.log(p2), rel=1e-5)  # one cued pixel
    sp_mixed = torch.zeros(1, 2, 4, dtype=torch.long)  # one superpixel over both halves: Q differs from f
    assert float(seg.sec_losses(logits, cues, present, sp_mixed)["constrain"]) > 0.1


def test_segmentation_study_quick_reproduces_the_direction(capsys):
    s = _study(capsys, "segmentation")
    assert set(s) >= {"miou_gradcam_seeds", "miou_cam_seeds", "miou_random_seeds", "miou_full_supervision"}
    # Seeds from either map train a network far above random seeds (margin 0.08 of mean IoU), and the
    # fully supervised network bounds them all (margin 0.05). Grad-CAM vs CAM: within 0.05 of each other.
    for src in ("gradcam", "cam"):
        assert s[f"miou_{src}_seeds"] >= s["miou_random_seeds"] + 0.08
        assert s["miou_full_supervision"] >= s[f"miou_{src}_seeds"] + 0.05
        assert s["seed_precision"][src] >= 0.85 > 0.3 > s["seed_precision"]["random"]
    assert abs(s["miou_gradcam_seeds"] - s["miou_cam_seeds"]) <= 0.05
    assert finding("segmentation", s).startswith("Mean IoU on 80 held-out scenes (seed 0): Grad-CAM seeds ")


# -- trust -------------------------------------------------------------------------------------------


def test_bootstrap_interval_of_a_constant_is_the_constant_and_pairs_stay_paired():
    d = torch.tensor([[0.5] * 10, list(range(10))], dtype=torch.float64)
    ci = trust.bootstrap_ci(d, 200, seed=0)
    assert ci[0].tolist() == [0.5, 0.5]
    assert 2.0 < float(ci[1, 0]) < 4.5 < float(ci[1, 1]) < 7.0  # mean 4.5, sd of the mean 0.91
    assert torch.equal(ci, trust.bootstrap_ci(d, 200, seed=0))


def test_compare_prefers_by_the_measures_direction():
    n = 20
    strong = {k: torch.full((n,), 0.8, dtype=torch.float64) for k in trust.MEASURES}
    weak = {k: torch.full((n,), 0.5, dtype=torch.float64) for k in trust.MEASURES}
    out = trust.compare(strong, weak, 100, 0)
    assert out["energy_in_box"]["difference"] == pytest.approx(0.3)
    assert out["energy_in_box"]["stronger_preferred"] and not out["deletion"]["stronger_preferred"]


def test_trust_study_quick_prefers_the_stronger_model_for_gradcam(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("GRADCAM_CACHE", str(tmp_path))  # the weaker model is trained here, not in ~/.cache
    s = _study(capsys, "trust")
    acc = s["accuracy"]
    assert acc["stronger"] >= acc["weaker"] + 0.3  # clearly different accuracy
    assert 30 <= s["n_both_correct"] <= 200
    g = s["differences"]["gradcam"]
    # Every graded measure prefers the stronger model's Grad-CAM, with the 95% interval away from zero. Pointing
    # saturates on the quick set (both models point right on 96% or more of the images both classify right), so
    # only its direction is asserted. The weaker model's weights are committed, so these numbers are the same on
    # every CPU (training it anew differs in the last bits from one instruction set to another).
    assert all(
        g[k]["stronger_preferred"] for k in ("energy_in_box", "relevance_rank", "deletion", "insertion")
    )
    assert g["pointing"]["difference"] >= 0
    # (the intervals are rounded to 4 digits; "stronger_preferred" above holds on the exact values)
    assert g["energy_in_box"]["ci95"][0] >= 0 and g["deletion"]["ci95"][1] < 0
    assert g["relevance_rank"]["difference"] >= 0.08
    for m in ("guided-gradcam", "guided-backprop"):
        assert s["differences"][m]["energy_in_box"]["stronger_preferred"]
    assert "figure" not in s and s["command"] == "gradcam study trust --quick"


# -- agent -------------------------------------------------------------------------------------------


def test_expert_turns_towards_the_goal_and_moves_forward_when_it_shortens_the_path():
    from gradcam.studies import agent

    assert agent.expert_action((1, 1), 0, (5, 1)) == 2  # facing right, goal to the right: forward
    assert agent.expert_action((1, 1), 0, (1, 5)) == 1  # goal below (heading 1 = down): turn right
    assert agent.expert_action((1, 5), 0, (1, 1)) == 0  # goal above (heading 3 = up): turn left
    assert agent.expert_action((5, 1), 0, (1, 1)) == 0  # goal behind: turn (left)
    assert agent.expert_action((1, 1), 1, (5, 5)) == 2  # two useful headings: forward on either


def test_tile_mass_is_the_share_of_the_cell():
    from gradcam.studies import agent

    maps = torch.zeros(2, 64, 64)
    maps[0, 8:16, 16:24] = 1.0  # all of it on cell (x, y) = (2, 1)
    maps[1] = 1.0  # uniform: 1/64 per cell
    share = agent.tile_mass(maps, torch.tensor([[2, 1], [3, 3]]))
    assert share.tolist() == [1.0, 1 / 64]


def test_agent_study_names_the_extra_when_the_rl_packages_are_missing(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "minigrid", None)
    assert main(["study", "agent", "--quick"]) == 2
    assert "pip install 'gradcam[rl]'" in capsys.readouterr().err


def test_agent_study_quick_maps_sit_on_the_goal(capsys, tmp_path):
    pytest.importorskip("gymnasium")
    pytest.importorskip("minigrid")
    s = _study(capsys, "agent", "--out", str(tmp_path))
    assert (
        s["mean_return_trained"] >= 0.9 and s["mean_return_trained"] >= s["mean_return_random_policy"] + 0.3
    )
    # One tile is 1/64 of a random map's mass; the chosen action's Grad-CAM puts > 10x that on the goal.
    assert s["goal_mass_random_map"] < 0.03 and s["goal_mass"] >= 0.15 >= 5 * s["goal_mass_random_map"]
    assert s["agent_mass"] >= 3 * s["agent_mass_random_map"]
    assert (tmp_path / "agent.png").stat().st_size > 5_000
    assert finding("agent", s).startswith(
        "Over 20 seeded episodes (seed 0) the trained policy's mean return is "
    )


def test_text_output_states_the_finding_in_one_sentence_with_the_words_of_the_docs():
    bias = {
        "biased_test_accuracy": 0.62,
        "debiased_test_accuracy": 1.0,
        "attention_trained_test_accuracy": 0.98,
        "biased_cue_mass": 0.3476,
        "debiased_cue_mass": 0.014,
        "attention_trained_cue_mass": 0.02,
    }
    assert finding("bias", bias) == (
        "The biased model's Grad-CAM puts 0.348 of its mass on the stamp and it scores 0.620 on unbiased test "
        "images; the rebalanced model puts 0.014 there and scores 1.000, the attention-trained one 0.020 and 0.980."
    )
    adv = {
        "attack_success_rate": 0.9,
        "pointing_adversarial_original_class": 0.8,
        "pointing_clean": 0.95,
        "pointing_adversarial_target_class": 0.1,
    }
    assert finding("adversarial", adv) == (
        "Targeted PGD succeeds on 0.900 of the images, yet the original class's Grad-CAM still points into the "
        "object's tile for 0.800 of them (clean: 0.950) against 0.100 for the adversarial class."
    )
    assert "debiased" not in finding("bias", bias)


def test_segmentation_training_is_deterministic():
    cfg = seg.SegmentationConfig(n_train=8, width=4, steps=3, batch_size=4)
    x, y, truth = seg.make_split(8, 7)
    cues = seg.seeds_from_maps(seg.random_maps(8, 64, 0), y, 0.5, 0.15)[:, ::2, ::2]
    sp = (torch.arange(32).view(1, 1, 32) // 8).expand(8, 32, 32)  # four vertical stripes as superpixels
    a = seg.train_net(cfg, x, y, cues, sp, log=lambda s: None)
    b = seg.train_net(cfg, x, y, cues, sp, log=lambda s: None)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(
        a.state_dict()["classifier.weight"], seg.SegNet(4).state_dict()["classifier.weight"]
    )
