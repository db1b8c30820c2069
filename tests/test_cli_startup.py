"""The console script's start-up: ``gradcam explain`` runs imports and the model load without the cyclic
garbage collector, then freezes what start-up made and collects as usual (``gradcam.cli.started``)."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
gens = []
def cb(phase, info):  # a collection before the freeze ran during start-up
    if phase == "start":
        gens.append((info["generation"], gc.get_freeze_count() > 0))
gc.callbacks.append(cb)
import gradcam_entry
sys.argv = ["gradcam"] + sys.argv[1:]
gens.clear()  # collections from here on: the command's
rc = gradcam_entry.main()
import gradcam.cli
print(json.dumps(dict(rc=rc, enabled=gc.isenabled(), frozen=gc.get_freeze_count(),
      before=[g for g, after in gens if not after], paused=gradcam.cli._GC_PAUSED)))
"""


def _probe(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300, check=False
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_explain_starts_without_collections_then_freezes_and_collects_again(tmp_path):
    r = _probe("explain", "--demo", "--out", str(tmp_path / "o"))
    assert r["rc"] == 0
    assert r["before"] == []  # no collection of any generation while torch was imported and the model loaded
    assert r["enabled"] and not r["paused"]  # collecting again after start-up
    assert r["frozen"] > 50_000  # torch's modules and the model, out of the collector's reach


def test_other_commands_keep_the_collector_as_it_is(tmp_path):
    r = _probe("methods")
    assert r["rc"] == 0
    assert r["enabled"] and r["frozen"] == 0 and r["before"]  # collections ran as usual
