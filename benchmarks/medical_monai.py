"""gradcam beside MONAI's own CAMs on MONAI's 3-D networks: agreement, CPU time and peak memory, one run.

    OMP_NUM_THREADS=2 python benchmarks/medical_monai.py [--size 96] [--batch 2] [--repeats 3]

Per network (random weights, eval mode, a (batch, 1, size^3) volume): the CPU time (``time.process_time``,
all threads of the process) and the wall time of a plain forward (``torch.no_grad``) and of each method,
the median of ``--repeats`` rounds in which every call runs once in turn (so that a change of the machine's
load during the run falls on all of them alike), after a first round that is the warm-up and measures the
peak extra resident memory of one call (Linux: ``VmHWM`` reset through ``/proc/self/clear_refs`` before the
call, minus the resident size then); all as ratios to the plain forward, measured in the same process. On a
shared machine the CPU-time ratios are the ones to read: other processes' load inflates wall time, much
less the CPU time this process spends.
Agreement at the same layer: MONAI's default normaliser maps (min, max) to (1, 0), so its map is compared
with ``1 - ours`` (max |difference| over all voxels). MONAI's Grad-CAM++ keeps exp(score) and sums
A * g^3 over positions (gradcam's: sum_ab A_ab times g^3), and its occlusion is a different estimator
(the class score with a window zeroed; gradcam's Occlusion is 2-D only): for those, the Pearson correlation
with gradcam's Grad-CAM++ / Grad-CAM is given (occlusion's map is low where evidence is, hence the sign). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def _kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


_LIBC = None


def _libc():
    """glibc, with a fixed mmap threshold (128 KB): freed tensors go back to the system at once, so that the
    resident size before a call does not hide a peak inside memory kept from an earlier call."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        _LIBC = ctypes.CDLL("libc.so.6")
        _LIBC.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed (no dynamic growth)
    return _LIBC


def peak_extra_mb(fn) -> float:
    """Peak resident memory of ``fn()`` above the resident size before it (MB; Linux VmHWM)."""
    _libc().malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the current resident size
    before = _kb("VmRSS:")
    out = fn()
    extra = (_kb("VmHWM:") - before) / 1024
    del out
    return extra


def timed(fn):
    """(CPU seconds, wall seconds, output) of one call."""
    c, t = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - t, out


def measure_all(calls, repeats: int, once=()):
    """{label: (median CPU s, median wall s, peak extra MB)} and {label: output}: a first round (warm-up and
    memory), then ``repeats`` rounds of every call in turn (labels in ``once``: the first call only)."""
    first, outs = {}, {}
    for label, fn in calls.items():
        box: dict = {}
        mem = peak_extra_mb(lambda box=box, fn=fn: box.setdefault("r", timed(fn)))
        cpu, wall, outs[label] = box["r"]
        first[label] = (cpu, wall, mem)
    times = {label: [] for label in calls}
    for _ in range(repeats):
        for label, fn in calls.items():
            if label not in once:
                times[label].append(timed(fn)[:2])
    rows = {}
    for label, (cpu, wall, mem) in first.items():
        got = times[label]
        if got:
            cpu = statistics.median(c for c, _ in got)
            wall = statistics.median(w for _, w in got)
        rows[label] = (cpu, wall, mem)
    return rows, outs


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-30))


def networks():
    from monai.networks import nets

    return {
        "DenseNet121": lambda: nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2),
        "resnet18": lambda: nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=2),
    }


def run_one(name, build, x, repeats, occl_mask):
    import monai.visualize as mv

    import gradcam

    torch.manual_seed(0)
    model = build().eval()
    ours = gradcam.GradCAM(model)
    layer = ours(x).layer
    ours_pp = gradcam.GradCAMPlusPlus(model, layer=layer)
    theirs = mv.GradCAM(nn_module=model, target_layers=layer)
    theirs_pp = mv.GradCAMpp(nn_module=model, target_layers=layer)
    their_occ = mv.OcclusionSensitivity(
        nn_module=model, mask_size=occl_mask, n_batch=8, verbose=False, mode=0.0, overlap=0.0, activate=False
    )

    def forward():
        with torch.no_grad():
            return model(x)

    cls = forward().argmax(1)
    calls = {
        "forward": forward,
        "gradcam GradCAM": lambda: ours(x).maps,
        "MONAI GradCAM": lambda: theirs(x),
        "gradcam GradCAM++": lambda: ours_pp(x).maps,
        "MONAI GradCAMpp": lambda: theirs_pp(x),
        "MONAI OcclusionSensitivity": lambda: their_occ(x)[0],  # one call (a forward per window)
    }
    rows, outs = measure_all(calls, repeats, once=("MONAI OcclusionSensitivity",))
    a, b = outs["gradcam GradCAM"][:, 0], outs["MONAI GradCAM"][:, 0]
    agree = {"GradCAM": f"max abs(MONAI - (1 - ours)) = {(b - (1 - a)).abs().max().item():.1e}"}
    a, b = outs["gradcam GradCAM++"][:, 0], outs["MONAI GradCAMpp"][:, 0]
    agree["GradCAM++"] = f"Pearson r(MONAI, 1 - ours) = {corr(b, 1 - a):.3f}"
    a = outs["gradcam GradCAM"][:, 0]
    b = outs["MONAI OcclusionSensitivity"][
        torch.arange(x.shape[0]), cls
    ]  # (N, classes, D, H, W): the predicted class
    agree["OcclusionSensitivity"] = f"Pearson r(MONAI occlusion, -(gradcam Grad-CAM)) = {corr(b, -a):.3f}"
    return layer, rows, agree


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--occlusion-window", type=int, default=32)
    args = p.parse_args(argv)
    import monai

    _libc()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, args.size, args.size, args.size)
    print(
        f"torch {torch.__version__}, MONAI {monai.__version__}, threads {torch.get_num_threads()}, "
        f"input {tuple(x.shape)}, allocator {'tcmalloc' if 'tcmalloc' in os.environ.get('LD_PRELOAD', '') else 'glibc'}, "
        f"load average {os.getloadavg()[0]:.1f} at start\n"
    )
    for name, build in networks().items():
        layer, rows, agree = run_one(name, build, x, args.repeats, args.occlusion_window)
        f_c, f_w, f_m = rows["forward"]
        print(f"### {name} (layer `{layer}`)\n")
        print(
            "| call | CPU time (s) | CPU time / forward | wall time (s) | wall / forward "
            "| peak extra memory (MB) | memory / forward |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for label, (c, w, m) in rows.items():
            print(
                f"| {label} | {c:.3f} | {c / f_c:.2f} | {w:.3f} | {w / f_w:.2f} | {m:.0f} | {m / max(f_m, 1.0):.2f} |"
            )
        print("\nAgreement: " + "; ".join(f"{k}: {v}" for k, v in agree.items()) + "\n", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
