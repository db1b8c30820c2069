"""Merge the rows of several ``gradcam evaluate --out`` runs into one results page, as the command writes it.

On a shared machine the methods of one benchmark are run in several processes side by side (or a method
registered later is run alone); the measures of the mosaic, synthetic and photos benchmarks are
deterministic (a row does not depend on which other methods ran with it), so the rows of several runs make
one table. Each benchmark's rows are merged in argument order (a later run's row of the same method
wins); the tables are rendered by :mod:`gradcam.evaluation.runner`'s own functions with the first run's
metadata of that benchmark; notes are merged; the page's first line names every run's command.

    python benchmarks/merge_evaluations.py --out docs/results/photos.md /tmp/phoP/evaluation.json /tmp/phoN/evaluation.json

A run's log (its stderr, ``*.log``) may stand for a run stopped part-way: its rows are read line by line
(``benchmark/method: key value, ...``; a first line ``# command: ...`` names the run; the rank correlation with occlusion, computed at the end of a
synthetic run, is not in a log). Writes the Markdown page and the merged JSON beside it (``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from gradcam.evaluation import runner  # noqa: E402
from gradcam.evaluation import synthetic as syn  # noqa: E402


def _merge_rows(old: List[Dict], new: List[Dict]) -> List[Dict]:
    by = {r["method"]: r for r in old}
    order = [r["method"] for r in old]
    for r in new:
        if r["method"] not in by:
            order.append(r["method"])
        by[r["method"]] = r
    return [by[m] for m in order]


ROW = re.compile(r"^\s+(mosaic|photos|synthetic-vgg|synthetic-gap)/([\w+-]+): (.*)$")


def read_log(path: str) -> Dict[str, Any]:
    """A pseudo run from a log: {"results": {benchmark: rows}, "command": ...} (no metadata)."""
    res: Dict[str, Any] = {}
    command = f"the rows logged in {os.path.basename(path)}"
    with open(path) as f:
        for line in f:
            if line.startswith("# command: "):  # written above a log by whoever started the run
                command = line[len("# command: ") :].strip() + " (stopped part-way: the rows it logged)"
                continue
            m = ROW.match(line.rstrip("\n"))
            if not m:
                continue
            row: Dict[str, Any] = {"method": m.group(2)}
            for part in m.group(3).split(", "):
                k, _, v = part.partition(" ")
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
            b = m.group(1)
            if b.startswith("synthetic-"):
                kind = b.split("-", 1)[1]
                res.setdefault("synthetic", {"models": {}})["models"].setdefault(kind, {"rows": []})[
                    "rows"
                ].append(row)
            else:
                res.setdefault(b, {"rows": []})["rows"].append(row)
    return {"results": res, "command": command, "notes": []}


def read_run(arg: str) -> Dict[str, Any]:
    """One argument: a log, an ``evaluation.json`` of a run, or a page's merged JSON (its ``commands``);
    ``FILE:b1,b2`` keeps only those benchmarks of FILE."""
    path, _, only = arg.partition(":")
    if path.endswith(".log"):
        doc = read_log(path)
    else:
        with open(path) as f:
            doc = json.load(f)
    if "commands" in doc and "command" not in doc:  # a page merged before: its runs' commands
        doc["command"] = "; ".join(c for c in doc["commands"] if c)
    if only:
        keep = only.split(",")
        doc["results"] = {b: r for b, r in doc["results"].items() if b in keep}
    return doc


def _outdated(note: str, results: Dict[str, Any]) -> bool:
    """A note an older run wrote that the merged rows contradict: a method without a row there (dff before it was
    scored, lrp where zennit was not installed) that has one now."""
    m = re.match(r"method '([\w+-]+)' (explains concepts, not classes; no row|skipped: )", note)
    if not m:
        return False
    rows = [r for res in results.values() for r in res.get("rows", [])]
    rows += [r for res in results.values() for mm in res.get("models", {}).values() for r in mm["rows"]]
    return any(r.get("method") == m.group(1) for r in rows)


def merge(docs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The merged ``results`` (per benchmark: the first run's metadata, the rows of all runs)."""
    out: Dict[str, Any] = {}
    for doc in docs:
        for b, res in doc["results"].items():
            if b not in out:
                out[b] = json.loads(json.dumps(res))
            elif b == "synthetic":
                for kind, m in res["models"].items():
                    if kind not in out[b]["models"]:
                        out[b]["models"][kind] = json.loads(json.dumps(m))
                    else:
                        mine = out[b]["models"][kind]
                        mine["rows"] = _merge_rows(mine["rows"], m["rows"])
            elif "rows" in res:
                out[b]["rows"] = _merge_rows(out[b]["rows"], res["rows"])
                if res.get("presets") and not out[b].get("presets"):
                    out[b]["presets"] = res["presets"]
    return out


def render(results: Dict[str, Any]) -> str:
    """The tables, in the runner's order of benchmarks, as ``gradcam evaluate`` prints them."""
    parts = []
    for b in runner.BENCHMARKS:
        res = results.get(b)
        if res is None:
            continue
        if b == "mosaic":
            m = res["meta"]
            parts.append(
                runner._mosaic_table(
                    res["rows"], m, m["deletion_insertion_photos"], m["deletion_insertion_steps"]
                )
            )
        elif b == "synthetic":
            size = syn.TrainConfig().size
            for kind, m in res["models"].items():
                meta = m["meta"]
                parts.append(
                    runner._synthetic_table(kind, m["rows"], meta, size, meta["pointing_tolerance_px"])
                )
        elif b == "photos":
            meta = res["meta"]
            split_text = runner.photo_split(meta["split"])[1]
            parts.append(runner._photos_tables(res["rows"], res.get("presets", []), meta, split_text))
        elif b == "vl":
            from gradcam.evaluation import vl_benchmark

            parts.append(vl_benchmark.table(res["results"]))
    return "\n\n".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="evaluation.json files written by gradcam evaluate --out")
    ap.add_argument("--out", required=True, help="the Markdown page to write (the JSON goes beside it)")
    args = ap.parse_args()
    docs = [read_run(p) for p in args.runs]
    results = merge(docs)
    notes = [
        n for n in dict.fromkeys(n for d in docs for n in d.get("notes", [])) if not _outdated(n, results)
    ]
    if (
        results.get("photos", {}).get("presets") or "photos" not in results
    ):  # given elsewhere, or no photos here
        notes = [n for n in notes if not n.startswith("photos: the rows per --quality preset")]
    caveats = list(dict.fromkeys(c for d in docs for c in d.get("caveats", [])))
    # each run once (a page merged before lists its runs; merging it with one of them again adds nothing)
    runs_made = list(dict.fromkeys(c for d in docs for c in d.get("command", "?").split("; ")))
    commands = "; ".join(runs_made)
    md = "\n\n".join(caveats + [render(results)])
    if notes:
        md += "\n\nNotes:\n" + "\n".join(f"- {n}" for n in notes)
    wall = sum(d.get("wall_seconds", 0) for d in docs)
    cpu = sum(d.get("cpu_seconds", 0) for d in docs)
    runs = len(runs_made)
    torch_version = ", ".join(
        dict.fromkeys(v for d in docs for v in str(d.get("torch") or "").split(", ") if v)
    )
    threads = next((d["threads"] for d in docs if d.get("threads")), None)
    md += (
        f"\n\nWall time {round(wall, 1)} s summed over the {runs} runs (some side by side on a loaded shared "
        f"machine: the time columns of rows from different runs are not comparable), CPU time {round(cpu, 1)} s, "
        f"torch {torch_version or 'unknown'}, {threads} thread(s) per run."
    )
    page = (
        f"<!-- made by: {commands} (--threads 1 --out DIR each); rows merged by python "
        f"benchmarks/merge_evaluations.py --out {args.out} -->\n\n{md}\n"
    )
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    merged = {
        "results": results,
        "notes": notes,
        "caveats": caveats,
        "commands": runs_made,
        "runs": runs,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "torch": torch_version,
        "threads": threads,
    }
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(merged, f, indent=1)
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
