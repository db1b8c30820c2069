"""The first call of ``GradCAM(model)`` with ``layer="auto"`` against a plain forward, before and after the one-pass
first call, on the compat zoo's architectures (random weights; torchvision, timm and Hugging Face, where installed),
four more timm token models, and the tests' token models.

Usage: ``PYTHONPATH=REPO/src python benchmarks/bench_auto_layer.py REPO OUT.json [ID-SUBSTRINGS]``
(docs/results/auto-layer-one-pass.md). Both versions run in one process, per model, alternating: "before" is the
previous path (``gradcam.methods.base.ONE_PASS_BATCH = 0``: the candidates listed by a forward of one image, the
latest map captured alone, then, when it gets no gradient, one forward tapping the other candidates with one
backward), "after" the one-pass first call (:func:`gradcam.engine.search_capture`). Times are the process's CPU
time (``time.process_time``, 1 torch thread), so that other jobs on a shared machine do not count; per model:
the median plain forward (batch 2, no grad, 5 runs), the median first call of a fresh GradCAM object (3 fresh
objects each way) and the median second call, the chosen layer each way, and the largest difference between the
two first calls' maps.
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
    with torch.no_grad():
        model(x)
        forward = statistics.median(_cpu(lambda: model(x))[0] for _ in range(2 * FIRSTS - 1))
    firsts: dict = {"before": [], "after": []}
    res: dict = {}
    try:
        for _ in range(FIRSTS):
            for way, batch in (("before", 0), ("after", default)):
                base.ONE_PASS_BATCH = batch
                cam = gradcam.GradCAM(model)
                t, res[way] = _cpu(lambda cam=cam: cam(x, target=target))
                firsts[way].append(t)
    finally:
        base.ONE_PASS_BATCH = default
    seconds = [_cpu(lambda: cam(x, target=target)) for _ in range(3)]
    return dict(
        layer_before=res["before"].layer,
        layer_after=res["after"].layer,
        layer_second=seconds[-1][1].layer,
        forward=forward,
        first_before=statistics.median(firsts["before"]),
        first_after=statistics.median(firsts["after"]),
        second=statistics.median(t for t, _ in seconds),
        max_map_diff=float((res["before"].maps - res["after"].maps).abs().max()),
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
            for k in ("first_before", "first_after", "second"):
                row[k + "_x"] = round(row[k] / row["forward"], 2)
        except Exception as e:  # noqa: BLE001 - one model's failure is a row of the table
            row = dict(id=sid, error=f"{type(e).__name__}: {e}"[:200])
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(out_path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
