"""The Ray engine's failure handling without Ray: the batch scheduler (bounded, counted resends; dead actors
probed before they get more work; Ctrl-C), failure rows, and the model shipped by value."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from gradcam import index
from gradcam.pipeline import Job, raydata


class RayError(Exception):
    pass


class RayActorError(RayError):
    pass


class RayTaskError(RayError):
    def __init__(self, cause):
        super().__init__(f"task failed: {cause}\nTraceback ...")
        self.cause = cause


class Ref:
    """An object ref: a value or an exception."""

    def __init__(self, out):
        self.out = out


class FakeRay:
    """Object refs are (value or exception) boxes, finished in the order they were made."""

    exceptions = SimpleNamespace(RayError=RayError, RayActorError=RayActorError)

    def wait(self, refs, num_returns, timeout):
        return refs[:1], refs[1:]

    def get(self, ref):
        if isinstance(ref.out, BaseException):
            raise ref.out
        return ref.out


def _run(script, n=4, retries=2, probe=lambda a: Ref("up"), stop=None):
    """Run ``n`` batches on actors "A", "B"; ``script(actor, i, attempt)`` -> the batch's result or error."""
    sent, seen = [], {}

    def submit(actor, i):
        seen[i] = seen.get(i, 0) + 1
        sent.append((actor, i))
        out = script(actor, i, seen[i])
        return Ref(out if isinstance(out, BaseException) else {"node": actor, "i": i})

    stats = raydata.RayStats()
    stop = stop or SimpleNamespace(hit=False)
    sched = raydata._Scheduler(FakeRay(), ["A", "B"], submit, probe, n, retries)
    results = list(sched.run(stats, stop))
    return results, stats, sent


def test_a_batch_on_a_killed_actor_is_sent_again_and_counted():
    # Actor A dies on its first batch (batch 0); everything else works.
    results, stats, sent = _run(lambda a, i, k: RayActorError("died") if (a, i, k) == ("A", 0, 1) else None)
    done = sorted(r["i"] for _, r in results)
    assert done == [0, 1, 2, 3] and stats.retries == 1 and stats.nodes == {"A", "B"}
    # Batch 0 went first to A, then (first in line again) to B while A was probed.
    assert sent[0] == ("A", 0) and sent.count(("B", 0)) == 1 and len(sent) == 5


def test_a_batch_that_keeps_failing_becomes_a_failure_with_the_reason():
    results, stats, sent = _run(lambda a, i, k: RayTaskError(ValueError("boom")) if i == 2 else None)
    reasons = {i: r for i, r in results if isinstance(r, str)}
    assert reasons == {2: "its batch failed 3 time(s) on the Ray cluster (ValueError: boom)"}
    assert stats.retries == 2 and [i for _, i in sent].count(2) == 3
    assert sorted(r["i"] for _, r in results if not isinstance(r, str)) == [0, 1, 3]


def test_retries_zero_fails_at_once():
    results, stats, _ = _run(lambda a, i, k: RayActorError("gone\nmore") if i == 0 else None, retries=0)
    assert results[0] == (0, "its batch failed 1 time(s) on the Ray cluster (RayActorError: gone)")
    assert stats.retries == 0


def test_actors_that_never_come_back_are_given_up(monkeypatch):
    monkeypatch.setattr(raydata, "PROBES", 2)
    monkeypatch.setattr(raydata, "PROBE_EVERY", 0.001)
    results, stats, _ = _run(
        lambda a, i, k: RayActorError("dead"), n=6, probe=lambda a: Ref(RayActorError("still dead"))
    )
    reasons = sorted(results)
    # The 4 batches in flight when both died are resent (4 retries); once both actors are given up,
    # every batch left fails with the reason.
    assert stats.retries == 4
    assert [i for i, _ in reasons] == [0, 1, 2, 3, 4, 5]
    assert {r for _, r in reasons} == {"no model actor is left on the Ray cluster (every one died)"}


def test_ctrl_c_sends_nothing_more_and_finishes_what_is_in_flight():
    stop, sent = SimpleNamespace(hit=False), []

    def submit(actor, i):
        sent.append(i)
        stop.hit = True  # Ctrl-C right after the first batch is sent
        return Ref({"node": actor, "i": i})

    sched = raydata._Scheduler(FakeRay(), ["A", "B"], submit, None, 10, 2)
    got = []
    with pytest.raises(KeyboardInterrupt):
        for i, _ in sched.run(raydata.RayStats(), stop):
            got.append(i)
    assert sent == [0] and got == [0]  # the batch in flight was finished and reported, none other sent


def test_a_failed_batch_gets_failure_rows_in_the_index(tmp_path):
    job = Job(SimpleNamespace(name="tiny"), None, None, 1, str(tmp_path), {"method": "gradcam"})
    eig = Job(SimpleNamespace(name="tiny"), None, None, 1, str(tmp_path), {"method": "eigencam"})
    eig.method_name = "eigencam"
    row = {"paths": ["/d/a.png", "/d/b.png"], "stems": ["a", "b"], "wanted": [[True, True], [False, True]]}
    out = raydata._failed_batch(row, [job, eig], "its batch failed 3 time(s) on the Ray cluster (X: y)")
    assert [(o["file"], o["stem"]) for o in out] == [
        ("/d/a.png", "a"),
        ("/d/b.png", "b"),
        ("/d/b.png", "b.eigencam"),
    ]
    assert out[0]["text"] == "gradcam: skipped /d/a.png: its batch failed 3 time(s) on the Ray cluster (X: y)"
    rows = index.read_index(str(tmp_path))
    assert [(r["stem"], r["error"], r["model"], r["method"], r["rank"]) for r in rows] == [
        ("a", out[0]["reason"], "tiny", "gradcam", None),
        ("b", out[0]["reason"], "tiny", "gradcam", None),
        ("b.eigencam", out[0]["reason"], "tiny", "eigencam", None),
    ]


def _net():
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
    )


@pytest.mark.parametrize("script", [False, True])
def test_the_model_travels_by_value(script):
    from gradcam.models.loaded import LoadedModel

    net = _net().eval()
    model = torch.jit.script(net) if script else net
    loaded = LoadedModel(model=model, labels=["a", "b"], name="m", size=32)
    packed = raydata.pack_model(loaded)
    assert isinstance(packed.model, raydata.ScriptBytes) == script
    assert loaded.model is model  # the driver's model is left as it was
    shipped = raydata.unpack_model(pickle.loads(pickle.dumps(packed)), "cpu")  # what an actor gets
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(shipped.model(x), net(x)) and (shipped.labels, shipped.size) == (["a", "b"], 32)
    assert not shipped.model.training
