"""Explain a whole dataset from Python: :func:`explain_dataset`, the folder job of ``gradcam explain`` on the
local executor or on a Ray cluster, returning a :class:`Summary`.

The job itself (find -> decode -> batch -> explain -> write -> resume record -> index) is
:mod:`gradcam.pipeline`; the Ray executor is :mod:`gradcam.pipeline.raydata` (the ``[ray]`` extra,
``pip install -e ".[ray]"``). Same batches, same preprocessing and the same thread count give the same
numbers on both executors. It never starts a remote cluster: ``address`` connects to a running one;
without it a local Ray starts with this machine's CPUs and stops at the end.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence, Union

from .pipeline import ConsoleReporter, Options, Summary
from .pipeline import run as run_pipeline
from .pipeline.options import ENGINES, split_paths
from .pipeline.raydata import DECODE_CPUS, Pool, plan_pool, pool_shape, run_ray, start_ray

__all__ = [
    "DECODE_CPUS",
    "ENGINES",
    "Pool",
    "Summary",
    "explain_dataset",
    "plan_pool",
    "pool_shape",
    "run_ray",
    "start_ray",
]


def explain_dataset(
    paths: Union[str, os.PathLike, Sequence[str]],
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
    quality: Optional[str] = None,
    size=None,
    crop: Optional[str] = None,
    mean=None,
    std=None,
    box_threshold: Optional[float] = None,
    gpus_per_worker: float = 1.0,
    method_options: Optional[Dict[str, int]] = None,
    storage_options: Optional[Dict[str, Any]] = None,
    precision: str = "fp32",
) -> Summary:
    """Explain every photo under ``paths`` into ``out`` with ``engine`` ("local" or "ray"); see the module doc.

    Outputs are those of ``gradcam explain``: ``out/<stem>.png`` (``.topK.png`` for ``top_k`` > 1), with
    ``json_records`` ``out/<stem>.json``, with ``maps`` ``out/<stem>.maps.pt``, and the results index
    ``out/index.parquet`` (or ``.jsonl``). ``method`` may name several methods separated by commas (one pass;
    outputs of a method other than gradcam are ``<stem>.<method>.png``). ``address``, ``workers``, ``threads``
    (torch threads per actor) and ``gpus_per_worker`` (GPUs per actor, fractional allowed) are the Ray engine's.
    ``verbose`` prints each photo's description as the CLI does (failures and the summary always go to stderr).
    The other keywords are ``gradcam explain``'s options of the same names (``method_options``: ``{"batch_size": N,
    "n_masks": N}``); ``paths``/``out`` may be URLs (``s3://b/in``), ``storage_options`` fsspec's options for them.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    options = Options(
        paths=split_paths(paths),
        out=os.fspath(out),
        model=model,
        weights=weights,
        method=method,
        target=None if target is None else str(target),
        top=None if target is not None else top_k,
        layer=layer,
        quality=quality,
        size=size,
        crop=crop,
        mean=mean,
        std=std,
        box_threshold=box_threshold,
        alpha=alpha,
        colormap=colormap,
        colorbar=colorbar,
        json=json_records,
        maps=maps,
        force=force,
        batch_size=batch_size,
        device=device,
        precision=precision,
        engine=engine,
        address=address,
        workers=workers,
        threads=threads,
        gpus_per_worker=gpus_per_worker,
        method_options=dict(method_options or {}),
        storage_options=dict(storage_options or {}),
    )
    return _run_reported(options, verbose)


def _run_reported(options: Options, verbose: bool) -> Summary:
    """Run the pipeline with a console reporter; an interrupt after the start says what is kept."""
    reporter = ConsoleReporter(quiet=not verbose)
    try:
        return run_pipeline(options, reporter)
    except KeyboardInterrupt:
        if not reporter.started:
            raise
        print(reporter.interrupted(), file=__import__("sys").stderr)
        raise KeyboardInterrupt(
            "explain_dataset was interrupted; finished outputs and index rows are kept"
        ) from None
