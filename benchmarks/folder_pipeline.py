"""The folder pipeline against its limit: ``gradcam explain DIR`` vs decode + preprocess + a plain forward.

One run measures, on the same folder (foolbox's 20 ImageNet photos copied ``--copies`` times, 200 by
default), with the same batch size and torch thread count:

- ``reference``: the local engine's batches, each photo decoded and preprocessed as the engine does
  (:func:`gradcam.pipeline.decode.load`, ``loaded.preprocess``), photos of equal size stacked, one
  ``no_grad`` forward per group; nothing explained or written;
- ``explain (prefetch N)``: :func:`gradcam.pipeline.run` with the CLI's default options (``--force``), in this
  process, a reporter taking the time of every written photo; ``prefetch 0``: the serial path, the ablation;
- ``gradcam explain DIR``: the command itself in a subprocess (default options, ``--force``): its overall
  rate (start-up included) and its marginal rate from the time each photo's description is printed;
- ``start-up``: ``gradcam explain ONE.jpg`` (the console script) in a subprocess, 5 times: the time from spawning the
  process to the first photo's decode (imports, model construction and weight load, the colormap), median.

The marginal rate counts photos ``--skip``..N (default from the 50th): (N - skip) / (t_N - t_skip). Wall
rates and CPU-time rates (this process's or the child's CPU seconds, all threads) are both given: on a
shared machine wall time measures the other jobs as much as ours; CPU time does not see them (but counts
what the overlap hides: background work is CPU spent, never saved).

Usage: ``python benchmarks/folder_pipeline.py [--copies 10] [--batch-size 4] [--threads N,M] [--rounds 1]``;
writes ``benchmarks/results/folder_pipeline.json`` and ``docs/results/folder-pipeline.md`` (``--no-write``:
print only). Needs foolbox's photo files (``pip install 'gradcam[evaluate]'``).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

if "--omp-active" not in sys.argv:  # before torch starts OpenMP (see --omp-active)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")

# The `gradcam` console script, run by this interpreter (its entry point, gradcam_entry.main).
CONSOLE_SCRIPT = (
    "import sys, gradcam_entry; sys.argv = ['gradcam'] + sys.argv[1:]; sys.exit(gradcam_entry.main())"
)

# Runs in the child: the console script's own start-up (gradcam_entry: torch imported and the model loaded without
# the cyclic garbage collector), timed to the first decode (PIL.Image.open, which every photo goes through).
STARTUP_PROBE = """
import os, sys, time
import PIL.Image
_open = PIL.Image.open
def first(*a, **k):
    if not first.done:
        first.done = True
        sys.stderr.write("FIRST_DECODE %.6f %.6f\\n" % (time.time(), time.process_time()))
        sys.stderr.flush()
    return _open(*a, **k)
first.done = False
PIL.Image.open = first
import gc
gc.disable()  # as gradcam_entry does before it imports gradcam (and with it torch) for `explain`
import torch
sys.stderr.write("TORCH_IMPORTED %.6f %.6f\\n" % (time.time(), time.process_time()))
gc.enable()  # gradcam_entry sees the collector as a console script finds it
import gradcam_entry
sys.argv = ["gradcam"] + sys.argv[1:]
sys.exit(gradcam_entry.main())
"""


def make_folder(folder: str, copies: int) -> int:
    """foolbox's 20 ImageNet photos, ``copies`` times (``copyK/imagenet_*.jpg``); returns the count."""
    import foolbox

    srcs = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "imagenet_*.jpg")))
    if not srcs:
        raise SystemExit("foolbox's photos not found: pip install 'gradcam[evaluate]'")
    for c in range(copies):
        sub = os.path.join(folder, f"copy{c}")
        os.makedirs(sub, exist_ok=True)
        for s in srcs:
            shutil.copy(s, os.path.join(sub, os.path.basename(s)))
    return copies * len(srcs)


def mark() -> tuple:
    """(wall, process CPU, this thread's CPU) seconds now."""
    return time.perf_counter(), time.process_time(), time.thread_time()


def rates(marks: list, skip: int) -> dict:
    """Overall and marginal rates from ``marks`` (:func:`mark`, taken in the main thread): one per finished
    photo, after a start mark at index 0. ``marginal_main``: photos per CPU second of the main thread alone
    (the explain step's critical path when the background threads have cores of their own; with one torch
    thread the forward runs in the main thread, so it is all of the reference's work)."""
    n = len(marks) - 1
    (w0, c0, _), (wn, cn, tn), (ws, cs, ts) = marks[0], marks[-1], marks[skip]
    return {
        "photos": n,
        "overall_wall": n / (wn - w0),
        "overall_cpu": n / (cn - c0),
        "marginal_wall": (n - skip) / (wn - ws),
        "marginal_cpu": (n - skip) / (cn - cs),
        "marginal_main": (n - skip) / (tn - ts),
    }


def reference(folder: str, batch_size: int, skip: int) -> dict:
    """Decode + preprocess + a plain ``no_grad`` forward, in the engine's batches and order."""
    from gradcam.models import load_model
    from gradcam.pipeline import Options
    from gradcam.pipeline.decode import load
    from gradcam.pipeline.job import MAX_PIXELS
    from gradcam.pipeline.run import find

    loaded = load_model("efficientnet-lite0")
    items = find(Options(paths=(folder,), out=os.path.join(folder, "_none")))
    marks = [mark()]
    for i in range(0, len(items), batch_size):
        xs = [loaded.preprocess(img) for img, _ in (load(it, MAX_PIXELS) for it in items[i : i + batch_size])]
        groups: dict = {}
        for x in xs:
            groups.setdefault(tuple(x.shape), []).append(x)
        with torch.no_grad():
            for g in groups.values():
                loaded.model(torch.stack(g))
        marks += [mark()] * len(xs)
    return rates(marks, skip)


def explain_inprocess(folder: str, out: str, batch_size: int, prefetch: int, skip: int) -> dict:
    """:func:`gradcam.pipeline.run` with the CLI's defaults (``force``); a mark per written photo."""
    from gradcam.pipeline import Options, Reporter, run

    marks: list = []

    class Marks(Reporter):
        def start(self, total: int) -> None:
            marks.append(mark())

        def outcome(self, file, reason, text) -> None:
            assert reason is None, (file, reason)
            marks.append(mark())

    run(Options(paths=(folder,), out=out, force=True, batch_size=batch_size, prefetch=prefetch), Marks())
    return rates(marks, skip)


def _child_env(threads: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the child, as in this process
    return env


def explain_cli(folder: str, out: str, batch_size: int, threads: int, skip: int) -> dict:
    """``gradcam explain DIR --out OUT --force`` (the console script): overall rate (start-up included) from the spawn to
    the exit, marginal rate from the times the photos' descriptions are printed; CPU: the child's."""
    cmd = [sys.executable, "-c", CONSOLE_SCRIPT, "explain", folder, "--out", out, "--force"]
    cmd += ["--batch-size", str(batch_size)]
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=_child_env(threads), bufsize=1)
    marks = [(t0, 0.0)]
    assert proc.stdout is not None
    for line in proc.stdout:  # one description per photo, its first line the file's path
        if line.startswith(folder):
            marks.append((time.perf_counter(), 0.0))
    assert proc.wait() == 0
    t1 = time.perf_counter()
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    n = len(marks) - 1
    return {
        "photos": n,
        "overall_wall": n / (t1 - t0),
        "overall_cpu": n / cpu,
        "marginal_wall": (n - skip) / (marks[-1][0] - marks[skip][0]),
        "seconds": t1 - t0,
        "cpu_seconds": cpu,
    }


def _probe(args: list, threads: int) -> tuple:
    """Spawn the start-up probe with ``args``; wall seconds from the spawn to torch imported and to the first
    decode, and the child's CPU seconds by the first decode."""
    t0 = time.time()
    r = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, *args], capture_output=True, text=True, env=_child_env(threads)
    )
    at = {
        ln.split()[0]: ln.split()[1:] for ln in r.stderr.splitlines() if ln.startswith(("TORCH_", "FIRST_"))
    }
    return (
        float(at["TORCH_IMPORTED"][0]) - t0,
        float(at["FIRST_DECODE"][0]) - t0,
        float(at["FIRST_DECODE"][1]),
    )


def compile_sources() -> None:
    """Byte-compile gradcam's sources, as ``pip install`` does for an installed package: a source tree run with
    ``PYTHONDONTWRITEBYTECODE`` (or never run before) would otherwise compile every module at each start."""
    import compileall

    compileall.compile_dir(SRC, quiet=1)


def startup(photo_dir: str, out: str, threads: int, runs: int = 5) -> dict:
    """Seconds from spawning ``gradcam explain`` (the console script) on one photo to its first decode (wall; and the
    child's CPU seconds by then), ``runs`` times, after a warm-up run; ``torch_wall``: from the spawn to torch
    imported (the probe imports it first, with the collector off as the console script has it), ``ours_wall``: the
    rest, gradcam's own start-up."""
    compile_sources()
    args = ["explain", photo_dir, "--out", out, "--force"]
    _probe(args, threads)  # warm-up: the disk cache
    runs_ = [_probe(args, threads) for _ in range(runs)]
    torch_walls = [r[0] for r in runs_]
    walls = [r[1] for r in runs_]
    cpus = [r[2] for r in runs_]
    ours = [r[1] - r[0] for r in runs_]
    return {
        "wall": walls,
        "cpu": cpus,
        "wall_median": statistics.median(walls),
        "cpu_median": statistics.median(cpus),
        "torch_wall": torch_walls,
        "torch_wall_median": statistics.median(torch_walls),
        "ours_wall": ours,
        "ours_wall_median": statistics.median(ours),
        "bytecode": True,
    }


def measure(args: argparse.Namespace, work: str) -> dict:
    """Every case once per round (rounds interleaved) at each torch thread count, then the start-up runs."""
    folder = os.path.join(work, "photos")
    n = make_folder(folder, args.copies)
    one = os.path.join(work, "one")
    os.makedirs(one)
    shutil.copy(sorted(glob.glob(os.path.join(folder, "copy0", "*.jpg")))[0], one)
    out = os.path.join(work, "out")
    by_threads: dict = {}
    for t in args.threads:
        torch.set_num_threads(t)
        cases = by_threads.setdefault(str(t), {})
        for _ in range(args.rounds):
            for name, fn in (
                (REF, lambda: reference(folder, args.batch_size, args.skip)),
                (
                    f"explain, prefetch {args.prefetch} (default)",
                    lambda: explain_inprocess(folder, out, args.batch_size, args.prefetch, args.skip),
                ),
                (
                    "explain, prefetch 0 (serial)",
                    lambda: explain_inprocess(folder, out, args.batch_size, 0, args.skip),
                ),
                (CLI, lambda t=t: explain_cli(folder, out, args.batch_size, t, args.skip)),
            ):
                cases.setdefault(name, []).append(fn())
    torch.set_num_threads(args.threads[0])
    su = startup(one, os.path.join(work, "out1"), args.threads[0], args.startup_runs)
    return {"photos": n, "by_threads": by_threads, "startup": su}


REF = "reference: decode + preprocess + forward"
CLI = "gradcam explain DIR (CLI, a new process)"


def _median(runs: list, key: str) -> float:
    return statistics.median(r[key] for r in runs if key in r)


def _table(cases: dict) -> list:
    """One table: each case's marginal rates (wall, CPU time, main thread's CPU) relative to the reference."""
    ref = cases[REF]
    rw, rc, rm = (_median(ref, k) for k in ("marginal_wall", "marginal_cpu", "marginal_main"))
    lines = [
        "| case | marginal images/s (wall) | rel. to reference (wall) | marginal images/s (CPU time) "
        "| rel. to reference (CPU time) | rel. to reference (main thread's CPU time) | overall images/s (wall) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in cases.items():
        mw, ow = _median(runs, "marginal_wall"), _median(runs, "overall_wall")
        if "marginal_cpu" in runs[0]:
            mc, mm = _median(runs, "marginal_cpu"), _median(runs, "marginal_main")
            cpu = f"{mc:.1f} | {mc / rc:.0%} | {mm / rm:.0%}"
        else:
            cpu = "- | - | -"
        lines.append(f"| {name} | {mw:.1f} | {mw / rw:.0%} | {cpu} | {ow:.1f} |")
    cli = cases[CLI]
    lines += [
        "",
        f"The CLI run took {_median(cli, 'seconds'):.1f} s wall and {_median(cli, 'cpu_seconds'):.1f} s of CPU "
        f"for {cli[0]['photos']} photos, start-up included ({cli[0]['photos'] / _median(cli, 'cpu_seconds'):.1f} "
        "images per CPU second).",
        "",
    ]
    return lines


def _summary(res: dict) -> list:
    """The verdict against issue 23's targets: >= 90% of the reference at the margin, start-up <= 1.5 s."""
    lines = ["## Summary", ""]
    for t, cases in res["by_threads"].items():
        ratio = {
            k: _median(cases[f"explain, prefetch {res.get('prefetch', 2)} (default)"], k)
            / _median(cases[REF], k)
            for k in ("marginal_cpu", "marginal_main", "marginal_wall")
        }
        main = (
            f"; the explain step on the main thread alone: {ratio['marginal_main']:.0%}"
            if t
            == "1"  # with more torch threads, OpenMP's workers run part of the forward off the main thread
            else ""
        )
        lines.append(
            f"- {t} torch thread(s): `gradcam explain` needs {1 / ratio['marginal_cpu']:.2f}x the reference's CPU "
            f"time per photo (marginal CPU-time rate {ratio['marginal_cpu']:.0%} of the reference's{main}); "
            f"wall {ratio['marginal_wall']:.0%} on this shared machine."
        )
    su = res["startup"]
    lines += [
        f"- Start-up to the first decode: median {su['wall_median']:.2f} s wall ({su['cpu_median']:.2f} s of CPU "
        "time)" + _torch_share(su) + ".",
        "- Against the 90% target: when as many torch threads run as there are cores, the cores are the bound "
        "and the marginal rate is at most the CPU-time ratio above (PNG encoding of the overlays alone is "
        "about a third of a forward per photo, and the outputs must stay byte-identical). When a core is "
        "left for the decode and write threads (one torch thread on two cores), the explain step on the "
        "main thread is the critical path and its column is the marginal rate to expect on an idle machine.",
    ]
    return lines


def _torch_share(su: dict) -> str:
    """The start-up's split into torch's import and gradcam's own share (runs from before the split: nothing)."""
    if "torch_wall" not in su:
        return ""
    return (
        f": the interpreter, PIL and `import torch` {su['torch_wall_median']:.2f} s, then gradcam's own start-up "
        f"(its imports, the model built and its weights loaded, the colormap) {su['ours_wall_median']:.2f} s "
        "(medians; both times taken in each run)"
    )


def write_page(res: dict, path: str) -> None:
    """The results page (docs/results/folder-pipeline.md)."""
    su = res["startup"]
    lines = [
        "# Folder pipeline: `gradcam explain DIR` against decode + forward",
        "",
        f"Command: `{res['command']}`. Written {res['when']} on {res['cpus']} logical CPUs, torch {res['torch']}, "
        f"batch size {res['batch_size']}, {res['photos']} photos (foolbox's 20 ImageNet photos, {res['copies']} "
        "copies; 512 x 512 but one 1024 x 683), EfficientNet-Lite0, Grad-CAM, default options (overlay PNGs, "
        f"resume records, the index), `--force`. Marginal rate: photos {res['skip']}..N. {res['rounds']} "
        f"round(s), medians. OMP_WAIT_POLICY={res['omp_wait_policy']} (idle torch threads sleep rather than "
        "spin, so CPU time counts work, not waiting, on a shared machine).",
        "",
        f"Load average (1/5/15 min) before: {' '.join(f'{x:.1f}' for x in res['load_before'])}, after: "
        f"{' '.join(f'{x:.1f}' for x in res['load_after'])}. **The machine was shared** with other sessions: "
        "a load far above its CPU count means that wall times measure them as much as us (and a process "
        "with more threads gets a larger share of a contended CPU). The CPU-time columns (CPU seconds of this "
        "process, all its threads) do not see the other jobs, but count what an overlap hides: work moved to a "
        "background thread is still CPU spent. The main thread's CPU time is the explain step's critical "
        "path: what the marginal rate would be if the decode and write threads had cores of their own (with "
        "one torch thread only: with more, OpenMP's worker threads run part of the forward).",
        "",
    ]
    lines += _summary(res) + [""]
    for t, cases in res["by_threads"].items():
        lines += [f"## {t} torch thread(s)", ""] + _table(cases)
    lines += [
        "## Start-up",
        "",
        "From spawning `gradcam explain ONE.jpg --force` (the console script) to the first photo's decode (imports, the "
        f"model built and its weights loaded, the colormap), {len(su['wall'])} runs, {res['threads'][0]} torch thread(s):",
        "",
        f"- wall: median **{su['wall_median']:.2f} s** (runs: {', '.join(f'{x:.2f}' for x in su['wall'])});",
        f"- CPU time of the child by then: median **{su['cpu_median']:.2f} s** (runs: "
        f"{', '.join(f'{x:.2f}' for x in su['cpu'])}); on an idle machine the wall time is about this "
        "(one thread imports and loads; the disk cache is warm after the first run).",
    ]
    if "torch_wall" in su:
        lines += [
            f"- of that, from the spawn to `import torch` done (the interpreter, PIL and torch): median "
            f"**{su['torch_wall_median']:.2f} s** (runs: {', '.join(f'{x:.2f}' for x in su['torch_wall'])});",
            f"- and from there to the first decode, gradcam's own start-up (its imports, the model built and its "
            f"weights loaded, the colormap): median "
            f"**{su['ours_wall_median']:.2f} s** (runs: {', '.join(f'{x:.2f}' for x in su['ours_wall'])}).",
            "",
            "gradcam's sources were byte-compiled first, as `pip install` does (a source tree run with "
            "`PYTHONDONTWRITEBYTECODE=1`, as on the development machine, compiles every gradcam module at each "
            "start: about 0.14 s more). A warm-up run precedes the measured ones.",
        ]
    lines.append("")
    lines += NOTES
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


NOTES = [
    "## Reading the numbers",
    "",
    "- The reference and the in-process runs share this process, its torch threads and its warm model; "
    "the CLI run is the command a user types (a fresh process: imports and model load count in its overall rate).",
    "- Work per photo beyond the reference: the backward pass to the layer and the map (Grad-CAM costs about a "
    "plain forward on this model), the overlay blended at the photo's size and its lossless PNG (zlib level 1, "
    "`Z_RLE`: about 8 ms of filtering and 8 ms of compression per 512 x 512 photo on this CPU), the resume "
    "record and the index. The local engine runs decoding and preprocessing (a background thread, `--prefetch` "
    "batches ahead) and the writes (another thread) beside the explain step; PIL and torch release the GIL, "
    "so these overlap on separate cores. With as many torch threads as cores, the forward already keeps "
    "the cores busy, and what the overlap can hide is the forward's idle share: the CPU-time column then bounds "
    "the wall ratio. Outputs are byte-identical to the serial path's and to those of the version before "
    "the overlap (tests/test_folder_pipeline.py); checked also against outputs of main before this change "
    "(commit d2ce2c4) on 20 photos, default options and `--json --top 2 --maps --batch-size 3`, with "
    "`--prefetch 2` and `--prefetch 0`: every overlay, JSON, maps file and resume record byte-identical, the "
    "index rows equal (output folder and time of writing aside).",
    "",
    "- The marginal window starts at the report of photo SKIP. With the pipeline, work on the next batches "
    "(decoded ahead, explained while the previous batch is written) is already done by then, so the "
    "explain rows' marginal rates are optimistic by up to two batches' work in the window (under 5% at "
    "200 photos and SKIP 50), the main thread's column by up to a batch's explain step; the CPU time of the "
    "whole run (overall) has no such edge.",
    "",
    "Reproduce: `python benchmarks/folder_pipeline.py` (`--threads 2,1`: the torch thread counts).",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=10, help="copies of foolbox's 20 photos (default 10: 200)")
    ap.add_argument("--batch-size", type=int, default=4, help="the CLI's default, 4")
    ap.add_argument(
        "--threads",
        type=lambda v: [int(x) for x in v.split(",")],
        default=sorted({torch.get_num_threads(), 1}, reverse=True),
        help="torch thread counts, comma-separated (default: torch's, then 1)",
    )
    ap.add_argument("--prefetch", type=int, default=2, help="the CLI's default, 2")
    ap.add_argument(
        "--skip", type=int, default=50, help="the marginal rate counts photos SKIP..N (default 50)"
    )
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--startup-runs", type=int, default=5, help="start-up measurements (default 5: the median)"
    )
    ap.add_argument(
        "--omp-active",
        action="store_true",
        help="leave OpenMP's wait policy alone (default: OMP_WAIT_POLICY=PASSIVE for this process and the "
        "children, so that idle torch threads sleep instead of spinning: on a machine shared with other jobs "
        "spinning threads burn CPU time that measures the load, not the work)",
    )
    ap.add_argument("--no-write", action="store_true", help="print the results only")
    ap.add_argument("--json-out", default=os.path.join(HERE, "results", "folder_pipeline.json"))
    ap.add_argument("--md-out", default=os.path.join(ROOT, "docs", "results", "folder-pipeline.md"))
    ap.add_argument("--page-from", metavar="JSON", help="only write the page again from a results file")
    args = ap.parse_args(argv)
    if args.page_from:
        with open(args.page_from) as f:
            write_page(json.load(f), args.md_out)
        return 0
    sys.path.insert(0, SRC)
    work = tempfile.mkdtemp(prefix="gradcam-bench-folder-")
    try:
        load_before = os.getloadavg()
        res = measure(args, work)
        res.update(
            command="python benchmarks/folder_pipeline.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            cpus=os.cpu_count(),
            torch=torch.__version__,
            threads=args.threads,
            batch_size=args.batch_size,
            copies=args.copies,
            skip=args.skip,
            rounds=args.rounds,
            load_before=load_before,
            load_after=os.getloadavg(),
            python=platform.python_version(),
            omp_wait_policy=os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            prefetch=args.prefetch,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(res, indent=1))
    if not args.no_write:
        os.makedirs(os.path.dirname(args.json_out), exist_ok=True)
        with open(args.json_out, "w") as f:
            json.dump(res, f, indent=1)
        write_page(res, args.md_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
