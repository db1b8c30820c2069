"""Every method's "which method wins which measure" table from `gradcam evaluate` runs.

Usage (the runs that made docs/results/evaluation-cam-family.md; the photos are the held-out half, the
benchmark's default; on a loaded shared 2-core machine the methods ran in several processes side by side,
and runs that could not finish in the time given were stopped, their logs giving the rows they finished)::

    NEW=dff,finercam,fullgrad,gradcam-elementwise,gradient-x-input,kpcacam,lrp,refinecam,segeigencam
    SLOW=integrated-gradients,smoothgrad,vargrad
    E="gradcam evaluate --threads 1"
    $E --benchmarks synthetic --methods gradcam,occlusion,random,random-map,$NEW,$SLOW --out /tmp/syn 2> /tmp/syn.log
    # the GAP CNN of the same in a second process (Python API: Settings(synthetic_models=("gap",)))
    $E --benchmarks mosaic --methods gradcam,random,$NEW --out /tmp/mosA 2> /tmp/mosA.log
    $E --benchmarks photos --methods gradcam --out /tmp/phoP 2> /tmp/phoP.log   # + the preset/model rows
    $E --benchmarks photos --methods finercam,fullgrad,gradcam-elementwise,gradient-x-input,kpcacam,\
    refinecam,segeigencam,dff,lrp,random,random-map,gradcam++,eigencam,eigengradcam --out /tmp/phoN 2> /tmp/phoN.log
    $E --benchmarks photos --methods layercam,xgradcam,hirescam,gradient,guided-backprop,guided-gradcam,\
    gaussian,counterfactual,cam,ablationcam --out /tmp/phoO 2> /tmp/phoO.log
    python benchmarks/evaluation_cam_family.py docs/results/evaluation.json:mosaic,synthetic-vgg,synthetic-gap \
        docs/results/evaluation-cam-family.json:mosaic,synthetic-vgg,synthetic-gap \
        /tmp/syn.log /tmp/synG.log /tmp/mosA/evaluation.json /tmp/phoP/evaluation.json \
        /tmp/phoN/evaluation.json /tmp/phoO.log

The same runs, rows merged, make docs/results/photos.md, evaluation.md and evaluation_synthetic.md
(``benchmarks/merge_evaluations.py``).

The third round (the methods registered since, the pixel methods on photos and mosaics, LRP with zennit, RISE on
the synthetic scenes), one torch thread each, two processes side by side on an otherwise lightly used machine;
the earlier rows come from this script's own JSON::

    E="gradcam evaluate --threads 1"
    $E --benchmarks synthetic --methods dff,shapleycam,smoothgradcam++,vargrad,rise --out /work/evals/syn1
    $E --benchmarks synthetic --methods sscam,iscam --out /work/evals/syn2
    $E --benchmarks mosaic --methods dff,shapleycam,smoothgradcam++,integrated-gradients,smoothgrad,vargrad \
        --out /work/evals/mos1
    $E --benchmarks photos --methods dff,shapleycam,smoothgradcam++,integrated-gradients,smoothgrad,vargrad \
        --out /work/evals/pho1
    $E --benchmarks photos,mosaic,synthetic --methods lrp --out /work/evals/lrp1   # with zennit (the compat env)
    python benchmarks/evaluation_cam_family.py docs/results/evaluation-cam-family.json \
        /work/evals/{syn1,syn2,mos1,pho1,lrp1}/evaluation.json
    python benchmarks/merge_evaluations.py --out docs/results/photos.md docs/results/photos.json \
        /work/evals/pho1/evaluation.json /work/evals/lrp1/evaluation.json:photos
    python benchmarks/merge_evaluations.py --out docs/results/evaluation.md docs/results/evaluation.json \
        /work/evals/{mos1,syn1,syn2}/evaluation.json /work/evals/lrp1/evaluation.json:mosaic,synthetic
    python benchmarks/merge_evaluations.py --out docs/results/evaluation_synthetic.md \
        docs/results/evaluation_synthetic.json /work/evals/{syn1,syn2}/evaluation.json \
        /work/evals/lrp1/evaluation.json:synthetic

The fourth round, SS-CAM and IS-CAM on the photos (2 noisy or scaled copies per channel,
``runner.SCORE_SMOOTHED_ON_PHOTOS``; on EfficientNet-Lite0's 1280 channels that is up to 2,560 forwards per photo:
62 min of one core for SS-CAM's 22 photos, 44 min for IS-CAM's, which scores a flat channel's zero image once),
side by side at nice 19 with a mosaic run, paused during other measurements (the time column counts that)::

    $E --benchmarks photos --methods sscam --out /work/evals/sscam_pho
    $E --benchmarks photos --methods iscam --out /work/evals/iscam_pho
    python benchmarks/evaluation_cam_family.py docs/results/evaluation-cam-family.json \
        /work/evals/{iscam_pho,sscam_pho}/evaluation.json
    python benchmarks/merge_evaluations.py --out docs/results/photos.md docs/results/photos.json \
        /work/evals/{iscam_pho,sscam_pho}/evaluation.json

IS-CAM's and SS-CAM's mosaic rows (72 and 71 min of one core), merged the same way::

    $E --benchmarks mosaic --methods iscam --out /work/evals/iscam_mos
    $E --benchmarks mosaic --methods sscam --out /work/evals/sscam_mos
    python benchmarks/evaluation_cam_family.py docs/results/evaluation-cam-family.json \
        /work/evals/{iscam_mos,sscam_mos}/evaluation.json
    python benchmarks/merge_evaluations.py --out docs/results/evaluation.md docs/results/evaluation.json \
        /work/evals/{iscam_mos,sscam_mos}/evaluation.json

Each argument is an ``evaluation.json`` written by ``--out``, the log (stderr) of a run (read row by row,
``benchmark/method: key value, ...``, so a run stopped part-way still gives the rows it finished), or this
script's own ``evaluation-cam-family.json`` (the rows of earlier rounds: the mosaic and synthetic measures
are deterministic, so a method measured once keeps its row; Grad-CAM and ``random`` re-measured in a later
round reproduce them); ``FILE:b1,b2`` takes only those benchmarks of FILE. Later arguments win. A method
registered later (a new method) joins by one more run of it and one more argument. Writes
docs/results/evaluation-cam-family.json (every row) and docs/results/evaluation-cam-family.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROW = re.compile(r"^\s+([\w-]+)/([\w+-]+): (.*)$")

#: (benchmark, key, label, higher is better)
MEASURES = [
    ("photos", "pointing", "pointing (photos) ↑", True),
    ("photos", "loc_err1", "top-1 loc. err. (photos) ↓", False),
    ("photos", "loc_gt", "loc. acc., true class (photos) ↑", True),
    ("photos", "energy", "energy in box (photos) ↑", True),
    ("mosaic", "pointing", "pointing (mosaics) ↑", True),
    ("mosaic", "loc_acc", "loc. acc. IoU≥0.5 (mosaics) ↑", True),
    ("mosaic", "disc_mass", "class discrimination (mosaics) ↑", True),
    ("mosaic", "deletion", "deletion AUC (photos) ↓", False),
    ("mosaic", "insertion", "insertion AUC (photos) ↑", True),
    ("synthetic-vgg", "pointing", "pointing (synthetic, VGG) ↑", True),
    ("synthetic-vgg", "deletion", "deletion AUC (synthetic, VGG) ↓", False),
    ("synthetic-vgg", "insertion", "insertion AUC (synthetic, VGG) ↑", True),
    ("synthetic-vgg", "sanity_all", "sanity ρ, all layers random (VGG) ↓", False),
    ("synthetic-gap", "sanity_all", "sanity ρ, all layers random (GAP) ↓", False),
]
COST = [
    ("photos", "seconds", "s / photo (photos, 1 thread)"),
    ("mosaic", "seconds", "s / map (448 px mosaics)"),
    ("synthetic-vgg", "seconds", "s / image (synthetic, 64 px)"),
]
BASELINES = ("random", "random-map", "gaussian")


def _value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def read(arg: str) -> Dict[str, Dict[str, Dict]]:
    """{benchmark: {method: row}} from ``FILE[:benchmarks]`` (see the module docstring)."""
    path, _, only = arg.partition(":")
    data = _read(path)
    return {b: rows for b, rows in data.items() if not only or b in only.split(",")}


def _read(path: str) -> Dict[str, Dict[str, Dict]]:
    out: Dict[str, Dict[str, Dict]] = {}
    if path.endswith(".json"):
        with open(path) as f:
            doc = json.load(f)
        if "results" not in doc:  # this script's own output: already {benchmark: {method: row}}
            return doc
        res = doc["results"]
        for b, r in res.items():
            if b == "synthetic":
                for kind, m in r["models"].items():
                    out[f"synthetic-{kind}"] = {row["method"]: row for row in m["rows"]}
            elif "rows" in r:  # vl has its own table
                out[b] = {row["method"]: row for row in r["rows"]}
        return out
    with open(path) as f:
        for line in f:
            m = ROW.match(line.rstrip("\n"))
            if not m:
                continue
            row = {"method": m.group(2)}
            for part in m.group(3).split(", "):
                k, _, v = part.partition(" ")
                row[k] = _value(v)
            out.setdefault(m.group(1), {})[m.group(2)] = row
    return out


def winners(rows: Dict[str, Dict], key: str, higher: bool, tol: float = 0.005) -> List[str]:
    """The non-baseline methods within ``tol`` of the best value of ``key``."""
    vals = {n: r[key] for n, r in rows.items() if n not in BASELINES and isinstance(r.get(key), float)}
    if not vals:
        return []
    best = max(vals.values()) if higher else min(vals.values())
    return [n for n, v in vals.items() if abs(v - best) <= tol]


def render(data: Dict[str, Dict[str, Dict]], sources: List[str]) -> str:
    methods: List[str] = []
    measured = {b for b, _, _, _ in MEASURES}
    for name, b in data.items():  # only the benchmarks of the table (not photos-presets, vl, ...)
        if name in measured:
            methods += [m for m in b if m not in methods]
    lines = [
        "# Every method on real photos and synthetic scenes: which method wins which measure",
        "",
        "Made by `python benchmarks/evaluation_cam_family.py " + " ".join(sources) + "` (its docstring lists "
        "the `gradcam evaluate` runs). EfficientNet-Lite0 (embedded ImageNet weights) at its default layer on "
        "the real photos (the photos columns: the held-out half of the annotated photos, 22 objects on 15 "
        "photos, 10 of them labelled ImageNet photos for the top-1 error); the committed synthetic CNNs on the "
        "synthetic scenes. A method missing from a column was not run on that benchmark "
        "([the CAM family page](cam-family.md#which-method-wins-which-measure) says why).",
        "",
    ]
    head = ["method"] + [lab for _, _, lab, _ in MEASURES] + [lab for _, _, lab in COST]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    wins = {(b, k): winners(data.get(b, {}), k, hi) for b, k, _, hi in MEASURES}
    for m in methods:
        cells = [f"`{m}`"]
        for b, k, _, _ in MEASURES:
            v = data.get(b, {}).get(m, {}).get(k)
            s = "–" if not isinstance(v, float) else f"{v:.3f}"
            cells.append(f"**{s}**" if m in wins[(b, k)] else s)
        for b, k, _ in COST:
            v = data.get(b, {}).get(m, {}).get(k)
            cells.append("–" if not isinstance(v, float) else f"{v:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: the best non-baseline value (within 0.005) of each column; `random`, `random-map` and `gaussian` "
        "are the chance baselines. Times are wall seconds on a shared 2-core machine under heavy load from "
        "other processes (rows from different runs are not comparable to better than a factor of about 2).",
        "",
        "## Winners",
        "",
    ]
    for b, k, lab, _ in MEASURES:
        w = wins[(b, k)]
        lines.append(f"- {lab}: {', '.join(f'`{n}`' for n in w) if w else '(not run)'}")
    return "\n".join(lines) + "\n"


def main(argv: List[str]) -> int:
    data: Dict[str, Dict[str, Dict]] = {}
    for p in argv:
        for b, rows in read(p).items():
            data.setdefault(b, {}).update(rows)
    for rows in data.values():
        for r in rows.values():
            r.pop("per_photo", None)
    with open(os.path.join(ROOT, "docs", "results", "evaluation-cam-family.json"), "w") as f:
        json.dump(data, f, indent=1)
    text = render(data, argv)
    with open(os.path.join(ROOT, "docs", "results", "evaluation-cam-family.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
