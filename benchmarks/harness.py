"""Shared benchmark machinery: interleaved timing, per-process peak memory, allocator, Markdown.

Timing: every case of one (model, batch) runs in one process, in rounds; each round runs every case
once, in an order rotated from round to round, so that load from other processes hits all cases
alike. The ratio of a case to the plain forward is the median over rounds of (case time / forward
time of the same round); ms/image is the median time divided by the batch size.

Memory: each case runs once in a fresh process (after a tiny warm-up on a 64 x 64 input that loads
lazily initialised code). The peak resident set size of that call is read from ``VmHWM`` after
resetting it (``/proc/self/clear_refs``); the figure reported is the peak minus the RSS just before
the call, i.e. the extra memory that the call needs. With a GPU, the CUDA figure is
``max_memory_allocated`` minus the allocated memory before the call.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import torch

TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
Case = Callable[[], object]


def allocator() -> str:
    """The allocator this process runs under (from ``LD_PRELOAD``)."""
    return "tcmalloc" if "tcmalloc" in os.environ.get("LD_PRELOAD", "") else "glibc malloc"


def allocator_env(name: str) -> Dict[str, str]:
    """An environment for a child process that runs under allocator ``name`` ('tcmalloc' or 'glibc')."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    # Idle OpenMP threads sleep instead of spinning: on a shared, oversubscribed machine spinning only
    # steals time slices, and it would count as CPU time of the call.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if name == "tcmalloc":
        if not os.path.exists(TCMALLOC):
            raise SystemExit(
                f"{TCMALLOC} not found; install it with: apt-get install -y libtcmalloc-minimal4"
            )
        env["LD_PRELOAD"] = TCMALLOC
    return env


def setup(threads: int) -> None:
    """Fix the number of intra-op threads of this process."""
    torch.set_num_threads(threads)
    torch.set_grad_enabled(True)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_memory(fn: Case, device: str = "cpu") -> Dict[str, float]:
    """Run ``fn`` once; return its extra peak RSS (MB) and, on CUDA, its extra peak allocated memory (MB)."""
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = _status_kb("VmHWM")
    res = {"rss_mb": (peak - base) / 1024.0, "seconds": seconds}
    if cuda:
        res["cuda_mb"] = (torch.cuda.max_memory_allocated() - cuda_base) / 2**20
    del out
    return res


def time_interleaved(
    cases: Dict[str, Case],
    rounds: int,
    warmup: int = 1,
    budget_s: float = float("inf"),
    min_rounds: int = 3,
    device: str = "cpu",
    reference: str = "forward",
    log: Callable[[str], None] = print,
) -> Dict[str, Dict[str, object]]:
    """Time ``cases`` in interleaved rounds; per case: all times (s) and per-round ratios to ``reference``."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
            sync(device)
    times: Dict[str, List[float]] = {n: [] for n in names}
    cpu: Dict[str, List[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            out = cases[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            del out
        log(f"    round {r + 1}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f}ms" for n in names))
        if r + 1 >= min(min_rounds, rounds) and time.perf_counter() - start > budget_s:
            break
    ref, ref_cpu = times[reference], cpu[reference]
    return {
        n: {
            "times": t,
            "ratios": [a / b for a, b in zip(t, ref)],
            "cpu": cpu[n],
            "cpu_ratios": [a / b for a, b in zip(cpu[n], ref_cpu)],
        }
        for n, t in times.items()
    }


def summarize(
    timed: Dict[str, Dict[str, object]], batch: int, reference: str = "forward"
) -> Dict[str, Dict[str, float]]:
    """Per case: median ms/image, median per-round ratio to ``reference``, and the ratio of the best times.

    Load from other processes only ever adds time, so on a busy machine the best of several runs is the
    steadiest estimate of a call's own cost; both are reported.
    """
    return {
        n: {
            "ms_per_image": statistics.median(v["times"]) * 1e3 / batch,
            "ratio": statistics.median(v["ratios"]),
            "best_ms_per_image": min(v["times"]) * 1e3 / batch,
            "best_ratio": min(v["times"]) / min(timed[reference]["times"]),
            "cpu_ms_per_image": statistics.median(v["cpu"]) * 1e3 / batch,
            "cpu_ratio": statistics.median(v["cpu_ratios"]),
            "rounds": len(v["times"]),
        }
        for n, v in timed.items()
    }


def run_child(script: str, args: List[str], env: Dict[str, str], timeout: float = 1800) -> Optional[dict]:
    """Run ``script`` with ``args`` in a fresh interpreter; its last stdout line is a JSON result."""
    proc = subprocess.run(
        [sys.executable, script, *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        sys.stderr.write(f"child {args} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}\n")
        return None
    sys.stderr.write(proc.stderr)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    for ln in lines[:-1]:
        print(ln)
    return json.loads(lines[-1]) if lines else None


def machine() -> Dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical cores)" if names else cpu
    except OSError:
        pass
    info = {"cpu": cpu, "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def fmt(v: Optional[float], digits: int = 1, suffix: str = "") -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{suffix}"


def markdown_table(header: List[str], rows: List[List[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# -- orchestration: one child process per timing run and per memory measurement ----------------------------
Build = Callable[[str, int, int, str], tuple]
MakeCases = Callable[..., Dict[str, Case]]


def child(argv: List[str], build: Build, make_cases: MakeCases) -> bool:
    """If ``argv`` asks for a child run (``--child CONFIG_JSON``), do it, print JSON and return True."""
    if len(argv) < 3 or argv[1] != "--child":
        return False
    cfg = json.loads(argv[2])
    setup(cfg["threads"])
    device = cfg.get("device", "cpu")
    model, layer, x = build(cfg["model"], cfg["batch"], cfg.get("size", 224), device)
    cases = make_cases(model, layer, x, device)
    if cfg["kind"] == "time":
        log = lambda s: sys.stderr.write(s + "\n")  # noqa: E731
        timed = time_interleaved(
            cases, rounds=cfg["rounds"], warmup=cfg["warmup"], budget_s=cfg["budget"], device=device, log=log
        )
        print(json.dumps({"cases": list(cases), "summary": summarize(timed, cfg["batch"]), "raw": timed}))
    else:
        name = cfg["case"]
        # Warm-up on a tiny input: loads lazily initialised code without touching the allocator's pools.
        small = torch.rand(1, 3, 64, 64, device=device) * 2 - 1
        make_cases(model, layer, small, device)[name]()
        print(json.dumps(measure_memory(cases[name], device)))
    return True


def orchestrate(
    script: str,
    models: List[str],
    batches: List[int],
    allocators: List[str],
    *,
    threads: int,
    rounds: Callable[[int], int],
    warmup: int,
    budget: float,
    device: str = "cpu",
    memory=(1, 16),
    skip: Callable[[str, int, str], bool] = lambda m, b, c: False,
    memory_repeats: int = 1,
) -> List[dict]:
    """Time every case of every (model, batch), and measure each case's memory in its own process.

    The memory figure is the median over ``memory_repeats`` fresh processes (glibc malloc's peaks vary
    by tens of MB from process to process with the reuse of freed blocks).
    """
    results = []
    for alloc in allocators:
        env = allocator_env(alloc)
        for model in models:
            for batch in batches:
                cfg = {"model": model, "batch": batch, "threads": threads, "device": device}
                load_before = load()
                print(
                    f"[{alloc}] {model} batch {batch}: timing (load {load_before}) {time.strftime('%H:%M:%S')}",
                    flush=True,
                )
                t0 = time.perf_counter()
                timed = run_child(
                    script,
                    [
                        "--child",
                        json.dumps(
                            {
                                **cfg,
                                "kind": "time",
                                "rounds": rounds(batch),
                                "warmup": warmup,
                                "budget": budget,
                            }
                        ),
                    ],
                    env,
                )
                if timed is None:
                    continue
                mem: Dict[str, Optional[dict]] = {}
                if batch in memory:
                    for case in timed["cases"]:
                        if skip(model, batch, case):
                            continue
                        runs = [
                            run_child(
                                script, ["--child", json.dumps({**cfg, "kind": "mem", "case": case})], env
                            )
                            for _ in range(memory_repeats)
                        ]
                        runs = [m for m in runs if m is not None]
                        mem[case] = (
                            {
                                "rss_mb": statistics.median(m["rss_mb"] for m in runs),
                                "rss_mb_all": [m["rss_mb"] for m in runs],
                                **(
                                    {"cuda_mb": statistics.median(m["cuda_mb"] for m in runs)}
                                    if runs and "cuda_mb" in runs[0]
                                    else {}
                                ),
                            }
                            if runs
                            else None
                        )
                        print(f"    memory {case}: {mem[case]}", flush=True)
                results.append(
                    {
                        "allocator": alloc,
                        "model": model,
                        "batch": batch,
                        "device": device,
                        "summary": timed["summary"],
                        "memory": mem,
                        "load_before": load_before,
                        "load_after": load(),
                        "seconds": time.perf_counter() - t0,
                    }
                )
                for case, s in timed["summary"].items():
                    print(f"    {case:28s} {s['ms_per_image']:9.1f} ms/img  x{s['ratio']:.3f}", flush=True)
    return results


def rows(result: dict, labels: Dict[str, str], cuda: bool = False) -> List[List[str]]:
    """Markdown rows of one (allocator, model, batch) result."""
    out = []
    fwd_mem = (result["memory"].get("forward") or {}).get("rss_mb")
    for case, s in result["summary"].items():
        m = result["memory"].get(case) or {}
        rss = m.get("rss_mb")
        rel = rss / fwd_mem if rss is not None and fwd_mem and fwd_mem > 0 else None
        row = [
            result["model"],
            str(result["batch"]),
            labels.get(case, case),
            fmt(s["ms_per_image"]),
            fmt(s["ratio"], 2, "x"),
            fmt(s["best_ms_per_image"]),
            fmt(s["best_ratio"], 2, "x"),
            fmt(s.get("cpu_ratio"), 2, "x"),
            fmt(rss, 0),
            fmt(rel, 2, "x"),
        ]
        if cuda:
            row.append(fmt(m.get("cuda_mb"), 0))
        out.append(row)
    return out


def forward_dx(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The reference "forward + backward to the input": d(max logit)/dx, parameter gradients off
    (restored afterwards)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        xr = x.detach().requires_grad_(True)
        out = model(xr)
        (g,) = torch.autograd.grad(out.max(dim=1).values.sum(), xr)
    finally:
        for p in params:
            p.requires_grad_(True)
    return g
