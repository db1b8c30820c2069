"""Explain a whole dataset: the local loop of ``gradcam explain`` or the same work on a Ray cluster (Ray Data).

:func:`explain_dataset` runs either engine and returns a :class:`Summary`. The Ray engine (the ``[ray]``
extra, ``pip install -e ".[ray]"``) is a Ray Data pipeline:

1. the driver lists the photos (as the local engine does), drops the ones whose outputs are up to date
   (the local resume rules) and cuts the rest into batches of ``batch_size`` photos, in the local order;
2. reading, decoding and preprocessing run as Ray Data tasks (fractional CPUs, so that the actor pool never
   starves them);
3. an actor pool (``workers`` actors; the model is loaded once per actor, any model name the CLI accepts)
   explains each batch with the same per-batch function as the local engine, writes the overlays and JSON
   records to the output folder (atomic writes, same names) and adds the batch's rows to the results index
   (:mod:`gradcam.index`);
4. the driver streams the per-photo outcomes back for the progress line, the printed descriptions, the
   failure list and the exit code, then compacts the index.

Same batches, same preprocessing and the same thread count give the same numbers as the local engine.
It never starts a remote cluster: ``address`` connects to a running one; without it a local Ray starts with
this machine's CPUs and stops at the end.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .io import Item

ENGINES = ("local", "ray")
DECODE_CPUS = 0.25  # CPUs a read/decode/preprocess task asks for; actors leave at least this free


@dataclass
class Summary:
    """The outcome of :func:`explain_dataset`.

    ``found`` photos; ``explained`` this run; ``skipped`` (outputs already up to date); ``failed``: (path,
    reason) pairs; ``index``: the results table's path; ``seconds``: wall time; ``engine``.
    """

    engine: str
    found: int
    explained: int
    skipped: int
    failed: List[Tuple[str, str]] = field(default_factory=list)
    index: Optional[str] = None
    seconds: float = 0.0
    out: str = ""

    @property
    def exit_code(self) -> int:
        """0 when every photo was explained (or already was), 1 when any failed (the CLI's rule)."""
        return 1 if self.failed else 0

    @property
    def images_per_second(self) -> float:
        """Photos explained or failed this run per second of wall time."""
        n = self.explained + len(self.failed)
        return n / self.seconds if self.seconds > 0 else 0.0


def explain_dataset(
    paths: Union[str, Sequence[str]],
    out: str = "gradcam-out",
    model: str = "efficientnet-lite0",
    method: str = "gradcam",
    top_k: int = 1,
    engine: str = "local",
    address: Optional[str] = None,
    workers: Optional[int] = None,
    *,
    target: Union[None, int, str] = None,
    layer: Optional[str] = None,
    weights: Optional[str] = None,
    json_records: bool = True,
    maps: bool = False,
    alpha: float = 0.5,
    colormap: str = "jet",
    colorbar: bool = False,
    force: bool = False,
    batch_size: int = 4,
    device: str = "cpu",
    threads: Optional[int] = None,
    verbose: bool = False,
) -> Summary:
    """Explain every photo under ``paths`` into ``out`` with ``engine`` ("local" or "ray"); see the module doc.

    Outputs are those of ``gradcam explain``: ``out/<stem>.png`` (``.topK.png`` for ``top_k`` > 1), with
    ``json_records`` ``out/<stem>.json``, with ``maps`` ``out/<stem>.maps.pt``, and the results index ``out/index.parquet`` (or ``.jsonl``).
    ``address``, ``workers`` and ``threads`` (torch threads per actor) apply to the Ray engine. ``verbose``
    prints each photo's description as the CLI does.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    args = argparse.Namespace(
        paths=[os.fspath(p) for p in paths], demo=False, model=model, weights=weights,
        target=None if target is None else str(target), top=None if target is not None else top_k,
        method=method, layer=layer, out=os.fspath(out), alpha=alpha, colormap=colormap, colorbar=colorbar,
        json=json_records, maps=maps, neurons=None, force=force, batch_size=batch_size, device=device,
        engine=engine, address=address, workers=workers, threads=threads, quiet=not verbose,
    )
    from .commands import explain as cmd

    if cmd.run(args) == 130:
        raise KeyboardInterrupt("explain_dataset was interrupted; finished outputs and index rows are kept")
    return args.summary


# -- the Ray engine ---------------------------------------------------------------------------------------

def _decode_row(row: Dict, loaded, max_pixels: Optional[int], pil_limit: Optional[int]) -> Dict:
    """Ray Data task: read, decode and preprocess one batch of photos (``loaded``: the model's preprocessing;
    ``max_pixels``: the driver's ``--max-pixels``; ``pil_limit``: the driver's ``PIL.Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image

    from .commands.explain import _load

    Image.MAX_IMAGE_PIXELS = pil_limit
    decoded = []
    for p, s in zip(row["paths"], row["stems"]):
        img, reason = _load(Item(p, s), max_pixels)
        decoded.append((img, reason) if img is None else (img, reason, loaded.preprocess(img)))
    # Photos travel to the actor as pickled (PIL image, reason, x) triples in one binary column.
    return {"paths": row["paths"], "stems": row["stems"], "decoded": pickle.dumps(decoded, protocol=5)}


class _Explainer:
    """Ray Data actor: the model loaded once; explains batches with the local per-batch function.

    ``job``: the driver's :class:`gradcam.commands.explain.Job` without its model and method (same resume
    key, output names and options); the actor loads its own model into it.
    """

    def __init__(self, args: argparse.Namespace, job, threads: int, max_side: Optional[int]):
        import dataclasses

        import torch

        from .api import get_method
        from .models import load_model

        torch.set_num_threads(threads)
        loaded = load_model(args.model, weights=args.weights, device=args.device)
        loaded.max_side = max_side
        self.job = dataclasses.replace(job, loaded=loaded, method=get_method(loaded, args.method, args.layer))
        self.names = getattr(args, "neuron_names", None)

    def __call__(self, row: Dict) -> Dict:
        from .commands.explain import _describe, explain_items

        items = [Item(p, s) for p, s in zip(row["paths"], row["stems"])]
        outcomes = []
        for o in explain_items(items, self.job, pickle.loads(row["decoded"])):
            text = (f"gradcam: skipped {o.item.path}: {o.reason}" if o.result is None
                    else _describe(o.item, o.result, o.pngs, self.names))
            outcomes.append({"file": o.item.path, "stem": o.item.stem, "reason": o.reason, "text": text})
        return {"outcomes": json.dumps(outcomes)}


def _preprocessor(loaded):
    """A picklable copy of ``loaded`` without its network: what the decode tasks need to preprocess."""
    import dataclasses

    from torch import nn

    return dataclasses.replace(loaded, model=nn.Identity(), labels=[], synonyms=[])


def _start_ray(address: Optional[str]):
    """Connect to ``address`` or start a local Ray on this machine's CPUs; returns (ray, started_here)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError('The Ray engine needs the ray extra: pip install "gradcam[ray]" '
                          '(or pip install "ray[data]").') from e
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no auth token written to the home folder
    if ray.is_initialized():
        return ray, False
    quiet: Dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
    return ray, True


def pool_shape(cluster_cpus: float, workers: Optional[int], gpus: float = 0) -> Tuple[int, float, int]:
    """(actors, CPUs per actor, torch threads per actor) for a cluster with ``cluster_cpus`` CPUs.

    CPU models (``gpus`` = 0): by default one actor per CPU, keeping ``DECODE_CPUS`` + 0.25 CPUs free for
    the decode tasks (an actor pool that takes every CPU starves them and hangs); when ``workers`` actors
    would not leave them free, each actor asks for a fraction of a CPU instead. GPU models (``gpus``: the
    cluster's GPUs): by default one actor per GPU (each holds one GPU), at most one CPU each.
    """
    free = max(cluster_cpus - DECODE_CPUS - 0.25, 0.25)
    default = int(gpus) if gpus else int(free)
    n = workers if workers is not None else max(1, default)
    per = min(1.0, free / n)
    return n, per, max(1, int(round(per)))


def run_ray(args: argparse.Namespace, job, todo: List[Item], on_outcome: Callable[[Dict], None]) -> None:
    """Explain ``todo`` on Ray with ``job``'s options, in the local engine's batches of ``args.batch_size``.

    ``on_outcome(dict)`` is called on the driver for each photo as its batch finishes (keys ``file``,
    ``stem``, ``reason`` (``None`` unless it failed), ``text``: the CLI's description).
    """
    import dataclasses

    workers = getattr(args, "workers", None)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be at least 1; got {workers}.")
    if not todo:
        return  # everything is up to date: no Ray to start
    ray, started = _start_ray(getattr(args, "address", None))
    try:
        import ray.data

        logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-run banners; errors still show
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        gpu = str(args.device).startswith("cuda")
        n, per, threads = pool_shape(ray.cluster_resources().get("CPU", 1.0), getattr(args, "workers", None), gpu)
        threads = getattr(args, "threads", None) or threads
        bs = args.batch_size
        rows = [{"paths": [it.path for it in todo[i:i + bs]], "stems": [it.stem for it in todo[i:i + bs]]}
                for i in range(0, len(todo), bs)]
        template = dataclasses.replace(job, loaded=None, method=None)
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        from PIL import Image

        ds = ds.map(_decode_row, num_cpus=DECODE_CPUS, fn_kwargs={
            "loaded": _preprocessor(job.loaded), "max_pixels": job.max_pixels, "pil_limit": Image.MAX_IMAGE_PIXELS})
        ds = ds.map(_Explainer, fn_constructor_kwargs={"args": _picklable(args), "job": template, "threads": threads,
                                                       "max_side": job.loaded.max_side},
                    compute=ray.data.ActorPoolStrategy(size=n), num_cpus=per, num_gpus=1 if gpu else 0)
        for row in ds.iter_rows():
            for outcome in json.loads(row["outcomes"]):
                on_outcome(outcome)
    finally:
        if started:
            ray.shutdown()


def _picklable(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("func", "summary")})
