"""The Ray executor: the same per-batch steps as the local executor, on a Ray cluster of one or many nodes.

1. the driver lists the photos, drops the ones whose outputs are up to date (the local resume rules) and
   cuts the rest into batches of ``batch_size`` photos, in the local order;
2. the driver ships its loaded model to an actor pool by value (:func:`pack_model`, through Ray's object
   store: no actor opens a path of the driver's disk) and the actors, spread over the nodes, load it once;
3. per batch, a Ray task (a fraction of a CPU) reads, decodes and preprocesses the photos, and an actor
   explains them with every method of the job, writes the outputs (atomic writes, same names) and adds the
   batch's rows to the results index;
4. the driver keeps :data:`DEPTH` batches in flight per actor and streams the per-photo outcomes back for
   the progress line, the printed descriptions, the failure list and the exit code. A batch whose actor or
   task failed (a killed worker, a lost node, an exception) is sent again, at most ``retries`` times
   (:data:`MAX_RETRIES`), and counted (:class:`RayStats`); then its photos are failures with the reason.
   Ctrl-C stops sending batches and finishes the ones in flight (a second Ctrl-C stops at once).

It never starts a remote cluster: ``address`` connects to a running one; without it a local Ray starts with
this machine's CPUs and stops at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import os
import pickle
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..io import Item
from .job import Job
from .kinds import PHOTO, compute, decode, kind_of, write
from .steps import outcome_text

DECODE_CPUS = 0.25  # CPUs a read/decode/preprocess task asks for; actors leave at least this free
DEPTH = 2  # batches in flight per actor: one explained while the next one's photos are decoded
MAX_RETRIES = 2  # a batch whose actor or task failed is sent again at most this many times
PROBE_EVERY = 0.5  # seconds between probes of an actor that died (until Ray has started it again)
PROBES = 240  # failed probes (about 2 minutes) after which a dead actor is given up
STARTUP_NOTE_AFTER = 60.0  # seconds of waiting for the actors to start before a note says so


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


@dataclass(frozen=True)
class ActorSpec:
    """What an actor needs besides the model: the ``device`` it loads the model on, torch ``threads``, the
    channel ``names`` for ``--neurons`` descriptions."""

    device: str
    threads: int
    names: Any = None


@dataclass(frozen=True)
class ScriptBytes:
    """A TorchScript network as the bytes of ``torch.jit.save`` (a ScriptModule cannot be pickled)."""

    data: bytes


def pack_model(loaded: Any) -> Any:
    """The driver's ``loaded`` model ready to ship to the actors by value (through Ray's object store).

    The network goes on the CPU (a TorchScript one as :class:`ScriptBytes`); labels, input size and
    normalisation travel with it. The actors therefore never open a path of the driver's disk: a
    ``--weights`` file, a TorchScript ``--model`` file and a ``package.module:factory``'s weights are read
    once, on the driver. (A factory's or network's Python classes must be importable on the workers, as for
    any Ray job: install the package there, or use Ray's ``runtime_env``.)
    """
    import torch

    net = loaded.model
    if isinstance(net, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(net, buf)
        net = ScriptBytes(buf.getvalue())
    elif any(t.device.type != "cpu" for t in list(net.parameters()) + list(net.buffers())):
        net = copy.deepcopy(net).cpu()
    return dataclasses.replace(loaded, model=net)


def unpack_model(shipped: Any, device: str) -> Any:
    """The inverse of :func:`pack_model`, on an actor: the network on ``device``, in eval mode."""
    import torch

    net = shipped.model
    if isinstance(net, ScriptBytes):
        net = torch.jit.load(io.BytesIO(net.data), map_location="cpu")
    net.to(device).eval()
    return dataclasses.replace(shipped, model=net)


class _Explainer:
    """The Ray actor: the driver's model (shipped by value, :func:`pack_model`) loaded once per process;
    explains batches with the local per-batch steps.

    ``jobs``: the driver's :class:`Job` s without model and method (same resume keys, output names and
    options); the actor puts its own model and methods into them. Every call carries ``shipped``,
    ``{"model": object ref}`` (a reference, not the model), so that an actor process Ray starts again after
    a crash loads the model on its first call (no object-store arguments in the constructor).
    """

    def __init__(self, spec: ActorSpec, jobs: Sequence[Job]):
        self.spec, self.templates, self.names = spec, list(jobs), spec.names
        self.jobs: Optional[List[Job]] = None

    def _load(self, shipped: Dict[str, Any]) -> List[Job]:
        if self.jobs is None:
            import ray
            import torch

            from .. import storage
            from .job import make_method

            torch.set_num_threads(self.spec.threads)
            storage.configure(self.templates[0].storage_options if self.templates else None)  # the run's
            loaded = unpack_model(ray.get(shipped["model"]), self.spec.device)
            self.jobs = [
                dataclasses.replace(
                    j,
                    loaded=loaded,
                    method=make_method(loaded, j.method_name, j.layer, j.method_kwargs, j.precision),
                )
                for j in self.templates
            ]
        return self.jobs

    def ready(self, shipped: Dict[str, Any]) -> Dict[str, Any]:
        """Load the model; where this actor runs: ``{"node": Ray node id, "pid": process id}``."""
        import ray

        self._load(shipped)
        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def explain(self, row: Dict, shipped: Dict[str, Any]) -> Dict:
        """Explain and write one decoded batch (:func:`_decode_row`); ``outcomes`` (JSON) and :meth:`ready`."""
        stamps = json.loads(row.get("stamps") or "null") or [None] * len(row["paths"])
        items = [Item(p, s, st) for p, s, st in zip(row["paths"], row["stems"], stamps)]
        decoded = pickle.loads(row["decoded"])
        outcomes = []
        for job, want in zip(self._load(shipped), row["wanted"]):
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
        return {"outcomes": json.dumps(outcomes), **self.ready(shipped)}


def start_ray(address: Optional[str]) -> Tuple[Any, bool]:
    """Connect to ``address`` or start a local Ray on this machine's CPUs; returns (ray, started_here)."""
    try:
        import ray
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
    """The Ray options of a run: ``model`` and ``weights`` (as given; the actors get the driver's loaded
    model by value), ``address``, ``workers``, ``threads``, ``gpus_per_worker``, ``device``, ``batch_size``,
    the channel ``names`` for descriptions, ``say`` (where a note to the user goes) and ``retries`` (resends
    of a failed batch)."""

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
    retries: int = MAX_RETRIES


def run_ray(
    cfg: RayConfig,
    jobs: Sequence[Job],
    todo: List[Item],
    wanted: Sequence[Set[Item]],
    on_outcome: Callable[[Dict], None],
) -> RayStats:
    """Explain ``todo`` on Ray with every job, in the local executor's batches of ``cfg.batch_size``.

    ``on_outcome(dict)`` is called on the driver for each (photo, method) as its batch finishes (keys
    ``file``, ``stem``, ``reason`` (``None`` unless it failed), ``text``: the printed description). Returns
    the :class:`RayStats` (retries, nodes). Ctrl-C: the batches in flight finish (their outcomes are
    reported), then ``KeyboardInterrupt`` is raised.
    """
    if cfg.workers is not None and cfg.workers < 1:
        raise ValueError(f"--workers must be at least 1; got {cfg.workers}.")
    if cfg.retries < 0:
        raise ValueError(f"retries must be at least 0; got {cfg.retries}.")
    stats = RayStats()
    if not todo:
        return stats  # everything is up to date: no Ray to start
    ray, started = start_ray(cfg.address)
    logging.getLogger("ray").setLevel(logging.ERROR)  # no per-run banners; errors still show
    try:
        for outcome in _stream(ray, cfg, jobs, todo, wanted, stats):
            on_outcome(outcome)
    finally:
        if started:
            ray.shutdown()
    return stats


@dataclass
class RayStats:
    """What a Ray run reports besides the outcomes: ``retries`` (batches sent again after a worker died or a
    task failed) and ``nodes`` (the ids of the Ray nodes whose actors explained at least one batch)."""

    retries: int = 0
    nodes: Set[str] = field(default_factory=set)


class _Interrupt:
    """Ctrl-C while the batches run: the first one sets ``hit`` (stop sending, finish what is in flight), a
    second one raises ``KeyboardInterrupt`` at once. Only in the main thread (signals go there)."""

    def __init__(self, say: Optional[Callable[[str], None]]):
        self.hit, self.say = False, say
        self.old: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        if self.say is not None:
            self.say("gradcam: stopping: finishing the batches in flight (Ctrl-C again to stop at once)")

    def __exit__(self, *exc: Any) -> None:
        if self.old is not None:
            signal.signal(signal.SIGINT, self.old)


def _why(error: BaseException, attempts: int) -> str:
    """The failure reason of a batch that failed ``attempts`` times, from Ray's last ``error``."""
    cause = getattr(error, "cause", None)  # RayTaskError: the exception raised inside the task
    if not isinstance(cause, BaseException):
        cause = error
    first = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"its batch failed {attempts} time(s) on the Ray cluster ({type(cause).__name__}: {first})"


class _Scheduler:
    """Runs batches ``0 .. n - 1`` on the actor pool: ``submit(actor, i)`` and ``probe(actor)`` return object
    refs; at most :data:`DEPTH` batches in flight per actor.

    A batch whose actor or task failed (any Ray error: a killed actor or worker, a lost node or object, an
    exception in the task) is sent again, first in line, at most ``retries`` times, each resend counted in
    ``stats.retries``; then :meth:`run` yields ``(i, reason)``. An actor that died gets no batch until a
    probe (:meth:`_Explainer.ready`, every :data:`PROBE_EVERY` s) says Ray has started it again; after
    :data:`PROBES` failed probes it is given up. With ``stop.hit`` (Ctrl-C) nothing more is sent and the
    batches in flight are finished.
    """

    def __init__(self, ray: Any, actors: List[Any], submit: Callable, probe: Callable, n: int, retries: int):
        self.ray, self.actors, self.submit, self.probe, self.retries = ray, actors, submit, probe, retries
        self.queue, self.attempts = deque(range(n)), [0] * n
        self.inflight: Dict[Any, Tuple[int, int]] = {}  # ref -> (batch, actor); batch -1: a probe
        self.load = [0] * len(actors)
        self.down: Dict[int, Optional[float]] = {}  # dead actor -> time of its next probe (None: probing)
        self.failed_probes = [0] * len(actors)
        self.gone: Set[int] = set()

    def _send(self, stop: Any) -> None:
        while self.queue and not stop.hit:
            free = [a for a in range(len(self.actors)) if a not in self.down and a not in self.gone]
            free = [a for a in free if self.load[a] < DEPTH]
            if not free:
                break
            a = min(free, key=self.load.__getitem__)
            i = self.queue.popleft()
            self.inflight[self.submit(self.actors[a], i)] = (i, a)
            self.load[a] += 1
        now = time.monotonic()
        for a, when in list(self.down.items()):
            if when is not None and when <= now:
                self.inflight[self.probe(self.actors[a])] = (-1, a)
                self.down[a] = None

    def _probed(self, ref: Any, a: int) -> None:
        try:
            self.ray.get(ref)
        except self.ray.exceptions.RayError:
            self.failed_probes[a] += 1
            if self.failed_probes[a] >= PROBES:
                self.gone.add(a)
                del self.down[a]
            else:
                self.down[a] = time.monotonic() + PROBE_EVERY
            return
        del self.down[a]
        self.failed_probes[a] = 0

    def _failed(self, i: int, a: int, error: BaseException, stats: RayStats, stop: Any) -> Optional[str]:
        """Batch ``i`` failed on actor ``a``: resend it (``None``) or give its failure reason."""
        if isinstance(error, self.ray.exceptions.RayActorError) and a not in self.down and a not in self.gone:
            self.down[a] = time.monotonic()  # probe it before sending it more
        self.attempts[i] += 1
        if self.attempts[i] > self.retries:
            return _why(error, self.attempts[i])
        if not stop.hit:
            stats.retries += 1
            self.queue.appendleft(i)  # first in line again: the output order stays close to the local one
        return None

    def run(self, stats: RayStats, stop: Any):
        """Yield ``(i, result dict)`` per finished batch, ``(i, reason)`` per batch that failed for good."""
        while (self.queue and not stop.hit) or any(i >= 0 for i, _ in self.inflight.values()):
            if self.queue and len(self.gone) == len(self.actors):
                while self.queue:
                    yield self.queue.popleft(), "no model actor is left on the Ray cluster (every one died)"
            self._send(stop)
            if not self.inflight:
                time.sleep(PROBE_EVERY / 5)
                continue
            done, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=PROBE_EVERY)
            for ref in done:
                i, a = self.inflight.pop(ref)
                if i < 0:
                    self._probed(ref, a)
                    continue
                self.load[a] -= 1
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayError as e:
                    reason = self._failed(i, a, e, stats, stop)
                    if reason is not None:
                        yield i, reason
                    continue
                stats.nodes.add(result["node"])
                yield i, result
        if stop.hit:
            raise KeyboardInterrupt


def _start_actors(ray: Any, pool: Pool, jobs: Sequence[Job], cfg: RayConfig, shipped: Any) -> List[Any]:
    """The actor pool, spread over the nodes, each loading the driver's model from ``shipped`` (its object
    ref, :func:`pack_model`); waits until every actor has loaded it (a model that fails to load fails here,
    before any photo). While actors cannot be placed (a cluster without room for them), a note says so
    every :data:`STARTUP_NOTE_AFTER` seconds."""
    spec = ActorSpec(pool.device, pool.threads, cfg.names)
    templates = [dataclasses.replace(j, loaded=None, method=None) for j in jobs]
    cls = ray.remote(_Explainer).options(
        num_cpus=pool.cpus,
        num_gpus=pool.gpus,
        max_restarts=-1,  # a dead actor process is started again; each batch's retries are bounded
        max_task_retries=0,  # resends are ours (_Scheduler): bounded, counted, and reported per photo
        scheduling_strategy="SPREAD",
    )
    actors = [cls.remote(spec, templates) for _ in range(pool.actors)]
    ready = [a.ready.remote({"model": shipped}) for a in actors]
    try:
        pending = ready
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=STARTUP_NOTE_AFTER)
            if pending and cfg.say is not None:
                cfg.say(
                    f"gradcam: waiting for {len(pending)} of {len(actors)} model actors to start "
                    f"({pool.cpus:g} CPU and {pool.gpus:g} GPU each; the Ray cluster has "
                    f"{ray.available_resources().get('CPU', 0):g} CPUs free)"
                )
        ray.get(ready)
    except ray.exceptions.RayError as e:
        for a in actors:
            ray.kill(a)
        raise RuntimeError(f"The model actors could not start: {_why(e, 1).split('(', 1)[1][:-1]}") from None
    return actors


def _failed_batch(row: Dict, jobs: Sequence[Job], reason: str) -> List[Dict]:
    """The outcomes of a batch that failed for good, and its failure rows in the index (from the driver)."""
    from .. import index

    outcomes = []
    for job, want in zip(jobs, row["wanted"]):
        items = [Item(p, s) for p, s, w in zip(row["paths"], row["stems"], want) if w]
        model, method = getattr(job.loaded, "name", ""), job.options.get("method", "")
        index.append(
            job.out, [index.failure_row(it.path, job.stem(it), reason, model, method) for it in items]
        )
        outcomes += [
            {
                "file": it.path,
                "stem": job.stem(it),
                "reason": reason,
                "text": f"gradcam: skipped {it.path}: {reason}",
            }
            for it in items
        ]
    return outcomes


def _stream(
    ray: Any,
    cfg: RayConfig,
    jobs: Sequence[Job],
    todo: List[Item],
    wanted: Sequence[Set[Item]],
    stats: RayStats,
):
    pool = plan_pool(ray.cluster_resources(), cfg.device, cfg.workers, cfg.gpus_per_worker, cfg.threads)
    if pool.note and cfg.say is not None:
        cfg.say(pool.note)
    bs = cfg.batch_size
    rows = [
        {
            "paths": [it.path for it in todo[i : i + bs]],
            "stems": [it.stem for it in todo[i : i + bs]],
            "wanted": [[it in w for it in todo[i : i + bs]] for w in wanted],
            "stamps": json.dumps([it.stamp for it in todo[i : i + bs]]),  # objects' listing stamps (resume)
        }
        for i in range(0, len(todo), bs)
    ]
    shipped = ray.put(pack_model(jobs[0].loaded))  # held until the end: restarted actors fetch it again
    actors = _start_actors(ray, pool, jobs, cfg, shipped)
    decode = ray.remote(_decode_row).options(num_cpus=DECODE_CPUS, max_retries=0)
    pre = ray.put(_preprocessor(jobs[0].loaded))

    box = {"model": shipped}

    def submit(actor: Any, i: int) -> Any:
        return actor.explain.remote(
            decode.remote(rows[i], pre, jobs[0].max_pixels, jobs[0].storage_options), box
        )

    try:
        with _Interrupt(cfg.say) as stop:
            scheduler = _Scheduler(ray, actors, submit, lambda a: a.ready.remote(box), len(rows), cfg.retries)
            for i, result in scheduler.run(stats, stop):
                if isinstance(result, str):
                    yield from _failed_batch(rows[i], jobs, result)
                else:
                    yield from json.loads(result["outcomes"])
    finally:
        for a in actors:
            ray.kill(a)
