"""How fast a ``gradcam report`` page of 10,000 photos opens in headless Chromium.

Writes N synthetic per-photo JSON records (top-5 predictions, 3 explained classes with peaks and boxes)
whose overlays are a few real photos reused (foolbox's ImageNet JPEGs), plus a failures.json, then times
``write_report`` and opens the page R times over file:// in Chromium (tests/cdp.py), reading in the page:
the load event (performance navigation timing), the moment the gallery's first page is rendered
(``performance.mark('gallery-ready')``), and the moment every image of the first screen has loaded.
Also counts the page's elements, to show it is not a 10,000-photo DOM.

    python benchmarks/report_scale.py --photos 10000 --out docs/results/benchmarks-report.md
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from cdp import Browser, find_chromium  # noqa: E402

from gradcam.report import write_report  # noqa: E402

CLASSES = [
    "tabby",
    "tiger cat",
    "Egyptian cat",
    "espresso",
    "cup",
    "beagle",
    "goldfish",
    "jeep",
    "thatch",
    "strawberry",
    "folding chair",
    "beaker",
    "buckeye",
    "bull mastiff",
    "<b>markup</b> & co",
]


def make_folder(folder: str, n: int) -> None:
    import foolbox

    photos = sorted(glob.glob(os.path.join(os.path.dirname(foolbox.__file__), "data", "imagenet_*.jpg")))[:6]
    for i, p in enumerate(photos):
        shutil.copy(p, os.path.join(folder, f"real{i}.jpg"))
    for i in range(n):
        probs = sorted(((i * 7919 + j * 104729) % 1000 / 1000 for j in range(5)), reverse=True)
        preds = [
            {"class": CLASSES[(i + j) % len(CLASSES)], "id": (i + j) % 1000, "probability": round(p, 4)}
            for j, p in enumerate(probs)
        ]
        rec = {
            "file": f"photos/batch{i // 1000:02d}/IMG_{i:05d}.jpg",
            "size": [512, 512],
            "model": "efficientnet-lite0",
            "method": "gradcam",
            "layer": "_head_act",
            "predictions": preds,
            "explanations": [
                {
                    "class": q["class"],
                    "id": q["id"],
                    "score": 5.0 - r,
                    "probability": q["probability"],
                    "peak": [100 + r * 50, 200],
                    "box": [50, 60, 400, 380],
                    "box_threshold": 0.15,
                }
                for r, q in enumerate(preds[:3])
            ],
            "overlays": [f"real{(i + r) % len(photos)}.jpg" for r in range(3)],
        }
        with open(os.path.join(folder, f"IMG_{i:05d}.json"), "w") as f:
            json.dump(rec, f)
    with open(os.path.join(folder, "failures.json"), "w") as f:
        json.dump([{"file": f"photos/broken{i}.jpg", "reason": "not an image"} for i in range(20)], f)


FIRST_SCREEN = """Promise.all([...document.querySelectorAll('#gallery img')].filter(i => {
  const r = i.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; })
  .map(i => i.decode().catch(() => 0))).then(() => performance.now())"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="write a Markdown table here")
    args = ap.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("no chromium binary (apt-get install chromium)")
    tmp = tempfile.mkdtemp(prefix="gradcam-report-bench-")
    try:
        make_folder(tmp, args.photos)
        t = time.perf_counter()
        path = write_report(tmp)
        build = time.perf_counter() - t
        t = time.perf_counter()
        write_report(tmp)
        rebuild = time.perf_counter() - t
        size_mb = os.path.getsize(path) / 1e6
        runs = []
        with Browser(chromium, width=1280, height=900, timeout=60) as b:
            for _ in range(args.repeats):
                b.open("file://" + path)
                first = b.eval(FIRST_SCREEN)
                nav = b.eval("performance.getEntriesByType('navigation')[0].toJSON()")
                ready = b.eval("performance.getEntriesByName('gallery-ready')[0].startTime")
                runs.append(
                    {
                        "load_ms": nav["loadEventEnd"],
                        "dcl_ms": nav["domContentLoadedEventEnd"],
                        "ready_ms": ready,
                        "first_screen_ms": first,
                        "elements": b.eval("document.getElementsByTagName('*').length"),
                        "cards": b.eval("document.querySelectorAll('#gallery .card').length"),
                    }
                )
            assert not b.errors, b.errors
            assert not b.dialogs, b.dialogs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    worst = {k: max(r[k] for r in runs) for k in runs[0]}
    lines = [
        f"<!-- made by: python benchmarks/report_scale.py --photos {args.photos} --repeats {args.repeats} -->",
        "",
        f"**`gradcam report` on {args.photos:,} photos** (3 explained classes each: {3 * args.photos:,} overlays; "
        f"synthetic records, overlays are 6 real 512 px photos reused) opened over file:// in headless "
        f"Chromium ({os.path.basename(chromium)}), {args.repeats} opens, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs (shared machine).",
        "",
        "| measure | median | worst |",
        "| --- | ---: | ---: |",
        f"| page ready (gallery's first page rendered), ms | {med['ready_ms']:.0f} | {worst['ready_ms']:.0f} |",
        f"| load event end, ms | {med['load_ms']:.0f} | {worst['load_ms']:.0f} |",
        f"| every image of the first screen decoded, ms | {med['first_screen_ms']:.0f} | {worst['first_screen_ms']:.0f} |",
        f"| elements in the page (not a {args.photos:,}-photo DOM) | {med['elements']:.0f} | {worst['elements']:.0f} |",
        f"| photo cards in the DOM (one page) | {med['cards']:.0f} | {worst['cards']:.0f} |",
        "",
        f"index.html: {size_mb:.1f} MB (the gallery's data as inline JSON). `write_report`: {build:.1f} s the first time "
        f"(reading {args.photos:,} JSON records, writing thumbnails), {rebuild:.1f} s again (thumbnails reused).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
