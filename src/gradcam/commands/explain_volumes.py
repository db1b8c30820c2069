"""The volume part of ``gradcam explain``: NIfTI, DICOM and ``.npy`` items, one at a time (memory bounded).

Per volume and class: ``OUT/<stem>.<class>.nii.gz`` (the map, with the input's shape and affine),
``OUT/<stem>.<class>.montage.png`` and with ``--json`` ``OUT/<stem>.json``. The photo rules hold: a
rerun skips a volume whose record (``OUT/.gradcam/<stem>.json``) matches the input file, model and options
and whose outputs are intact (``--force`` redoes it); a bad volume is a failure with its reason, and the
run goes on; index rows are appended to the run's index.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..resume import file_stamp, fingerprint, is_up_to_date, record_path, write_record


def add_options(p: argparse.ArgumentParser) -> None:
    """``--window`` and ``--spacing`` for volumes (``--size D,H,W``, shared with photos, gives their grid)."""
    g = p.add_argument_group(
        "volumes (NIfTI .nii/.nii.gz, DICOM .dcm files or series folders, .npy; "
        "pip install 'gradcam[medical]')"
    )
    g.add_argument(
        "--window",
        metavar="L,W|PRESET",
        help="intensity window: LEVEL,WIDTH (e.g. 40,400) or a CT "
        "preset in HU: brain, subdural, stroke, lung, mediastinum, abdomen, liver, bone (default: none)",
    )
    g.add_argument(
        "--spacing",
        metavar="MM[,MM,MM]",
        help="resample to this voxel size in mm (one value or D,H,W order: slice, row, column)",
    )


def _numbers(text: Optional[str], name: str, ints: bool = False):
    if text is None:
        return None
    try:
        vals = [int(v) if ints else float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--{name} takes {'D,H,W integers' if ints else 'one or three numbers'}; got {text!r}."
        ) from None
    if len(vals) not in ((3,) if ints else (1, 3)) or min(vals) <= 0:
        raise ValueError(
            f"--{name} takes {'three positive integers D,H,W' if ints else 'one or three positive numbers'}; "
            f"got {text!r}."
        )
    return vals[0] if len(vals) == 1 else tuple(vals)


def _volume_size(text):
    """``--size`` for volumes: ``D,H,W``, ``DxHxW`` or one N (a cube); ``None`` when not given."""
    if text is None:
        return None
    parts = str(text).lower().replace("x", ",").split(",")
    if len(parts) == 1:
        parts = parts * 3
    return _numbers(",".join(parts), "size", ints=True)


def volume_options(args: argparse.Namespace) -> Dict[str, Any]:
    """The parsed volume options (a bad value fails before any work)."""
    from ..medical.preprocess import parse_window

    window = getattr(args, "window", None)
    opts = {
        "window": window,
        "spacing": _numbers(getattr(args, "spacing", None), "spacing"),
        "size": _numbers(getattr(args, "size", None), "size", ints=True),
    }
    if opts["spacing"] is not None and opts["size"] is not None:
        raise ValueError("Give --spacing or --size, not both.")
    parse_window(window)
    return opts


def _done(out: str, stem: str, fp: Dict) -> bool:
    rec = record_path(out, stem)
    try:
        with open(rec, encoding="utf-8") as f:
            names = list(json.load(f)["outputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return is_up_to_date(rec, fp, [os.path.join(out, n) for n in names])


def _rows(res, stem: str, record: str) -> List[Dict]:
    import time

    d, h, w = res.volume.shape
    top5 = json.dumps(
        [{"class": c, "id": int(i), "probability": round(float(q), 6)} for c, i, q in res.predictions]
    )
    return [
        {
            "file": res.volume.source,
            "stem": stem,
            "width": w,
            "height": h,
            "rank": r + 1,
            "class": c,
            "class_id": int(cid),
            "score": float(s),
            "probability": None if p is None else float(p),
            "peak": pk,
            "box": bx,
            "box_fraction": 0.0
            if bx is None
            else (bx[3] - bx[0]) * (bx[4] - bx[1]) * (bx[5] - bx[2]) / float(w * h * d),
            "layer": res.layer,
            "method": res.method,
            "model": res.model,
            "overlay": res.files["montage"][r],
            "record": (res.files.get("json") or [None])[0],
            "maps": res.files["nifti"][r],
            "error": None,
            "updated": time.time(),
            "predictions": top5,
        }
        for r, (c, cid, s, p, pk, bx) in enumerate(
            zip(res.classes, res.class_ids, res.scores, res.probabilities, res.peaks, res.boxes)
        )
    ]


def _describe(path: str, res) -> str:
    d, h, w = res.volume.shape
    lines = [f"{path} (volume {w}x{h}x{d}, voxels {'x'.join(f'{s:g}' for s in res.volume.spacing[::-1])} mm)"]
    for cls, cid, p in res.predictions:
        lines.append(f"  {p:7.2%}  {cls} ({cid})")
    for r, cls in enumerate(res.classes):
        where = (
            f"peak (x, y, z) = {tuple(res.peaks[r])} = {tuple(res.peaks_mm[r])} mm, box = {res.boxes[r]}"
            if res.peaks[r]
            else "flat map (no evidence)"
        )
        lines.append(f"  {res.method} for '{cls}' at {res.layer}: {where} -> {res.files['nifti'][r]}")
    return "\n".join(lines)


def run_volumes(
    args: argparse.Namespace,
    vols: List[Tuple[str, str]],
    loaded,
    method,
    target,
    k: int,
    options: Dict,
    failed: List[Tuple[str, str]],
    say: Callable[..., None],
) -> Tuple[int, int]:
    """Explain each volume of ``vols`` ((path, stem)); returns (explained, already done). Failures go to ``failed``."""
    from .. import index
    from ..medical import VolumeError, explain_volume

    vopts = volume_options(args)
    opts = dict(options, **{k_: list(v) if isinstance(v, tuple) else v for k_, v in vopts.items()})
    explained = done_before = 0
    for path, stem in vols:
        fp = fingerprint(
            path,
            dict(
                opts,
                series=[file_stamp(os.path.join(path, n)) for n in sorted(os.listdir(path))]
                if os.path.isdir(path)
                else None,
            ),
        )
        if not args.force and _done(args.out, stem, fp):
            done_before += 1
            continue
        try:
            res = explain_volume(
                path,
                loaded,
                target,
                k,
                method=method,
                alpha=args.alpha,
                out=args.out,
                stem=stem,
                write_json=bool(args.json),
                **vopts,
            )
        except (VolumeError, ValueError, RuntimeError, OSError) as e:
            reason = e.reason if isinstance(e, VolumeError) else f"{type(e).__name__}: {e}"
            failed.append((path, reason))
            index.append(args.out, [index.failure_row(path, stem, reason, loaded.name, str(args.method))])
            say(f"gradcam: skipped {path}: {reason}", err=True)
            continue
        outputs = [f for fs in res.files.values() for f in fs]
        write_record(record_path(args.out, stem), fp, outputs)
        index.append(args.out, _rows(res, stem, record_path(args.out, stem)))
        say(_describe(path, res))
        explained += 1
    return explained, done_before


def run_volume_job(
    args: argparse.Namespace, vols: List[Tuple[str, str]], photo_failures: List[Tuple[str, str]]
) -> int:
    """The volumes of a ``gradcam explain`` run, after its photos: load the model, explain, summarise; the exit
    code (1 when any volume failed). ``OUT/failures.json`` lists the photos' and the volumes' failures."""
    from ..api import get_method
    from ..models import load_model
    from ..pipeline.steps import write_failures
    from ..resume import file_stamp as stamp

    os.makedirs(args.out, exist_ok=True)
    loaded = load_model(args.model, weights=args.weights, device=args.device)
    method = get_method(loaded, args.method, args.layer)
    target = (
        None if args.target is None else (loaded.class_id(args.target) if loaded.labels else int(args.target))
    )
    k = 1 if args.top is None else args.top
    options = {
        "model": args.model,
        "weights": stamp(args.weights),
        "method": args.method,
        "layer": args.layer,
        "target": target,
        "top": k,
        "alpha": args.alpha,
        "json": bool(args.json),
        "box_threshold": args.box_threshold,
    }
    failed: List[Tuple[str, str]] = []

    def say(text: str, err: bool = False) -> None:
        if not getattr(args, "quiet", False) or err:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    explained, done = run_volumes(args, vols, loaded, method, target, k, options, failed, say)
    from .. import index

    index.compact(
        args.out
    )  # OUT/index.(parquet|jsonl): the volumes' rows beside the photos' (gradcam report)
    parts = [f"explained {explained} volume{'s' if explained != 1 else ''}"]
    if done:
        parts.append(f"{done} already done (same input, model and options; --force redoes them)")
    print(f"gradcam: {', '.join(parts)}, {len(failed)} failed; outputs in {args.out}", file=sys.stderr)
    for path, reason in failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    write_failures(args.out, list(photo_failures) + failed)
    return 1 if failed else 0
