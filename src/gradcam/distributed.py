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
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
    ``json_records`` ``out/<stem>.json``, and the results index ``out/index.parquet`` (or ``.jsonl``).
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
        json=json_records, neurons=None, force=force, batch_size=batch_size, device=device,
        engine=engine, address=address, workers=workers, threads=threads, quiet=not verbose,
    )
    from .commands import explain as cmd

    cmd.run(args)
    return args.summary


# -- the per-batch function ------------------------------------------------------------------------------

def load_chunk(items: Sequence[Item], loaded=None) -> List[Tuple[object, Optional[str], object]]:
    """Decode (and with ``loaded``, preprocess) a batch: per item (PIL image or None, failure reason, x or None)."""
    from .commands.explain import _load

    out = []
    for it in items:
        img, reason = _load(it)
        x = loaded.preprocess(img) if (img is not None and loaded is not None) else None
        out.append((img, reason, x))
    return out


def explain_chunk(items: Sequence[Item], decoded, args: argparse.Namespace, k: int, loaded, method,
                  target: Optional[int]) -> List[Dict]:
    """Explain one decoded batch and write its outputs; returns one outcome dict per item, in order.

    Outcome: ``stem``, ``file``, ``status`` ("explained" or "failed"), ``reason``, ``text`` (the CLI's
    description). Writes the overlay PNG(s), the JSON record (``args.json``) and the batch's index rows.
    """
    from . import index
    from .api import explain_batch
    from .commands.explain import _describe, _outputs, _png_bytes
    from .io import atomic_write

    outcomes: List[Optional[Dict]] = [None] * len(items)
    rows: List[Dict] = []
    good = [i for i, (img, _, _) in enumerate(decoded) if img is not None]
    for i, (img, reason, _) in enumerate(decoded):
        if img is None:
            outcomes[i] = {"stem": items[i].stem, "file": items[i].path, "status": "failed", "reason": reason,
                           "text": f"gradcam: skipped {items[i].path}: {reason}"}
            rows.append(index.failure_row(items[i].path, items[i].stem, reason, loaded.name, args.method))
    inputs = [decoded[i][2] for i in good]
    results = explain_batch([decoded[i][0] for i in good], loaded, method, target, k,
                            [items[i].path for i in good], inputs=None if any(x is None for x in inputs) else inputs)
    for i, res in zip(good, results):
        it = items[i]
        pngs, js = _outputs(args.out, it.stem, k, args.json)
        for r, png in enumerate(pngs):
            atomic_write(png, _png_bytes(res.overlay(r, alpha=args.alpha, colormap=args.colormap,
                                                     colorbar=args.colorbar)))
        if js:
            res.extra["overlays"] = [os.path.basename(p) for p in pngs]
            atomic_write(js, (json.dumps(res.to_dict(), indent=1) + "\n").encode())
        rows += index.result_rows(res, it.stem, pngs, js)
        outcomes[i] = {"stem": it.stem, "file": it.path, "status": "explained", "reason": None,
                       "text": _describe(it, res, pngs, getattr(args, "neuron_names", None))}
    index.append(args.out, rows)
    return outcomes  # type: ignore[return-value]


# -- the Ray engine ---------------------------------------------------------------------------------------

def _decode_row(row: Dict, loaded) -> Dict:
    """Ray Data task: read, decode and preprocess one batch of photos."""
    items = [Item(p, s) for p, s in zip(row["paths"], row["stems"])]
    decoded = load_chunk(items, loaded)
    # Photos travel to the actor as pickled (PIL image, reason, x) triples in one binary column.
    return {"paths": row["paths"], "stems": row["stems"], "decoded": pickle.dumps(decoded, protocol=5)}


class _Explainer:
    """Ray Data actor: the model loaded once; explains batches and writes their outputs."""

    def __init__(self, args: argparse.Namespace, k: int, threads: int):
        import torch

        from .api import get_method, resolve_target
        from .models import load_model

        torch.set_num_threads(threads)
        self.args, self.k = args, k
        self.loaded = load_model(args.model, weights=args.weights, device=args.device)
        self.method = get_method(self.loaded, args.method, args.layer)
        self.target = resolve_target(self.loaded, args.target)

    def __call__(self, row: Dict) -> Dict:
        items = [Item(p, s) for p, s in zip(row["paths"], row["stems"])]
        decoded = pickle.loads(row["decoded"])
        outcomes = explain_chunk(items, decoded, self.args, self.k, self.loaded, self.method, self.target)
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
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
    return ray, True


def pool_shape(cluster_cpus: float, workers: Optional[int], gpu: bool) -> Tuple[int, float, int]:
    """(actors, CPUs per actor, torch threads per actor) for a cluster with ``cluster_cpus`` CPUs.

    Default: one actor per CPU, keeping ``DECODE_CPUS`` + 0.25 CPUs free for the decode tasks (an actor
    pool that takes every CPU starves them and hangs); with ``workers`` actors that would not leave them
    free, each actor asks for a fraction of a CPU instead.
    """
    free = max(cluster_cpus - DECODE_CPUS - 0.25, 0.25)
    n = workers if workers is not None else max(1, int(free))
    if n < 1:
        raise ValueError(f"--workers must be at least 1; got {n}.")
    per = 1.0 if gpu else min(1.0, free / n)
    return n, per, max(1, int(round(per)))


def run_ray(args: argparse.Namespace, todo: List[Item], k: int, loaded, on_outcome) -> None:
    """Explain ``todo`` on Ray in batches of ``args.batch_size``; ``on_outcome(dict)`` per photo, in order seen."""
    ray, started = _start_ray(getattr(args, "address", None))
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        gpu = str(args.device).startswith("cuda")
        n, per, threads = pool_shape(ray.cluster_resources().get("CPU", 1.0), getattr(args, "workers", None), gpu)
        threads = getattr(args, "threads", None) or threads
        bs = args.batch_size
        rows = [{"paths": [it.path for it in todo[i:i + bs]], "stems": [it.stem for it in todo[i:i + bs]]}
                for i in range(0, len(todo), bs)]
        if not rows:
            return
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        ds = ds.map(_decode_row, fn_kwargs={"loaded": _preprocessor(loaded)}, num_cpus=DECODE_CPUS)
        ds = ds.map(_Explainer, fn_constructor_kwargs={"args": _picklable(args), "k": k, "threads": threads},
                    concurrency=n, num_cpus=per, num_gpus=1 if gpu else 0)
        for row in ds.iter_rows():
            for outcome in json.loads(row["outcomes"]):
                on_outcome(outcome)
    finally:
        if started:
            ray.shutdown()


def _picklable(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{k: v for k, v in vars(args).items() if k not in ("func", "summary")})
