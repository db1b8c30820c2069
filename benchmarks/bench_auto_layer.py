"""The first call of ``GradCAM(model)`` with ``layer="auto"`` against a plain forward, before and after the one-pass
first call, on the compat zoo's architectures (random weights; torchvision, timm and Hugging Face, where installed),
four more timm token models, and the tests' token models.

Usage: ``PYTHONPATH=REPO/src python benchmarks/bench_auto_layer.py REPO OUT.json [ID-SUBSTRINGS]``
(docs/results/auto-layer-one-pass.md). Both versions run in one process, per model, alternating: "before" is the
previous path (``gradcam.methods.base.ONE_PASS_BATCH = 0``: the candidates listed by a forward of one image, the
latest map captured alone, then, when it gets no gradient, one forward tapping the other candidates with one
backward), "after" the one-pass first call (:func:`gradcam.engine.search_capture`). Times are the process's CPU
time (``time.process_time``, 1 torch thread), so that other jobs on a shared machine do not count; per model:
the median first call of a fresh GradCAM object (``FIRSTS`` fresh objects each way), the median second call (3),
each with a plain forward (batch 2, no grad) timed just before it, the chosen layer each way, and the largest
difference between the two first calls' maps. The ratios (``*_x``) are medians of the paired ratios (each call
over the forward just before it): on a noisy virtual machine the speed drifts by tens of percent over a minute,
and a slow spell then slows both halves of a pair rather than one side of the table.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

#: Fresh GradCAM objects timed each way per model (``GRADCAM_BENCH_FIRSTS``; more steadies the small CNNs, whose
#: forward takes some 25 ms); the plain forward is timed twice as often.
FIRSTS = int(os.environ.get("GRADCAM_BENCH_FIRSTS", "3"))

#: timm token models the issue names (random weights, batch 2), beyond the compat suite's: kwargs, input size.
EXTRA_TIMM = [
    ("vit_small_patch14_reg4_dinov2", {"img_size": 224}, 224),
    ("flexivit_small", {}, 240),  # its own input size
    ("xcit_tiny_12_p16_224", {}, 224),
    ("levit_128", {}, 224),
]


def _timm(name: str, kwargs: dict):
    def build():
        import timm

        torch.manual_seed(0)
        return timm.create_model(name, pretrained=False, **kwargs).eval()

    return build


def _specs(repo: str) -> list:
    sys.path.insert(0, repo + "/tests/compat")
    sys.path.insert(0, repo + "/tests")
    import models_zoo as mz

    specs = []
    try:
        import zoo

        specs = [(s.id, (lambda s=s: zoo.build(s)), s.size, s, zoo) for s in zoo.SPECS]
    except ImportError as e:  # the compat suite needs torchvision/timm
        print(f"no compat zoo: {e}", file=sys.stderr)
    specs += [(f"timm:{n}", _timm(n, kw), (size, size), None, None) for n, kw, size in EXTRA_TIMM]
    for name, ctor, size in [
        ("test:TinyViT", lambda: mz.TinyViT(dim=32, depth=4), (32, 32)),
        ("test:TinyViT-prefix5", lambda: mz.TinyViT(prefix=5), (16, 16)),
        ("test:TinySwinLike", mz.TinySwinLike, (16, 16)),
        ("test:SeqFirstTransformer", mz.SeqFirstTransformer, (16, 16)),
    ]:
        specs.append((name, ctor, size, None, None))
    return specs


def _cpu(fn):
    t = time.process_time()
    out = fn()
    return time.process_time() - t, out


def measure(ctor, size, spec, zoo) -> dict:
    """One model's row (see the module docstring)."""
    import gradcam
    from gradcam.methods import base

    default = base.ONE_PASS_BATCH
    model = ctor()
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size)
    target = zoo.target_for(spec, model, x)[0] if spec is not None else None

    def forward_time() -> float:
        with torch.no_grad():
            return _cpu(lambda: model(x))[0]

    forward_time()
    forwards: list = []
    firsts: dict = {"before": [], "after": []}
    ratios: dict = {"before": [], "after": [], "second": []}
    res: dict = {}
    try:
        for _ in range(FIRSTS):
            for way, batch in (("before", 0), ("after", default)):
                base.ONE_PASS_BATCH = batch
                cam = gradcam.GradCAM(model)
                forwards.append(forward_time())  # paired: the plain forward just before this first call
                t, res[way] = _cpu(lambda cam=cam: cam(x, target=target))
                firsts[way].append(t)
                ratios[way].append(t / forwards[-1])
    finally:
        base.ONE_PASS_BATCH = default
    seconds = []
    for _ in range(3):
        forwards.append(forward_time())
        seconds.append(_cpu(lambda: cam(x, target=target)))
        ratios["second"].append(seconds[-1][0] / forwards[-1])
    forward = statistics.median(forwards)
    return dict(
        layer_before=res["before"].layer,
        layer_after=res["after"].layer,
        layer_second=seconds[-1][1].layer,
        forward=forward,
        first_before=statistics.median(firsts["before"]),
        first_after=statistics.median(firsts["after"]),
        second=statistics.median(t for t, _ in seconds),
        max_map_diff=float((res["before"].maps - res["after"].maps).abs().max()),
        **{f"{k}_paired_x": round(statistics.median(v), 2) for k, v in ratios.items()},
    )


def main() -> None:
    repo, out_path = sys.argv[1], sys.argv[2]
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    rows = []
    for sid, ctor, size, spec, zoo in _specs(repo):
        if only and not any(o in sid for o in only):
            continue
        try:
            row = dict(id=sid, **measure(ctor, size, spec, zoo))
            for k, paired in (("first_before", "before"), ("first_after", "after"), ("second", "second")):
                row[k + "_x"] = row.pop(paired + "_paired_x")
        except Exception as e:  # noqa: BLE001 - one model's failure is a row of the table
            row = dict(id=sid, error=f"{type(e).__name__}: {e}"[:200])
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(out_path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
