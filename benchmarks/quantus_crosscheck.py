"""Cross-check and time gradcam.metrics against Quantus on the same model, inputs and maps.

Run in the benchmark environment (Quantus needs pandas there; nothing here runs in CI):

    PYTHONPATH=src:/path/to/pandas /work/benchenv/bin/python benchmarks/quantus_crosscheck.py --out docs/results

Model: the embedded EfficientNet-Lite0 (ImageNet), N foolbox photos at 224 px, their labels; maps: our
Grad-CAM maps (N, 224, 224) in [0, 1]. Conventions are matched per metric (see ``MATCH``): the same
feature subsets (replayed from NumPy's seeded stream), the same baselines, Quantus' per-value features
(``per_channel=True``), the same grid superpixels for IROF (Quantus' segmentation function replaced by our
grid), the same perturbation noise for the sensitivities (Quantus' perturb_func replaced by one that
replays ours), the same other classes for random-logit. Both sides are timed in the same process, one
after the other, each metric on the same N images; time per image is reported. Same work, same threads:
our model metrics forward the batches Quantus forwards (``--batch-size``, default N), NumPy gets torch's
thread count, and every forward on either side is counted (by batch size) and timed inside the network,
so each row also reports the forwards per image and the time spent outside them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time

# the same thread count for NumPy/SciPy (Quantus' side) as for torch: set before NumPy loads
_THREADS = sys.argv[sys.argv.index("--threads") + 1] if "--threads" in sys.argv else "1"
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import quantus  # noqa: E402
import quantus.helpers.utils as qutils  # noqa: E402

import gradcam  # noqa: E402
from gradcam import metrics as M  # noqa: E402
from gradcam.evaluation import mosaics as mos  # noqa: E402
from gradcam.models import load_model  # noqa: E402


def summary(values: np.ndarray):
    """Per-image values, or for large outputs (imputed images) their size and first values."""
    if values.size <= 100:
        return values.round(6).tolist()
    return {"values_per_image": int(values.shape[1]), "first_10_of_image_0": values[0, :10].round(6).tolist()}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward for our model metrics (default: N, the batch Quantus forwards)",
    )
    ap.add_argument(
        "--resume", action="store_true", help="keep the rows of OUT/quantus_crosscheck.json, run the rest"
    )
    args = ap.parse_args()
    if not hasattr(np, "trapz"):  # Quantus 0.6.0 calls np.trapz, removed in NumPy 2.4
        np.trapz = np.trapezoid
    torch.set_num_threads(args.threads)
    lm = load_model("efficientnet-lite0")
    model, layer = lm.model.eval(), lm.layer
    photos = [p for p in mos.load_photos(224)][: args.n]
    x = (torch.stack([p.image for p in photos]) - 0.5) / 0.5
    y = torch.tensor([p.label for p in photos])
    bs = args.batch_size or args.n
    # every forward of the model, on either side, is counted by batch size at the stem convolution and
    # timed from there to the classifier's output (the time inside the network)
    stem = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    head_ = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    fwd, clock = collections.Counter(), {"start": 0.0, "inside": 0.0}

    def _start(m, inp):
        fwd.update([int(inp[0].shape[0])])
        clock["start"] = time.perf_counter()

    def _stop(m, inp, out):
        clock["inside"] += time.perf_counter() - clock["start"]

    stem.register_forward_pre_hook(_start)
    head_.register_forward_hook(_stop)

    cam = gradcam.GradCAM(model, layer=layer)
    maps = cam(x, target=y).maps[:, 0].detach()  # (N, 224, 224) in [0, 1]
    # a tiny rank-preserving jitter makes every pixel's value distinct (Grad-CAM maps have flat zero
    # regions): feature orders then agree whatever the sort's tie rule
    n, c, h, w = x.shape
    jitter = torch.randperm(h * w, generator=torch.Generator().manual_seed(0)).view(1, h, w) * 1e-6
    maps = maps + jitter  # steps of 1e-6 (> float32 resolution below 1.05), 0.05 at most
    xn, yn, an = x.numpy(), y.numpy(), maps[:, None].numpy()
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    masks[:, 56:168, 56:168] = True  # a centre box as ground truth for the localisation measures
    sn = masks[:, None].numpy()

    def explain_np(model, inputs, targets, **kw):
        xt = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        return cam(xt, target=torch.as_tensor(np.asarray(targets)).long().view(-1, 1)).maps.detach().numpy()

    def explain_t(xx, tt):
        return cam(xx, target=tt.view(-1, 1)).maps[:, 0]

    rows = []
    batch_cost = {}

    def write():
        meta = {
            "forward_s_per_image_by_batch": {str(k): v for k, v in batch_cost.items()},
            "n_images": n,
            "size": h,
            "model": "efficientnet-lite0",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "quantus": quantus.__version__,
            "python": platform.python_version(),
        }
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "quantus_crosscheck.json"), "w") as f:
                json.dump({"meta": meta, "rows": rows}, f, indent=1)
            lines = [
                "| metric | max abs. difference | tolerance | agree | ours (s/image) | Quantus (s/image) | speed-up | "
                "forward images per image (ours / Quantus) | outside the forwards, s/image (ours / Quantus) | conventions matched |",
                "| --- | ---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: | --- |",
            ]
            for r_ in rows:
                fi, out_ = (
                    r_.get("forward_images_per_image", [0, 0]),
                    r_.get("outside_forwards_s_per_image", [0, 0]),
                )
                fw = f"{fi[0]:g} / {fi[1]:g}" if max(fi) else "none"
                ov = f"{out_[0]:.4f} / {out_[1]:.4f}" if max(fi) else "(all)"
                lines.append(
                    f"| `{r_['metric']}` | {r_['max_abs_diff']:.1e} | {r_['tolerance']:g} | {'yes' if r_['agree'] else '**no**'} | "
                    f"{r_['ours_s_per_image']:.4f} | {r_['quantus_s_per_image']:.4f} | {r_['speedup']:.1f}× | {fw} | {ov} | "
                    f"{r_['matching']} |"
                )
            head = (
                f"<!-- made by: benchmarks/quantus_crosscheck.py --n {n} --threads {torch.get_num_threads()} -->\n"
                f"EfficientNet-Lite0, {n} foolbox photos at {h} px, Grad-CAM maps; torch {torch.__version__}, "
                f"Quantus {quantus.__version__}, {torch.get_num_threads()} thread(s) for torch and NumPy, same "
                f"process; our model metrics forward {bs} images at a time, as Quantus (batch_size={n}). "
                "Forwards are counted and timed inside the network (from the stem convolution to the classifier); "
                "'outside the forwards' is the rest of each side's time (perturbing, imputing, sorting, "
                "explaining's backward passes, bookkeeping).\n\n"
            )
            if batch_cost:
                lines += [
                    "",
                    "Plain no-grad forward of the model in this run, by batch size (same threads):",
                    "",
                    "| images per forward | " + " | ".join(str(k) for k in batch_cost) + " |",
                    "| --- |" + " ---: |" * len(batch_cost),
                    "| ms per image | " + " | ".join(f"{v * 1000:.1f}" for v in batch_cost.values()) + " |",
                ]
            with open(os.path.join(args.out, "quantus_crosscheck.md"), "w") as f:
                f.write(head + "\n".join(lines) + "\n")

    if args.resume and args.out and os.path.exists(os.path.join(args.out, "quantus_crosscheck.json")):
        with open(os.path.join(args.out, "quantus_crosscheck.json")) as f:
            rows.extend(json.load(f)["rows"])
    done = {r["metric"] for r in rows}

    def compare(name, ours_fn, theirs_fn, match, tol, t_theirs=None):
        if name in done:
            return
        fwd.clear()
        clock["inside"] = 0.0
        ours, t_ours = timed(ours_fn)
        f_ours, ft_ours = collections.Counter(fwd), clock["inside"]
        fwd.clear()
        clock["inside"] = 0.0
        if t_theirs is None:
            theirs, t_theirs = timed(theirs_fn)
            f_theirs, ft_theirs = collections.Counter(fwd), clock["inside"]
        else:
            theirs, (f_theirs, ft_theirs) = theirs_fn(), recorded_fwd
        ours = np.asarray(ours, dtype=np.float64).reshape(n, -1)
        theirs = np.asarray(theirs, dtype=np.float64).reshape(n, -1)
        diff = float(np.nanmax(np.abs(ours - theirs)))
        rows.append(
            {
                "metric": name,
                "max_abs_diff": diff,
                "tolerance": tol,
                "agree": bool(diff <= tol),
                "ours_s_per_image": t_ours / n,
                "quantus_s_per_image": t_theirs / n,
                "speedup": t_theirs / max(t_ours, 1e-9),
                "matching": match,
                "forwards_ours": {str(k): v for k, v in sorted(f_ours.items())},
                "forwards_quantus": {str(k): v for k, v in sorted(f_theirs.items())},
                "forward_images_per_image": [
                    sum(k * v for k, v in f_ours.items()) / n,
                    sum(k * v for k, v in f_theirs.items()) / n,
                ],
                "outside_forwards_s_per_image": [(t_ours - ft_ours) / n, (t_theirs - ft_theirs) / n],
                "inside_forwards_s_per_image": [ft_ours / n, ft_theirs / n],
                "ours": summary(ours),
                "quantus": summary(theirs),
            }
        )
        print(
            f"{name}: max |diff| {diff:.2e} (tol {tol}), ours {t_ours / n:.4f} s/img, quantus {t_theirs / n:.4f} "
            f"s/img, x{t_theirs / max(t_ours, 1e-9):.1f}; forwards ours {dict(f_ours)} quantus {dict(f_theirs)}; "
            f"outside forwards ours {(t_ours - ft_ours) / n:.4f} quantus {(t_theirs - ft_theirs) / n:.4f} s/img",
            flush=True,
        )
        write()

    kw = dict(model=model, x_batch=xn, y_batch=yn, a_batch=an, device="cpu")
    compare(
        "sparseness",
        lambda: M.sparseness(maps),
        lambda: quantus.Sparseness(disable_warnings=True)(**kw),
        "Quantus adds 1e-7 to every value before the Gini index; we do not",
        1e-4,
    )
    compare(
        "complexity",
        lambda: M.complexity(maps),
        lambda: quantus.Complexity(disable_warnings=True)(**kw),
        "none",
        1e-4,
    )
    compare(
        "relevance_mass_accuracy",
        lambda: M.relevance_mass_accuracy(maps, masks),
        lambda: quantus.RelevanceMassAccuracy(disable_warnings=True)(**kw, s_batch=sn),
        "none",
        1e-5,
    )
    compare(
        "relevance_rank_accuracy",
        lambda: M.relevance_rank_accuracy(maps, masks),
        lambda: quantus.RelevanceRankAccuracy(disable_warnings=True)(**kw, s_batch=sn),
        "ties: we rank tied values by position, Quantus by np.argsort (quicksort)",
        1e-3,
    )

    # focus on one 2x2 mosaic per photo pair: the target's tiles are (1, 0, 0, 1)
    tiles = torch.zeros(n, h, w, dtype=torch.bool)
    tiles[:, : h // 2, : w // 2] = True
    tiles[:, h // 2 :, w // 2 :] = True
    compare(
        "focus",
        lambda: M.focus(maps, tiles),
        lambda: quantus.Focus(disable_warnings=True)(**kw, custom_batch=[(1, 0, 0, 1)] * n),
        "none (the mosaic is described by tile flags in Quantus, by a mask here)",
        1e-5,
    )

    base = x.flatten(1).amin(1).view(n, 1, 1, 1)  # Quantus' "black": the image's minimum

    from quantus.functions.perturb_func import batch_baseline_replacement_by_indices

    recorded = []

    def recording(arr, indices, **k):  # Quantus' own perturbation, with the subsets it drew recorded
        recorded.append(np.asarray(indices).copy())
        return batch_baseline_replacement_by_indices(arr, indices, **k)

    def fc_theirs():
        np.random.seed(0)
        return quantus.FaithfulnessCorrelation(
            nr_runs=100,
            subset_size=224,
            perturb_func=recording,
            return_aggregate=False,
            disable_warnings=True,
        )(**kw, batch_size=n)

    fwd.clear()
    clock["inside"] = 0.0
    theirs_fc, t_fc = timed(fc_theirs) if "faithfulness_correlation" not in done else (None, None)
    recorded_fwd = (collections.Counter(fwd), clock["inside"])
    sub = torch.tensor(np.stack(recorded, 1)) if recorded else None  # (N, runs, 224)
    compare(
        "faithfulness_correlation",
        lambda: M.faithfulness_correlation(
            model, x, maps, y, subsets=sub, baseline=base, per_channel=True, max_batch=bs
        ),
        lambda: theirs_fc,
        "per-value features, baseline = image minimum ('black'), Quantus' subsets replayed; logits",
        1e-3,
        t_theirs=t_fc,
    )

    step = h * w // 16  # Quantus asserts that it divides the map's size
    compare(
        "monotonicity",
        lambda: M.monotonicity(
            model, x, maps, y, features_in_step=step, baseline=base, per_channel=True, max_batch=bs
        ),
        lambda: quantus.Monotonicity(features_in_step=step, disable_warnings=True)(**kw, batch_size=n),
        "per-value features (48 steps), baseline = image minimum. Quantus 0.6.0 writes the baseline again "
        "instead of putting x's values back, so it returns 1 for any map (a bug)",
        0.0,
    )

    grid = M.grid_segments((h, w), 8)
    real_seg = qutils.get_superpixel_segments
    qutils.get_superpixel_segments = lambda img, segmentation_method: grid.numpy()
    try:

        def zero_where(arr, mask, **k):  # Quantus 0.6.0's own mask has 1 channel and fails on RGB input
            return np.where(np.broadcast_to(mask, arr.shape), 0.0, arr)

        compare(
            "irof",
            lambda: M.irof(model, x, maps, y, segments=grid, baseline=0.0, max_batch=bs),
            lambda: quantus.IROF(perturb_func=zero_where, return_aggregate=False, disable_warnings=True)(
                **kw, batch_size=n
            ),
            "8x8 grid superpixels on both sides (Quantus: SLIC by default); baseline 0 on both (Quantus' "
            "default 'mean' is the mean of the partly perturbed batch, ours the image's mean); Quantus 0.6.0's "
            "IROF fails on RGB input (1-channel mask), so a perturb_func broadcasting its mask is passed",
            1e-3,
        )
    finally:
        qutils.get_superpixel_segments = real_seg

    # ROAD: Quantus 0.6.0's ROAD fails on RGB inputs with one-channel maps (it indexes the H*W imputation mask
    # with C*H*W feature indices), so its core, noisy linear imputation, is compared directly: the same
    # pixels (the top p% of the map, p = 10, 30, 50, 70, 90), noise 0; Quantus solves with scipy's spsolve.
    from quantus.functions.perturb_func import noisy_linear_imputation as q_impute

    pct = [10, 30, 50, 70, 90]
    order = torch.sort(maps.reshape(n, -1), dim=1, descending=True, stable=True).indices
    keep = torch.ones(n, len(pct), h * w, dtype=torch.bool)
    for j, p_ in enumerate(pct):
        keep[:, j].scatter_(1, order[:, : int(h * w * p_ / 100)], False)

    def ours_imp():
        xi = x[:, None].expand(n, len(pct), c, h, w).reshape(-1, c, h, w)
        return M.noisy_linear_imputation(xi, keep.view(-1, h, w), noise=0.0).view(n, -1)

    def theirs_imp():
        return np.stack(
            [
                np.stack(
                    [q_impute(xn[i], np.nonzero(~keep[i, j].numpy())[0], noise=0.0) for j in range(len(pct))]
                )
                for i in range(n)
            ]
        ).reshape(n, -1)

    compare(
        "road: noisy_linear_imputation",
        ours_imp,
        theirs_imp,
        "the imputed images for p = 10..90% removed (noise 0); Quantus' ROAD itself fails on RGB input in 0.6.0 "
        "(IndexError), so ROAD's imputation is compared; CG to relative residual 1e-8 here, spsolve there",
        1e-3,
    )

    samples, radius = 10, 0.2
    noise = (torch.rand((samples, *x.shape), generator=torch.Generator().manual_seed(0)) * 2 - 1) * radius
    state = {"i": 0}

    def replay(arr, indices, **k):
        out = arr + noise[state["i"] % samples].reshape(arr.shape).numpy()
        state["i"] += 1
        return out

    for fn, qcls in (
        ("max_sensitivity", quantus.MaxSensitivity),
        ("avg_sensitivity", quantus.AvgSensitivity),
    ):
        state["i"] = 0
        compare(
            fn,
            lambda fn=fn: getattr(M, fn)(
                model, x, maps, y, explain_t, n_samples=samples, radius=radius, seed=0, max_batch=bs
            ),
            lambda qcls=qcls: qcls(nr_samples=samples, perturb_func=replay, disable_warnings=True)(
                **kw, explain_func=explain_np, batch_size=n
            ),
            f"{samples} samples of U[-{radius}, {radius}] noise replayed into Quantus",
            1e-3,
        )

    def rl_theirs():
        return quantus.RandomLogit(num_classes=1000, seed=42, disable_warnings=True)(
            **kw, explain_func=explain_np, batch_size=n
        )

    np.random.seed(42)
    r = np.random.randint(0, 999, n)
    others = torch.tensor([v if v < t else v + 1 for v, t in zip(r, yn)])
    compare(
        "random_logit",
        lambda: M.random_logit(model, x, maps, y, explain_t, others=others, flatten=True),
        rl_theirs,
        "Quantus' other classes (seed 42) given to ours; SSIM on the flattened maps (Quantus' way)",
        1e-3,
    )

    x_flat = xn.reshape(n, -1)

    def restore(arr, indices, **k):  # what Monotonicity means: put x's values back at the indices
        out = arr.copy()
        rows_ = np.arange(arr.shape[0])[:, None]
        out[rows_, indices] = x_flat[rows_, indices]
        return out

    compare(
        "monotonicity (Quantus with x's values restored)",
        lambda: M.monotonicity(
            model, x, maps, y, features_in_step=step, baseline=base, per_channel=True, max_batch=bs
        ),
        lambda: quantus.Monotonicity(features_in_step=step, perturb_func=restore, disable_warnings=True)(
            **kw, batch_size=n
        ),
        "as above, with a perturb_func that puts x's values back (Quantus' documented intent)",
        0.0,
    )
    for b_ in (1, 2, 4, 8, 16, 32):  # why the same forwards cost the same: batching does not pay on this CPU
        xb = x[torch.arange(b_) % n]
        with torch.no_grad():
            model(xb)
            t0 = time.perf_counter()
            for _ in range(3):
                model(xb)
        batch_cost[b_] = (time.perf_counter() - t0) / 3 / b_
    write()


if __name__ == "__main__":
    main()
