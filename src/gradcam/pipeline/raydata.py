"""The Ray executor: the same per-batch steps as the local executor, as a Ray Data pipeline.

1. the driver lists the photos, drops the ones whose outputs are up to date (the local resume rules) and
   cuts the rest into batches of ``batch_size`` photos, in the local order;
2. reading, decoding and preprocessing run as Ray Data tasks (fractional CPUs, so that the actor pool never
   starves them);
3. an actor pool (the model loaded once per actor) explains each batch with every method of the job, writes
   the outputs (atomic writes, same names) and adds the batch's rows to the results index;
4. the driver streams the per-photo outcomes back for the progress line, the printed descriptions, the
   failure list and the exit code.

It never starts a remote cluster: ``address`` connects to a running one; without it a local Ray starts with
this machine's CPUs and stops at the end.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..io import Item
from .job import Job
from .kinds import PHOTO, compute, decode, kind_of, write
from .steps import outcome_text

DECODE_CPUS = 0.25  # CPUs a read/decode/preprocess task asks for; actors leave at least this free


def pool_shape(
    cluster_cpus: float, workers: Optional[int], gpus: float = 0, gpus_per_worker: float = 1.0
) -> Tuple[int, float, int]:
    """(actors, CPUs per actor, torch threads per actor) for a cluster with ``cluster_cpus`` CPUs.

    CPU models (``gpus`` = 0): by default one actor per CPU, keeping ``DECODE_CPUS`` + 0.25 CPUs free for
    the decode tasks (an actor pool that takes every CPU starves them and hangs); when ``workers`` actors
    would not leave them free, each actor asks for a fraction of a CPU instead. GPU models (``gpus``: the
    cluster's GPU count): by default floor(gpus / gpus_per_worker) actors (each holds ``gpus_per_worker``
    GPUs; 0.5: two actors share a GPU), at most one CPU each.
    """
    free = max(cluster_cpus - DECODE_CPUS - 0.25, 0.25)
    default = int(gpus / gpus_per_worker + 1e-9) if gpus else int(free)
    n = workers if workers is not None else max(1, default)
    per = min(1.0, free / n)
    return n, per, max(1, int(round(per)))


@dataclass(frozen=True)
class Pool:
    """The actor pool of one run: ``actors``, ``cpus`` and ``gpus`` per actor, torch ``threads`` per actor,
    the ``device`` the actors load the model on, and a ``note`` to show the user (``None``: nothing to say)."""

    actors: int
    cpus: float
    gpus: float
    threads: int
    device: str
    note: Optional[str] = None


def plan_pool(
    resources: Dict[str, float],
    device: str,
    workers: Optional[int] = None,
    gpus_per_worker: float = 1.0,
    threads: Optional[int] = None,
) -> Pool:
    """The :class:`Pool` for a cluster with ``resources`` (``ray.cluster_resources()``: "CPU", "GPU").

    A CUDA ``device`` on a cluster with GPUs: floor(GPUs / ``gpus_per_worker``) actors of
    ``gpus_per_worker`` GPUs each (``workers`` overrides the count). A CUDA device on a cluster without
    GPUs falls back to CPU actors, with a note saying so. A CPU device: CPU actors (see :func:`pool_shape`).
    """
    cpus, gpus = float(resources.get("CPU", 1.0)), float(resources.get("GPU", 0.0))
    cuda = str(device).startswith("cuda")
    note = None
    if cuda and gpus <= 0:
        note = (
            f"gradcam: --device {device} but the Ray cluster has no GPU; the model actors run on the CPU "
            "(connect to a cluster with GPUs, or use --device cpu to silence this)."
        )
        cuda, device = False, "cpu"
    n, per, t = pool_shape(cpus, workers, gpus if cuda else 0, gpus_per_worker)
    return Pool(n, per, gpus_per_worker if cuda else 0.0, threads or t, device, note)


def _decode_row(row: Dict, loaded: Any, max_pixels: Optional[int], storage_options: Any = None) -> Dict:
    """Ray Data task: read, decode and preprocess one batch of photos (``loaded``: the model's preprocessing).

    A photo given as a URL (``s3://...``) is read from its store here, with the run's ``storage_options``."""
    from .. import storage

    storage.configure(storage_options)
    decoded = []
    for p, s in zip(row["paths"], row["stems"]):
        data, reason = decode(Item(p, s), max_pixels)
        photo = (
            data is not None and kind_of(p) is PHOTO
        )  # other kinds prepare their data in their compute step
        decoded.append((data, reason, loaded.preprocess(data)) if photo else (data, reason))
    # Photos travel to the actor as pickled (PIL image, reason, x) triples in one binary column.
    return {**row, "decoded": pickle.dumps(decoded, protocol=5)}


def _actor_model(model: str, loaded: Any) -> str:
    """The name an actor loads: the built-in model a ``quality`` preset resolved to, else the user's ``model``
    (the decode tasks preprocess with the driver's input options, so the actor needs the network only)."""
    from ..models import MODELS

    return loaded.name if getattr(loaded, "name", None) in MODELS else model


@dataclass(frozen=True)
class ActorSpec:
    """What an actor needs to load its own model: name, weights, device, input size and cap, threads, the
    channel names for ``--neurons`` descriptions."""

    model: str
    weights: Optional[str]
    device: str
    size: Any
    max_side: Optional[int]
    threads: int
    names: Any = None


class _Explainer:
    """Ray Data actor: the model loaded once; explains batches with the local per-batch steps.

    ``jobs``: the driver's :class:`Job` s without model and method (same resume keys, output names and
    options); the actor loads its own model and methods into them.
    """

    def __init__(self, spec: ActorSpec, jobs: Sequence[Job]):
        import torch

        from ..models import load_model
        from .job import make_method

        torch.set_num_threads(spec.threads)
        from .. import storage

        storage.configure(jobs[0].storage_options if jobs else None)  # the run's object storage options
        loaded = load_model(spec.model, weights=spec.weights, device=spec.device)
        loaded.size, loaded.max_side = spec.size, spec.max_side
        self.jobs = [
            dataclasses.replace(
                j,
                loaded=loaded,
                method=make_method(loaded, j.method_name, j.layer, j.method_kwargs, j.precision),
            )
            for j in jobs
        ]
        self.names = spec.names

    def __call__(self, row: Dict) -> Dict:
        stamps = json.loads(row.get("stamps") or "null") or [None] * len(row["paths"])
        items = [Item(p, s, st) for p, s, st in zip(row["paths"], row["stems"], stamps)]
        decoded = pickle.loads(row["decoded"])
        outcomes = []
        for job, want in zip(self.jobs, row["wanted"]):
            sub = [(it, d) for it, d, w in zip(items, decoded, want) if w]
            if not sub:
                continue
            for o in write(compute([it for it, _ in sub], job, [d for _, d in sub]), job):
                outcomes.append(
                    {
                        "file": o.item.path,
                        "stem": job.stem(o.item),
                        "reason": o.reason,
                        "text": outcome_text(o, self.names),
                    }
                )
        return {"outcomes": json.dumps(outcomes)}


def start_ray(address: Optional[str]) -> Tuple[Any, bool]:
    """Connect to ``address`` or start a local Ray on this machine's CPUs; returns (ray, started_here)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError(
            'The Ray engine needs the ray extra: pip install "gradcam[ray]" (or pip install "ray[data]").'
        ) from e
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no auth token written to the home folder
    if ray.is_initialized():
        return ray, False
    quiet: Dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **quiet)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
    return ray, True


def _preprocessor(loaded: Any) -> Any:
    """A picklable copy of ``loaded`` without its network: what the decode tasks need to preprocess."""
    from torch import nn

    return dataclasses.replace(loaded, model=nn.Identity(), labels=[], synonyms=[])


@dataclass(frozen=True)
class RayConfig:
    """The Ray options of a run: the ``model`` and ``weights`` each actor loads, ``address``, ``workers``,
    ``threads``, ``gpus_per_worker``, ``device``, ``batch_size``, the channel ``names`` for descriptions, and
    ``say`` (where a note to the user goes)."""

    model: str = "efficientnet-lite0"
    weights: Optional[str] = None
    address: Optional[str] = None
    workers: Optional[int] = None
    threads: Optional[int] = None
    gpus_per_worker: float = 1.0
    device: str = "cpu"
    batch_size: int = 4
    names: Any = None
    say: Optional[Callable[[str], None]] = None


def run_ray(
    cfg: RayConfig,
    jobs: Sequence[Job],
    todo: List[Item],
    wanted: Sequence[Set[Item]],
    on_outcome: Callable[[Dict], None],
) -> None:
    """Explain ``todo`` on Ray with every job, in the local executor's batches of ``cfg.batch_size``.

    ``on_outcome(dict)`` is called on the driver for each (photo, method) as its batch finishes (keys
    ``file``, ``stem``, ``reason`` (``None`` unless it failed), ``text``: the printed description).
    """
    if cfg.workers is not None and cfg.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {cfg.workers}.")
    if not todo:
        return  # everything is up to date: no Ray to start
    ray, started = start_ray(cfg.address)
    try:
        for outcome in _stream(ray, cfg, jobs, todo, wanted):
            on_outcome(outcome)
    finally:
        if started:
            ray.shutdown()


def _stream(ray: Any, cfg: RayConfig, jobs: Sequence[Job], todo: List[Item], wanted: Sequence[Set[Item]]):
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no per-run banners; errors still show
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    pool = plan_pool(ray.cluster_resources(), cfg.device, cfg.workers, cfg.gpus_per_worker, cfg.threads)
    if pool.note and cfg.say is not None:
        cfg.say(pool.note)
    bs, loaded = cfg.batch_size, jobs[0].loaded
    rows = [
        {
            "paths": [it.path for it in todo[i : i + bs]],
            "stems": [it.stem for it in todo[i : i + bs]],
            "wanted": [[it in w for it in todo[i : i + bs]] for w in wanted],
            "stamps": json.dumps([it.stamp for it in todo[i : i + bs]]),  # objects' listing stamps (resume)
        }
        for i in range(0, len(todo), bs)
    ]
    spec = ActorSpec(
        _actor_model(cfg.model, loaded),
        cfg.weights,
        pool.device,
        loaded.size,
        loaded.max_side,
        pool.threads,
        cfg.names,
    )
    templates = [dataclasses.replace(j, loaded=None, method=None) for j in jobs]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    ds = ds.map(
        _decode_row,
        num_cpus=DECODE_CPUS,
        fn_kwargs={
            "loaded": _preprocessor(loaded),
            "max_pixels": jobs[0].max_pixels,
            "storage_options": jobs[0].storage_options,
        },
    )
    ds = ds.map(
        _Explainer,
        fn_constructor_kwargs={"spec": spec, "jobs": templates},
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        num_cpus=pool.cpus,
        num_gpus=pool.gpus,
    )
    for row in ds.iter_rows():
        yield from json.loads(row["outcomes"])
