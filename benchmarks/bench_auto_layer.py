"""The first call of ``GradCAM(model)`` with ``layer="auto"`` against a plain forward, on the compat zoo's
architectures (random weights; torchvision and timm, where installed) and the tests' token models.

Usage: ``PYTHONPATH=REPO/src python benchmarks/bench_auto_layer.py REPO OUT.json [ID-SUBSTRINGS]``; run it
once with each version of the source to compare (docs/results/auto-layer-one-pass.md). Per model: the
chosen layer (first and second call), the median plain forward (batch 2, no grad, 3 runs), the first call
of a fresh GradCAM object (the best of two fresh objects) and the second call, in seconds.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch


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
    for name, ctor, size in [
        ("test:TinyViT", lambda: mz.TinyViT(dim=32, depth=4), (32, 32)),
        ("test:TinyViT-prefix5", lambda: mz.TinyViT(prefix=5), (16, 16)),
        ("test:TinySwinLike", mz.TinySwinLike, (16, 16)),
        ("test:SeqFirstTransformer", mz.SeqFirstTransformer, (16, 16)),
    ]:
        specs.append((name, ctor, size, None, None))
    return specs


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(ctor, size, spec, zoo) -> dict:
    """One model's row (see the module docstring)."""
    import gradcam

    model = ctor()
    torch.manual_seed(1)
    x = torch.randn(2, 3, *size)
    target = zoo.target_for(spec, model, x)[0] if spec is not None else None
    with torch.no_grad():
        model(x)
        forward = statistics.median(_timed(lambda: model(x)) for _ in range(3))
    firsts, res = [], None
    for _ in range(2):
        cam = gradcam.GradCAM(model)
        t = time.perf_counter()
        res = cam(x, target=target)
        firsts.append(time.perf_counter() - t)
    t = time.perf_counter()
    res2 = cam(x, target=target)
    second = time.perf_counter() - t
    return dict(layer=res.layer, layer2=res2.layer, forward=forward, first=min(firsts), second=second)


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
        except Exception as e:  # noqa: BLE001 - one model's failure is a row of the table
            row = dict(id=sid, error=f"{type(e).__name__}: {e}"[:200])
        print(json.dumps(row), flush=True)
        rows.append(row)
    with open(out_path, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
