"""The folder job, start to end: find -> decode (limits) -> batch -> explain -> write (atomic) -> resume
record -> index, on the local or the Ray executor (see :func:`run`)."""

from __future__ import annotations

import os
import time
from typing import Any, List, Optional, Sequence, Set, Tuple

from .. import storage
from ..io import Item, demo_photo, find_images
from ..resume import RECORD_DIR
from .console import Reporter
from .job import Job, Outcome, build_job
from .options import Options
from .steps import outcome_text, write_failures
from .summary import Summary


def find(options: Options) -> List[Item]:
    """The photos of ``options.paths`` (and the demo photo with ``demo``), the output folder excluded.

    A URL (``s3://bucket/photos``) is listed as a stream of keys (:func:`gradcam.storage.list_items`); the
    photos themselves are read later, by whoever decodes them.
    """
    items = [Item(demo_photo(), "demo_chelsea")] if options.demo else []
    from .kinds import extensions

    exts = extensions()

    def remote(url: str) -> Any:
        return storage.list_items(url, [options.out], exts, options.storage_options)

    items += find_images(list(options.paths), exclude=[options.out], extensions=exts, remote=remote)
    if not items:
        raise ValueError(f"No image files found in: {', '.join(options.paths)}.")
    return items


def prepare(options: Options) -> Tuple[List[Item], List[Job], Any]:
    """Check the options, find the photos, load the model and make one :class:`Job` per method.

    Returns ``(items, jobs, neuron names or None)``; every usage error is raised here, before any work.
    """
    from ..image import colormap_lut

    options.check()
    storage.configure(options.storage_options)
    colormap_lut(options.colormap)  # an unknown colormap fails before any work
    items = find(options)
    names = None
    if options.neurons:
        from ..neurons import load_names

        names = load_names(options.neurons)  # a bad file fails before any work
    loaded = _load_model(options)
    target = None if options.target is None else loaded.class_id(options.target)
    jobs = [build_job(options, loaded, m, target) for m in options.methods]
    try:
        if not storage.is_remote(options.out):  # object stores have no folders: keys are written whole
            os.makedirs(options.out, exist_ok=True)
    except OSError as e:
        raise ValueError(
            f"Cannot create the output folder --out {options.out} ({e.strerror or e}); "
            "give a folder that can be created."
        ) from None
    return items, jobs, names


def _load_model(options: Options) -> Any:
    from ..models import prepare_model

    model = None if options.quality is not None and options.model == "efficientnet-lite0" else options.model
    loaded, threshold = prepare_model(
        model,
        weights=options.weights,
        device=options.device,
        quality=options.quality,
        size=options.size,
        crop=options.crop,
        mean=options.mean,
        std=options.std,
    )
    loaded.box_threshold = threshold
    loaded.max_side = options.max_side or None
    return loaded


def plan(items: Sequence[Item], jobs: Sequence[Job], force: bool) -> Tuple[List[Item], List[Set[Item]], int]:
    """Resume: ``(todo, wanted, done_before)``. ``wanted[j]``: the photos job ``j`` must (re)do (all with
    ``force``); ``todo``: the photos any job must do, in order; ``done_before``: results already up to date.

    With the outputs in object storage the records are listed first (one request per 1,000), and only photos
    that have one are checked (a GET of the record, a HEAD per output), :data:`CHECKS` at a time."""
    wanted = [_wanted(items, job, force) for job in jobs]
    todo = [it for it in items if any(it in w for w in wanted)]
    done_before = sum(len(items) - len(w) for w in wanted)
    return todo, wanted, done_before


CHECKS = 32
"""Resume checks in flight at once when the outputs are in object storage (each is a few requests)."""


def _wanted(items: Sequence[Item], job: Job, force: bool) -> Set[Item]:
    if force:
        return set(items)
    if not storage.is_remote(job.out):
        return {it for it in items if not job.up_to_date(it)}
    from concurrent.futures import ThreadPoolExecutor

    folder = storage.join(job.out, RECORD_DIR)
    have = {url for url, _ in storage.iter_files(folder, job.storage_options)}  # records that exist
    todo = {it for it in items if job.record(it) not in have}  # no record: to do, no request
    check = [it for it in items if it not in todo]
    with ThreadPoolExecutor(max_workers=CHECKS, thread_name_prefix="gradcam-resume") as pool:
        for i in range(0, len(check), 64 * CHECKS):  # a window of futures, not one per photo at once
            window = check[i : i + 64 * CHECKS]
            todo.update(it for it, ok in zip(window, pool.map(job.up_to_date, window)) if not ok)
    return todo


def run(options: Options, reporter: Optional[Reporter] = None) -> Summary:
    """Explain every photo of ``options`` into ``options.out``; returns a :class:`Summary`.

    Outputs per photo and method: overlays, with ``json`` a JSON record, with ``maps`` the maps, then the
    resume record; the results index; ``failures.json``; with ``report`` the HTML report. A photo whose
    outputs are up to date (same input, model and options; see :mod:`gradcam.resume`) is skipped unless
    ``force``. ``reporter`` (default: silent) sees the progress. Usage errors raise ``ValueError`` before
    any work; Ctrl-C raises ``KeyboardInterrupt`` after the started writes are finished.
    """
    reporter = reporter or Reporter()
    options = options.localised()
    items, jobs, names = prepare(options)
    todo, wanted, done_before = plan(items, jobs, options.force)
    failed: List[Tuple[str, str]] = []
    counts = {"explained": 0}

    def on_outcome(file: str, reason: Optional[str], text: str) -> None:
        if reason is not None:
            failed.append((file, reason))
        else:
            counts["explained"] += 1
        reporter.outcome(file, reason, text)

    reporter.start(sum(len(w) for w in wanted))
    from .costs import announce

    announce(jobs, todo, reporter)
    start = time.monotonic()
    stats = _execute(options, jobs, todo, wanted, names, reporter, on_outcome)
    return _finish(
        options,
        jobs,
        items,
        counts["explained"],
        done_before,
        failed,
        time.monotonic() - start,
        reporter,
        stats,
    )


def _execute(
    options: Options,
    jobs: Sequence[Job],
    todo: List[Item],
    wanted: List[Set[Item]],
    names: Any,
    reporter: Reporter,
    on_outcome: Any,
) -> Any:
    """Run the executor of ``options.engine``; a method with a progress hook reports inside each photo.
    Returns the Ray engine's :class:`~gradcam.pipeline.raydata.RayStats` (``None`` for the local one)."""
    hooked = [j.method for j in jobs if hasattr(j.method, "progress")]
    for m in hooked:  # occlusion: one forward per window, so show progress inside a photo
        m.progress = reporter.within
    try:
        if options.engine == "ray":
            from .raydata import RayConfig, run_ray

            cfg = RayConfig(
                options.model,
                options.weights,
                options.address,
                options.workers,
                options.threads,
                options.gpus_per_worker,
                options.device,
                options.batch_size,
                names,
                reporter.note,
            )
            return run_ray(cfg, jobs, todo, wanted, lambda o: on_outcome(o["file"], o["reason"], o["text"]))
        else:
            from .local import run_local

            def local_outcome(o: Outcome, job: Job) -> None:
                on_outcome(o.item.path, o.reason, outcome_text(o, names))

            bs = options.batch_size
            chunks = [todo[i : i + bs] for i in range(0, len(todo), bs)]
            run_local(chunks, jobs, wanted, local_outcome, prefetch=options.prefetch)
            return None
    finally:
        for m in hooked:
            m.progress = None


def _finish(
    options: Options,
    jobs: Sequence[Job],
    items: Sequence[Item],
    explained: int,
    done_before: int,
    failed: List[Tuple[str, str]],
    seconds: float,
    reporter: Reporter,
    stats: Any = None,
) -> Summary:
    """Compact the index, write ``failures.json`` (and the report), tell the reporter; the :class:`Summary`."""
    from .. import index

    order = {it.path: i for i, it in enumerate(items)}
    failed = sorted(
        failed, key=lambda f: order.get(f[0], len(order))
    )  # the photos' order, whatever the executor's
    summary = Summary(
        options.engine,
        len(items),
        explained,
        done_before,
        list(failed),
        index.compact(options.out, options.storage_options),
        seconds,
        options.out,
        [j.method_name for j in jobs],
        retries=getattr(stats, "retries", 0),
        nodes=sorted(getattr(stats, "nodes", ())),
    )
    reporter.finish(summary)
    write_failures(options.out, failed, options.storage_options)
    if options.report:
        from ..report import write_report

        summary.report = os.path.abspath(write_report(options.out))
    return summary
