"""``gradcam explain PATH...``: top-5 predictions and a Grad-CAM overlay (and a JSON record) per photo.

Folders are searched recursively; photos are decoded in a background thread and batched by size; each
batch's outputs are written by a second thread while the next batch is explained; a bad
file is reported and skipped; outputs are written atomically; a rerun skips a photo only when its outputs are intact
and were made from the same input file, model, weights and options (see :mod:`gradcam.resume`), so it
resumes after an interruption and never keeps a stale result; ``--force`` redoes every photo. Exit code: 0 when every photo was explained
(or already was), 1 when any failed, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from PIL import Image

from ..image import MAX_PIXELS, MAX_SIDE
from ..io import Item, atomic_write, demo_photo, find_images
from ..resume import file_stamp, fingerprint, is_up_to_date, record_path, write_record


def register(subparsers) -> None:
    """Add the ``explain`` subcommand."""
    p = subparsers.add_parser(
        "explain", help="explain photos: top-5 predictions and where the model looked",
        description="Explain photos with a pretrained model: print the top-5 predictions and write a heatmap "
                    "overlay PNG (and with --json a JSON record) per photo. PATH: image files and/or folders.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files and/or folders (searched recursively)")
    p.add_argument("--demo", action="store_true", help="explain the photo shipped with gradcam (chelsea, a cat; CC0)")
    p.add_argument("--model", default="efficientnet-lite0",
                   help="efficientnet-lite0 (default, built in), torchvision:NAME, timm:NAME, a TorchScript file, "
                        "or package.module:factory")
    p.add_argument("--weights", metavar="FILE", help="state-dict file for --model (needed for timm:NAME)")
    p.add_argument("--target", metavar="NAME|ID", help="explain this class (name, case-insensitive, or id) "
                                                       "instead of the top prediction")
    p.add_argument("--top", type=int, default=None, metavar="K", help="explain the K best classes (default 1)")
    p.add_argument("--method", default="gradcam", help="gradcam (default), counterfactual, cam, or any registered method")
    p.add_argument("--quality", choices=("standard", "high"), default="standard",
                   help="preset of the embedded model, measured in the README: standard (short side 256, box at 45%%) "
                        "or high (384, box at 30%%)")
    p.add_argument("--box-threshold", type=float, default=None, metavar="F",
                   help="the box is around the largest segment of the map >= F x its maximum (default: measured, "
                        "0.45 at --quality standard, 0.3 at high; the Grad-CAM paper's rule is 0.15)")
    p.add_argument("--layer", default=None, help="layer to explain at (default: the model's own, or auto)")
    p.add_argument("--out", default="gradcam-out", metavar="DIR", help="output folder (default: gradcam-out)")
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in [0, 1] (default 0.5)")
    p.add_argument("--colormap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--colorbar", action="store_true", help="add a colour bar to the right of each overlay")
    p.add_argument("--json", action="store_true", help="also write a JSON record per photo")
    p.add_argument("--neurons", metavar="FILE", help="channel names of the layer (JSON {channel: name}, a JSON list, "
                   "or 'channel name' lines): print the top-5 and bottom-5 channels behind each decision")
    p.add_argument("--force", action="store_true", help="redo every photo (default: skip photos whose outputs are intact and were made "
                   "from the same input, model and options)")
    p.add_argument("--batch-size", type=int, default=4, metavar="N",
                   help="photos decoded and explained together (default 4; photos of equal size share a batch)")
    p.add_argument("--device", default="cpu", help="torch device for the model: cpu (default), cuda, cuda:1, mps")
    p.add_argument("--report", action="store_true", help="at the end, write OUT/index.html (see 'gradcam report'; "
                                                         "implies --json)")
    p.add_argument("--max-side", type=int, default=MAX_SIDE, metavar="PX",
                   help=f"cap the long side of the model input at PX pixels (default {MAX_SIDE}; bounds the "
                        "memory of extreme aspect ratios; 0: no cap)")
    p.add_argument("--max-pixels", type=float, default=MAX_PIXELS / 1e6, metavar="MP",
                   help=f"refuse files whose header declares more than MP megapixels, before decoding "
                        f"(default {MAX_PIXELS / 1e6:g}; 0: no limit of ours)")
    p.add_argument("--maps", action="store_true", help="also save each photo's maps (K, h, w) at the model input's "
                   "resolution, float32, as <stem>.maps.pt (torch.load(..., weights_only=True))")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local (default): this process; ray: a Ray Data pipeline (pip install 'gradcam[ray]')")
    p.add_argument("--address", metavar="ADDR", help="--engine ray: connect to this running Ray cluster "
                                                     "(e.g. ray://head:10001; default: start a local Ray)")
    p.add_argument("--workers", type=int, metavar="N", help="--engine ray: model actors (default: one per CPU, "
                                                            "leaving some for decoding)")
    from .explain_volumes import add_options

    add_options(p)  # --window, --spacing, --size (volumes)
    p.set_defaults(func=run)


class Progress:
    """A one-line progress bar with rate and ETA on a terminal's stderr; silent when stderr is not a TTY.

    The bar is drawn for two photos or more; :meth:`within` adds progress inside the current photo
    (occlusion's windows), drawn even for a single photo.
    """

    def __init__(self, total: int, stream=None, enabled: Optional[bool] = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.start = time.monotonic()
        self._shown = False
        self.detail = ""

    def clear(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def within(self, done: int, total: int, what: str = "windows") -> None:
        """Progress inside the current photo: ``done`` of ``total`` steps (cleared when the photo is done)."""
        self.detail = f"  (this photo: {done}/{total} {what})" if done < total else ""
        self.draw()

    def draw(self) -> None:
        if not self.enabled or (self.total <= 1 and not self.detail):
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        width = 28
        filled = int(width * self.done / max(self.total, 1))
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "--:--:--"
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
                          f"{rate:.1f} img/s  ETA {eta_s}{self.detail}\033[K")
        self.stream.flush()
        self._shown = True

    def update(self, n: int = 1) -> None:
        self.done += n
        self.detail = ""
        self.draw()


def _outputs(out: str, stem: str, k: int, with_json: bool) -> Tuple[List[str], Optional[str]]:
    base = os.path.join(out, stem)
    pngs = [base + ".png"] if k == 1 else [f"{base}.top{r + 1}.png" for r in range(k)]
    return pngs, (base + ".json" if with_json else None)


def _load(item: Item, max_pixels: Optional[int] = MAX_PIXELS):
    from ..image import ImageLoadError, load_image

    try:
        return load_image(item.path, max_pixels=max_pixels), None
    except ImageLoadError as e:
        return None, e.reason
    except Exception as e:  # noqa: BLE001 - any decoder failure is this file's problem, not the run's
        return None, f"cannot read ({type(e).__name__}: {e})"


def _png_bytes(img: Image.Image) -> bytes:
    """Lossless PNG, zlib level 1 with the run-length strategy (``Z_RLE``): on photo overlays about 1.7x faster
    to encode than plain level 1 and about 10% smaller (measured in docs/results/benchmarks-distributed.md)."""
    import zlib

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
    return buf.getvalue()


def _model_stamp(model: str):
    """A file stamp for ``--model`` when it names a file (TorchScript) or a module (``package.module:factory``)."""
    if os.path.exists(model):
        return file_stamp(model)
    if ":" in model and "." in model.split(":")[0]:
        import importlib.util

        try:
            spec = importlib.util.find_spec(model.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        return file_stamp(spec.origin) if spec is not None and spec.origin else None
    return None


def result_options(args: argparse.Namespace, loaded, target: Optional[int], k: int) -> Dict[str, Any]:
    """Every option that changes an output of ``gradcam explain``: the resume key (with the input file).

    The model (name, its file or module, its weights file), the method, layer, resolved target class,
    K, the model's input size, the overlay's alpha/colormap/colorbar, --json and the --neurons file.
    Not in it: --device, --batch-size, --force (they do not change what is written). The gradcam version
    is: an upgrade recomputes (its boxes, maps or records may differ).
    """
    from .. import __version__

    return {
        "gradcam": __version__,
        "model": args.model, "model_file": _model_stamp(args.model), "weights": file_stamp(args.weights),
        "input_size": loaded.size, "max_side": loaded.max_side, "method": args.method, "layer": args.layer, "target": target, "top": k,
        "alpha": args.alpha, "colormap": args.colormap, "colorbar": bool(args.colorbar), "json": bool(args.json),
        "maps": bool(getattr(args, "maps", False)), "box_threshold": box_threshold_of(args, loaded),
        "neurons": file_stamp(getattr(args, "neurons", None)),
    }


def box_threshold_of(args: argparse.Namespace, loaded) -> float:
    """The explain box's threshold: ``--box-threshold``, else the measured one of the embedded model's
    ``--quality`` (:data:`gradcam.models.QUALITY_BOX_THRESHOLDS`), else :data:`gradcam.api.BOX_THRESHOLD`."""
    from ..api import BOX_THRESHOLD, check_box_threshold
    from ..models import QUALITY_BOX_THRESHOLDS

    given = getattr(args, "box_threshold", None)
    if given is not None:
        return check_box_threshold(given)
    if getattr(loaded, "name", None) == "efficientnet-lite0":
        return QUALITY_BOX_THRESHOLDS[getattr(args, "quality", "standard") or "standard"]
    return BOX_THRESHOLD


@dataclass
class Job:
    """Everything one ``gradcam explain`` run needs per batch (built once; see :func:`explain_items`)."""

    loaded: Any
    method: Any
    target: Optional[int]
    k: int
    out: str
    options: Dict[str, Any]
    alpha: float = 0.5
    colormap: str = "jet"
    colorbar: bool = False
    json: bool = False
    max_pixels: Optional[int] = MAX_PIXELS
    maps: bool = False
    box_threshold: float = 0.45  # gradcam.api.BOX_THRESHOLD (not imported here: the CLI starts without torch)

    def maps_path(self, item: Item) -> Optional[str]:
        """``out/<stem>.maps.pt`` with ``--maps`` (else ``None``)."""
        return os.path.join(self.out, item.stem + ".maps.pt") if self.maps else None

    def outputs(self, item: Item) -> Tuple[List[str], Optional[str]]:
        """The overlay PNGs and the JSON path (or ``None``) of ``item``."""
        return _outputs(self.out, item.stem, self.k, self.json)

    def fingerprint(self, item: Item) -> Dict[str, Any]:
        """The resume key of ``item`` (see :mod:`gradcam.resume`)."""
        return fingerprint(item.path, self.options)

    def up_to_date(self, item: Item) -> bool:
        """True when ``item``'s outputs exist, are intact, and were made by this job's model and options."""
        pngs, js = self.outputs(item)
        files = pngs + [f for f in (js, self.maps_path(item)) if f]
        return is_up_to_date(record_path(self.out, item.stem), self.fingerprint(item), files)


@dataclass
class Outcome:
    """What happened to one photo: its result and outputs, or why it failed (``reason``)."""

    item: Item
    result: Any = None
    pngs: List[str] = field(default_factory=list)
    json: Optional[str] = None
    reason: Optional[str] = None


def compute_items(items: Sequence[Item], job: Job, decoded: Optional[Sequence[tuple]] = None) -> List[Outcome]:
    """The compute half of a batch: load -> preprocess -> explain; nothing is written (see :func:`write_outcomes`).

    ``decoded``: the ``(image, reason)`` of each item when already loaded (a background thread), else
    the items are loaded here; ``(image, reason, x)`` with ``x = job.loaded.preprocess(image)`` when also
    preprocessed (a Ray Data task). Returns one :class:`Outcome` per item, in the items' order: a result,
    or the reason the file could not be read.
    """
    from ..api import explain_batch

    decoded = list(decoded) if decoded is not None else [_load(it, job.max_pixels) for it in items]
    outcomes, good, images, xs = [], [], [], []
    for it, (img, reason, *x) in zip(items, decoded):
        if img is None:
            outcomes.append(Outcome(it, reason=reason))
        else:
            good.append(it)
            images.append(img)
            xs += x
    results = explain_batch(images, job.loaded, job.method, job.target, job.k,
                            [it.path for it in good], inputs=xs if len(xs) == len(images) and xs else None,
                            box_threshold=job.box_threshold)
    outcomes += [Outcome(it, res) for it, res in zip(good, results)]
    order = {id(it): i for i, it in enumerate(items)}
    outcomes.sort(key=lambda o: order[id(o.item)])
    return outcomes


def _write_one(o: Outcome, job: Job) -> None:
    """Write one explained photo's overlays, JSON and maps atomically, then its resume record (last)."""
    import torch

    it, res = o.item, o.result
    pngs, js = job.outputs(it)
    rec = record_path(job.out, it.stem)
    if os.path.lexists(rec):
        os.unlink(rec)
    for r, png in enumerate(pngs):
        atomic_write(png, _png_bytes(res.overlay(r, alpha=job.alpha, colormap=job.colormap, colorbar=job.colorbar)))
    if js:
        res.extra["overlays"] = [os.path.basename(p) for p in pngs]
        atomic_write(js, (json.dumps(res.to_dict(), indent=1) + "\n").encode())
    mp = job.maps_path(it)
    if mp:
        buf = io.BytesIO()
        torch.save(res.input_maps.contiguous(), buf)
        atomic_write(mp, buf.getvalue())
    write_record(rec, job.fingerprint(it), pngs + [f for f in (js, mp) if f])
    o.pngs, o.json = pngs, js


def write_outcomes(outcomes: List[Outcome], job: Job) -> List[Outcome]:
    """The write half of a batch: each explained photo's outputs, then its resume record; the index rows.

    Each photo's old record is removed before its outputs are replaced and the new one written after them,
    so an interruption never leaves a record that vouches for other outputs. An error while writing a
    photo's outputs (disk full, permissions, ...) makes that photo a failure (``reason``: "cannot write its
    outputs (...)"; no record, so a rerun redoes it), never the whole batch's. Safe to run in a background
    thread (see :func:`_process`): it touches only ``outcomes`` and the files of their photos.
    """
    from .. import index

    for o in outcomes:
        if o.result is None:
            continue
        try:
            _write_one(o, job)
        except Exception as e:  # noqa: BLE001 - this photo's failure, reported as such
            o.result, o.pngs, o.json = None, [], None
            o.reason = f"cannot write its outputs ({type(e).__name__}: {e})"
    index.append(job.out, [row for o in outcomes for row in (
        [index.failure_row(o.item.path, o.item.stem, o.reason, job.loaded.name, job.options.get("method", ""))]
        if o.result is None else index.result_rows(o.result, o.item.stem, o.pngs, o.json, job.maps_path(o.item)))])
    return outcomes


def explain_items(items: Sequence[Item], job: Job, decoded: Optional[Sequence[tuple]] = None) -> List[Outcome]:
    """The per-batch step: :func:`compute_items` (load -> preprocess -> explain) then :func:`write_outcomes`
    (overlays, JSON, maps, resume records, results index rows; a write error is that photo's failure)."""
    return write_outcomes(compute_items(items, job, decoded), job)


def run(args: argparse.Namespace) -> int:
    """Explain every photo of ``args.paths`` (and the demo photo with ``--demo``); returns the exit code."""
    from ..api import get_method, resolve_target
    from ..models import load_model

    if not args.paths and not args.demo:
        raise ValueError("Give image files or folders to explain, or --demo for the bundled photo.")
    if args.top is not None and args.target is not None:
        raise ValueError("Use either --target (one class) or --top K (the K best classes), not both.")
    k = 1 if args.top is None else args.top
    if k < 1:
        raise ValueError(f"--top must be at least 1; got {k}.")
    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1]; got {args.alpha}.")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1; got {args.batch_size}.")
    bt = getattr(args, "box_threshold", None)
    if bt is not None and not 0 < bt <= 1:
        raise ValueError(f"--box-threshold is a fraction of the map's maximum in (0, 1] (the Grad-CAM paper's rule is "
                         f"0.15); got {bt}.")
    if getattr(args, "engine", "local") != "ray" and (getattr(args, "address", None) or getattr(args, "workers", None)):
        raise ValueError("--address and --workers are options of the Ray engine; add --engine ray.")
    max_side = getattr(args, "max_side", MAX_SIDE)
    if max_side is not None and max_side < 0:
        raise ValueError(f"--max-side must be a number of pixels (0: no cap); got {max_side}.")
    mp = getattr(args, "max_pixels", MAX_PIXELS / 1e6)
    if mp is not None and mp < 0:
        raise ValueError(f"--max-pixels must be a number of megapixels (0: no limit); got {mp}.")
    max_pixels = int(mp * 1e6) if mp else None
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out} is an existing file, not a folder; give a folder for the outputs "
                         "(it is created if needed).")
    from ..image import colormap_lut

    colormap_lut(args.colormap)  # an unknown colormap fails before any work
    args.json = args.json or getattr(args, "report", False)
    from ..medical.find import split_volumes

    vols, photo_paths = split_volumes(args.paths, exclude=[args.out])  # NIfTI, DICOM, .npy: explain_volumes.py
    if vols:
        from .explain_volumes import volume_options

        volume_options(args)  # a bad --window/--spacing/--size fails before any work
    items = ([Item(demo_photo(), "demo_chelsea")] if args.demo else []) + find_images(photo_paths, exclude=[args.out])
    if not items and not vols:
        raise ValueError(f"No image files found in: {', '.join(args.paths)}.")

    if args.neurons:
        from ..neurons import load_names

        args.neuron_names = load_names(args.neurons)  # a bad file fails before any work
    if max_pixels is not None and max_pixels > 2 * (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = max_pixels  # this process is the CLI: let PIL allow what --max-pixels allows
    loaded = load_model(args.model, weights=args.weights, device=args.device)
    if getattr(args, "quality", "standard") != "standard" and loaded.name == "efficientnet-lite0":
        from ..models import QUALITY_SIZES

        loaded.size = QUALITY_SIZES[args.quality]
    loaded.max_side = max_side or None
    method = get_method(loaded, args.method, args.layer)
    target = resolve_target(loaded, args.target)
    job = Job(loaded, method, target, k, args.out, result_options(args, loaded, target, k),
              alpha=args.alpha, colormap=args.colormap, colorbar=bool(args.colorbar), json=bool(args.json),
              max_pixels=max_pixels, maps=bool(getattr(args, "maps", False)),
              box_threshold=box_threshold_of(args, loaded))
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Cannot create the output folder --out {args.out} ({e.strerror or e}); "
                         "give a folder that can be created.") from None

    todo, done_before = [], 0
    for it in items:
        if not args.force and job.up_to_date(it):
            done_before += 1
        else:
            todo.append(it)

    progress = Progress(len(todo))
    vol_done = (0, 0)
    failed: List[Tuple[str, str]] = []

    def say(text: str, err: bool = False) -> None:
        if getattr(args, "quiet", False) and not err:
            return
        progress.clear()
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
        progress.draw()

    chunks = [todo[i:i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
    from ..cli import started

    started()  # Ctrl-C from here on: finish cleanly, keep the finished outputs (exit 130)
    if hasattr(method, "progress"):  # occlusion: one forward per window, so show progress inside a photo
        method.progress = progress.within
    progress.draw()
    start = time.monotonic()
    try:
        if getattr(args, "engine", "local") == "ray":
            from ..distributed import run_ray

            def on_outcome(o: dict) -> None:
                if o["reason"] is not None:
                    failed.append((o["file"], o["reason"]))
                say(o["text"], err=o["reason"] is not None)
                progress.update()

            run_ray(args, job, todo, on_outcome)
        else:
            _process(chunks, job, failed, say, progress, getattr(args, "neuron_names", None))
        if vols:
            from .explain_volumes import run_volumes

            vol_done = run_volumes(args, vols, loaded, method, target, k, job.options, failed, say)
    except KeyboardInterrupt:
        progress.clear()
        print(f"gradcam: interrupted after {progress.done - len(failed)} image(s); run the same command again to "
              "continue (finished outputs are kept).", file=sys.stderr)
        return 130
    finally:
        if hasattr(method, "progress"):
            method.progress = None
    progress.clear()
    explained = progress.done - len(failed) + vol_done[0] + len([f for f in failed if f[0] in dict(vols)])
    done_before += vol_done[1]
    from .. import index
    from ..distributed import Summary

    args.summary = Summary(getattr(args, "engine", "local"), len(items), explained, done_before, list(failed),
                           index.compact(args.out), time.monotonic() - start, args.out)

    parts = [f"explained {explained} image{'s' if explained != 1 else ''}"]
    if done_before:
        parts.append(f"{done_before} already done (same input, model and options; --force redoes them)")
    parts.append(f"{len(failed)} failed")
    print(f"gradcam: {', '.join(parts)}; outputs in {args.out}", file=sys.stderr)
    for path, reason in failed:
        print(f"  failed: {path}: {reason}", file=sys.stderr)
    _write_failures(args.out, failed)
    if getattr(args, "report", False):
        from ..report import write_report

        print(write_report(args.out))
    return 1 if failed else 0


def _write_failures(out: str, failed: List[Tuple[str, str]]) -> None:
    """OUT/failures.json: ``[{"file": path, "reason": why}]`` of this run's failed files (``[]`` when none)."""
    path = os.path.join(out, "failures.json")
    data = (json.dumps([{"file": f, "reason": r} for f, r in failed], indent=1) + "\n").encode()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return  # unchanged: a rerun leaves the folder untouched
    except OSError:
        if not failed:
            return
    atomic_write(path, data)


WRITE_AHEAD = 1
"""Batches whose outputs a background thread may still be writing while the next batch is explained
(0: write synchronously). PNG encoding and file writes of batch i then overlap the explanation of batch
i + 1; at most this many explained batches wait in memory."""


def _process(chunks, job: Job, failed, say, progress, names=None) -> None:
    """Decode chunk i+1 in a background thread while chunk i is explained, and write chunk i-1's outputs
    in another (:data:`WRITE_AHEAD`). Photos are reported (and counted) only once their outputs and record
    are written; on any exit, Ctrl-C included, the writes already started are finished and reported first.
    """

    def load_all(chunk):
        return [_load(it, job.max_pixels) for it in chunk]

    def report(outcomes) -> None:
        for o in outcomes:
            if o.result is None:
                failed.append((o.item.path, o.reason))
                say(f"gradcam: skipped {o.item.path}: {o.reason}", err=True)
            else:
                say(_describe(o.item, o.result, o.pngs, names))
            progress.update()

    writing: List[Any] = []  # futures of write_outcomes, oldest first
    with ThreadPoolExecutor(max_workers=1) as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradcam-writer") as writer:
        try:
            pending = pool.submit(load_all, chunks[0]) if chunks else None
            for ci, chunk in enumerate(chunks):
                assert pending is not None  # chunks is not empty here
                decoded = pending.result()
                if ci + 1 < len(chunks):
                    pending = pool.submit(load_all, chunks[ci + 1])
                outcomes = compute_items(chunk, job, decoded)
                if WRITE_AHEAD <= 0:
                    report(write_outcomes(outcomes, job))
                    continue
                while len(writing) >= WRITE_AHEAD:
                    report(writing.pop(0).result())
                writing.append(writer.submit(write_outcomes, outcomes, job))
        finally:
            while writing:  # flush: finished photos keep (and report) their outputs, even on Ctrl-C
                report(writing.pop(0).result())


def _describe(item: Item, res, pngs: List[str], names=None) -> str:
    w, h = res.size
    name = "chelsea.png (demo)" if item.path == demo_photo() else item.path
    lines = [f"{name} ({w}x{h})"]
    for cls, cid, p in res.predictions:
        lines.append(f"  {p:7.2%}  {cls} ({cid})")
    for r, png in enumerate(pngs):
        box = res.boxes[r]
        where = f"peak (x, y) = {tuple(res.peaks[r])}, box = {box}" if box else "flat map (no evidence)"
        lines.append(f"  {res.method} for '{res.classes[r]}' at {res.layer or 'the input'}: {where} -> {png}")
        if names is not None:
            from ..neurons import describe

            if res.weights is None:
                lines.append(f"  (--neurons: method {res.method} has no channel weights)")
            else:
                text = describe(res.weights[r], names).replace("the target", f"'{res.classes[r]}'")
                text = text.replace("Channels", f"Channels of layer '{res.layer}'", 1)
                lines += ["    " + ln for ln in text.splitlines()]
    return "\n".join(lines)
