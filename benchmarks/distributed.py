"""Dataset throughput: the local engine and the Ray engine against decode + plain forward, same folder, same run.

Cases (images/s over the same folder of real photos, every case run once per round, rounds interleaved so
that load from other processes hits all cases alike; the figure is the median over rounds, and the ratio
is the median over rounds of the case's rate / the reference rate of the same round):

- ``decode + forward``: the local engine's batches (``--batch-size``), each photo read, decoded and
  preprocessed exactly as the engine does, then one ``no_grad`` forward per batch; nothing written;
- ``local engine``: ``explain_dataset(engine="local", force=True)``: decode, Grad-CAM, overlay PNGs, JSON
  records, resume records and the results index written;
- ``local engine, synchronous writes`` / ``as before``: the ablation of the background writer
  (``WRITE_AHEAD = 0``) and, in addition, of the PNG strategy (zlib level 1 without ``Z_RLE``);
- ``Ray engine``: the same with ``engine="ray"`` on a local Ray (started once, before the rounds; its start
  time is reported separately), default pool (one actor per CPU left after the decode tasks) and with
  ``--ray-workers`` actors.

Usage: ``python benchmarks/distributed.py [--copies 2] [--rounds 3]``; writes
``benchmarks/results/distributed.json`` and ``docs/results/benchmarks-distributed.md``. Needs the ``ray`` extra.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_folder(folder: str, copies: int) -> int:
    """foolbox's 20 ImageNet photos, scikit-image's and scikit-learn's photos, ``copies`` times each."""
    import foolbox
    import skimage.data
    from PIL import Image

    srcs = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "imagenet_*.jpg")))
    extra = {n: getattr(skimage.data, n)() for n in ("chelsea", "coffee", "rocket", "astronaut")}
    try:
        from sklearn.datasets import load_sample_images

        extra.update({f"sklearn_{i}": a for i, a in enumerate(load_sample_images().images)})
    except ImportError:
        pass
    n = 0
    make_folder.sources = f"foolbox's {len(srcs)} ImageNet photos and {', '.join(extra)} (as JPEG)"
    for c in range(copies):
        sub = os.path.join(folder, f"copy{c}")
        os.makedirs(sub, exist_ok=True)
        for s in srcs:
            shutil.copy(s, os.path.join(sub, os.path.basename(s)))
            n += 1
        for name, a in extra.items():
            Image.fromarray(a).convert("RGB").save(os.path.join(sub, name + ".jpg"), quality=92)
            n += 1
    return n


def decode_forward(folder: str, batch_size: int) -> tuple:
    """(wall, CPU) seconds to read, decode, preprocess and forward (``no_grad``) every photo in the engine's
    batches."""
    from gradcam.api import get_model
    from gradcam.commands.explain import _load
    from gradcam.io import find_images

    loaded = get_model("efficientnet-lite0")
    t0, c0 = time.perf_counter(), time.process_time()
    items = find_images([folder])
    for i in range(0, len(items), batch_size):
        xs = [
            loaded.preprocess(img)
            for img, _ in (_load(it) for it in items[i : i + batch_size])
            if img is not None
        ]
        groups: dict = {}
        for x in xs:
            groups.setdefault(tuple(x.shape), []).append(x)
        with torch.no_grad():
            for g in groups.values():
                loaded.model(torch.stack(g))
    return time.perf_counter() - t0, time.process_time() - c0


def _png_level1(img) -> bytes:
    """The overlay PNG as written before Z_RLE (zlib level 1, default strategy): the "before" ablation."""
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def engine(
    folder: str, out: str, batch_size: int, name: str, workers=None, write_ahead=None, old_png=False
) -> tuple:
    """(wall, CPU of this process) seconds of one ``explain_dataset`` run (CPU: ``None`` for Ray, whose work
    runs in other processes). ``write_ahead=0``: the local engine writes synchronously; ``old_png``: PNGs
    encoded as before (level 1 without Z_RLE)."""
    from gradcam.commands import explain as cmd
    from gradcam.distributed import explain_dataset

    saved = cmd.WRITE_AHEAD, cmd._png_bytes
    cmd.WRITE_AHEAD = saved[0] if write_ahead is None else write_ahead
    cmd._png_bytes = _png_level1 if old_png else saved[1]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        s = explain_dataset(folder, out=out, engine=name, workers=workers, force=True, batch_size=batch_size)
    finally:
        cmd.WRITE_AHEAD, cmd._png_bytes = saved
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    assert s.explained == s.found and not s.failed, s
    return dt, (ct if name == "local" else None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=2, help="copies of the photo set (default 2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of this process")
    ap.add_argument("--ray-workers", type=int, default=2, help="actors of the second Ray case (default 2)")
    ap.add_argument("--json-out", default=os.path.join(HERE, "results", "distributed.json"))
    ap.add_argument("--md-out", default=os.path.join(ROOT, "docs", "results", "benchmarks-distributed.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import logging

    import ray

    work = tempfile.mkdtemp(prefix="gradcam-bench-dist-")
    folder = os.path.join(work, "photos")
    n = make_folder(folder, args.copies)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(
        num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
    )
    ray_start = time.perf_counter() - t0
    cases = {
        "decode + forward (no_grad), nothing written": lambda: decode_forward(folder, args.batch_size),
        "local engine": lambda: engine(folder, os.path.join(work, "local"), args.batch_size, "local"),
        "Ray engine, default pool": lambda: engine(folder, os.path.join(work, "ray"), args.batch_size, "ray"),
        f"Ray engine, {args.ray_workers} actors": lambda: engine(
            folder, os.path.join(work, "rayw"), args.batch_size, "ray", args.ray_workers
        ),
        "local engine, synchronous writes (WRITE_AHEAD = 0)": lambda: engine(
            folder, os.path.join(work, "sync"), args.batch_size, "local", write_ahead=0
        ),
        "local engine as before: synchronous, PNG level 1 without Z_RLE": lambda: engine(
            folder, os.path.join(work, "before"), args.batch_size, "local", write_ahead=0, old_png=True
        ),
    }
    names = list(cases)
    engine(folder, os.path.join(work, "warm"), args.batch_size, "local")  # warm-up: model load, lazy init
    times = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for k in order:
            wall, c = cases[k]()
            times[k].append(wall)
            cpu[k].append(c)
            print(f"round {r + 1}: {k}: {n / wall:.2f} images/s", file=sys.stderr, flush=True)
    ray.shutdown()
    load1 = os.getloadavg()
    ref = names[0]
    rows = []
    for k in names:
        rate = statistics.median(n / t for t in times[k])
        ratio = statistics.median(times[ref][i] / times[k][i] for i in range(args.rounds))
        best = n / min(times[k])
        cpu_ratio = (
            statistics.median(cpu[ref][i] / cpu[k][i] for i in range(args.rounds))
            if cpu[k][0] is not None
            else None
        )
        rows.append(
            {
                "case": k,
                "images_per_s": rate,
                "vs_decode_forward": ratio,
                "best_images_per_s": best,
                "cpu_vs_decode_forward": cpu_ratio,
                "vs_local": statistics.median(times[names[1]][i] / times[k][i] for i in range(args.rounds)),
            }
        )
    info = {
        "photos": n,
        "sources": make_folder.sources,
        "copies": args.copies,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "ray_start_s": ray_start,
        "loadavg_before": load0,
        "loadavg_after": load1,
        "allocator": "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc",
        "written": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
    with open(args.json_out, "w") as f:
        json.dump(info, f, indent=1)
    with open(args.md_out, "w") as f:
        f.write(markdown(info))
    shutil.rmtree(work, ignore_errors=True)
    print(markdown(info))
    return 0


def markdown(info: dict) -> str:
    lines = [
        "# Dataset throughput: local engine, Ray engine, decode + forward",
        "",
        f"Command: `python benchmarks/distributed.py --copies {info['copies']} --rounds {info['rounds']}`. Written {info['written']} on "
        f"{info['cpus']} logical CPUs, torch {info['torch']}, ray {info['ray']}, {info['allocator']}, "
        f"{info['threads']} torch thread(s) in the local process; Ray actors use one torch thread per CPU they hold.",
        "",
        f"{info['photos']} real photos ({info['sources']}, {info['copies']} cop{'y' if info['copies'] == 1 else 'ies'}), "
        "EfficientNet-Lite0, Grad-CAM, "
        f"top-1, batch size {info['batch_size']}; every engine run rewrites every output (`force=True`). "
        f"Local Ray started once before the rounds in {info['ray_start_s']:.1f} s (not counted); each Ray run "
        "still starts its actor pool and loads the model once per actor (counted). Load average (1/5/15 min) "
        f"before: {' '.join(f'{v:.1f}' for v in info['loadavg_before'])}, after: "
        f"{' '.join(f'{v:.1f}' for v in info['loadavg_after'])} (the machine was shared with other jobs).",
        "",
        "Throughput relative to decode + forward: wall time (median over rounds of the per-round ratio) and "
        "CPU time of this process (the figure least disturbed by other processes; local cases only, since "
        "Ray's work runs in other processes).",
        "",
        "| case | images/s (median) | rel. to decode + forward (wall) | rel. to decode + forward (CPU time) "
        "| rel. to local engine (wall) | images/s (best round) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in info["rows"]:
        c = "-" if r["cpu_vs_decode_forward"] is None else f"{r['cpu_vs_decode_forward']:.0%}"
        lines.append(
            f"| {r['case']} | {r['images_per_s']:.2f} | {r['vs_decode_forward']:.0%} | {c} | "
            f"{r['vs_local']:.0%} | {r['best_images_per_s']:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
