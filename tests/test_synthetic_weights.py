"""Committed synthetic-CNN weights: found by config key, checksum verified, skipped with retrain=True."""

import hashlib
import json

import pytest
import torch

from gradcam.evaluation import synthetic as syn

TINY = syn.TrainConfig(kind="gap", width=2, n_train=64, epochs=1, seed=123)


def _commit(tmp_path, monkeypatch, corrupt=False):
    net = syn.ShapeNet(TINY.kind, TINY.width, TINY.size)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.25)
    name = f"synthetic-{TINY.kind}-{syn.config_key(TINY)}.pt"
    torch.save({"state_dict": net.state_dict(), "info": {"final_loss": 0.5}}, tmp_path / name)
    digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    if corrupt:
        digest = "0" * 64
    (tmp_path / "sums.json").write_text(json.dumps({name: digest}))
    monkeypatch.setattr(syn, "COMMITTED_DIR", tmp_path)
    monkeypatch.setattr(syn, "CHECKSUMS", tmp_path / "sums.json")
    return name


def test_committed_weights_are_loaded_and_not_trained(tmp_path, monkeypatch):
    name = _commit(tmp_path, monkeypatch)
    monkeypatch.setattr(syn, "train", lambda *a, **k: pytest.fail("trained although weights are committed"))
    net, info = syn.load_or_train(TINY, tmp_path / "cache")
    assert info["committed"] == name
    assert all(bool((p == 0.25).all()) for p in net.parameters())
    assert not (tmp_path / "cache").exists()


def test_a_damaged_file_is_refused(tmp_path, monkeypatch):
    _commit(tmp_path, monkeypatch, corrupt=True)
    with pytest.raises(ValueError, match="the committed weights are damaged"):
        syn.load_or_train(TINY, tmp_path / "cache")


def test_retrain_skips_the_committed_weights(tmp_path, monkeypatch):
    _commit(tmp_path, monkeypatch)
    calls = []

    def fake_train(cfg, log=print):
        calls.append(cfg)
        return syn.ShapeNet(cfg.kind, cfg.width, cfg.size).eval(), {"final_loss": 1.0}

    monkeypatch.setattr(syn, "train", fake_train)
    _, info = syn.load_or_train(TINY, tmp_path / "cache", retrain=True, log=lambda s: None)
    assert calls == [TINY] and "committed" not in info


def test_the_published_weights_are_committed_and_intact():
    for kind in ("vgg", "gap"):
        path = syn.committed_weights(syn.TrainConfig(kind=kind, seed=0))
        assert path is not None and path.stat().st_size < 2_500_000
