"""``gradcam explain PATH...``: top-5 predictions and a Grad-CAM overlay (and a JSON record) per photo.

This module only parses the options, builds :class:`gradcam.pipeline.Options`, calls
:func:`gradcam.pipeline.run` and prints (see docs/guides/pipeline.md for the folder job itself: decoding
and batching, atomic outputs, resume rules, the local and Ray executors). Exit code: 0 when every photo was
explained (or already was), 1 when any failed, 2 for a usage error, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional

from ..pipeline import (
    ConsoleReporter,
    Job,
    Options,
    Outcome,
    Progress,
    compute_items,
    explain_items,
    write_outcomes,
)
from ..pipeline.options import MAX_MEGAPIXELS, MAX_SIDE

__all__ = [
    "Job",
    "Outcome",
    "Progress",
    "compute_items",
    "explain_items",
    "options_from_args",
    "register",
    "run",
    "write_outcomes",
]  # the pipeline's names, kept importable from here


def register(subparsers) -> None:
    """Add the ``explain`` subcommand."""
    p = subparsers.add_parser(
        "explain",
        help="explain photos: top-5 predictions and where the model looked",
        description="Explain photos with a pretrained model: print the top-5 predictions and write a heatmap "
        "overlay PNG (and with --json a JSON record) per photo. PATH: image files and/or folders.",
    )
    _add_input_options(p)
    _add_model_options(p)
    _add_map_options(p)
    _add_output_options(p)
    _add_run_options(p)
    _add_engine_options(p)
    from .explain_volumes import add_options

    add_options(p)  # --window, --spacing, --size (volumes: explain_volumes.py)
    p.set_defaults(func=run)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """Add the photos to explain: PATH... and --demo."""
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="image files and/or folders (searched recursively)"
    )
    p.add_argument(
        "--demo", action="store_true", help="explain the photo shipped with gradcam (chelsea, a cat; CC0)"
    )


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """Add the model and what to explain: --model ... --quality."""
    p.add_argument(
        "--model",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (default, built in), torchvision:NAME, timm:NAME, a TorchScript file, "
        "or package.module:factory",
    )
    p.add_argument("--weights", metavar="FILE", help="state-dict file for --model (needed for timm:NAME)")
    p.add_argument(
        "--target",
        metavar="NAME|ID",
        help="explain this class (name, case-insensitive, or id) instead of the top prediction",
    )
    p.add_argument(
        "--top", type=int, default=None, metavar="K", help="explain the K best classes (default 1)"
    )
    p.add_argument(
        "--method",
        default="gradcam",
        help="gradcam (default), counterfactual, cam, or any registered method; several separated by "
        "commas (gradcam,eigencam,layercam) run in one pass over the photos. Outputs of a method "
        "other than gradcam carry its name: <stem>.<method>.png",
    )
    p.add_argument(
        "--quality",
        choices=("fast", "standard", "high"),
        default=None,
        help="a preset naming model, size and box threshold, chosen on the tuning photos: fast "
        "(efficientnet-lite0, the default), standard, high (see docs/guides/models.md)",
    )


def _add_map_options(p: argparse.ArgumentParser) -> None:
    """Add the box, input-size, normalisation and layer options."""
    p.add_argument(
        "--box-threshold",
        type=float,
        default=None,
        metavar="F",
        help="the box is around the largest segment of the map >= F x its maximum (default: the one "
        "measured for the model or preset, else 0.45; the Grad-CAM paper's rule is 0.15)",
    )
    p.add_argument(
        "--size",
        default=None,
        metavar="N|HxW",
        help="model input size: the short side for models that take any size, the exact input for "
        "fixed-size ones (default: what the model states)",
    )
    p.add_argument(
        "--crop",
        choices=("auto", "none", "resize"),
        default=None,
        help="how the photo fits the input: auto (default: the model's rule), none (whole photo, aspect "
        "kept), resize (whole photo resized to exactly --size)",
    )
    p.add_argument(
        "--mean", default=None, metavar="R,G,B", help="input normalisation mean (default: the model's)"
    )
    p.add_argument(
        "--std", default=None, metavar="R,G,B", help="input normalisation std (default: the model's)"
    )
    p.add_argument(
        "--box",
        choices=("largest", "peak", "all"),
        default="largest",
        help="which segment(s) above the threshold the box surrounds: largest (the Grad-CAM paper's "
        "rule, default), peak (the one holding the map's maximum) or all; stored as box_rule",
    )
    p.add_argument("--layer", default=None, help="layer to explain at (default: the model's own, or auto)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """Add where and how the outputs are written: --out ... --force."""
    p.add_argument(
        "--out",
        default="gradcam-out",
        metavar="DIR",
        help="output folder or object-storage URL (s3://bucket/results, gs://, az://; default: gradcam-out)",
    )
    p.add_argument(
        "--storage-options",
        default=None,
        metavar="JSON",
        help="fsspec options for URL inputs and --out, a JSON object (S3: "
        '\'{"endpoint_url": "http://host:9000"}\'); credentials also come from the store\'s environment '
        "(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap opacity in [0, 1] (default 0.5)")
    p.add_argument("--colormap", default="jet", help="matplotlib colormap (default jet)")
    p.add_argument("--colorbar", action="store_true", help="add a colour bar to the right of each overlay")
    p.add_argument("--json", action="store_true", help="also write a JSON record per photo")
    p.add_argument(
        "--neurons",
        metavar="FILE",
        help="channel names of the layer (JSON {channel: name}, a JSON list, "
        "or 'channel name' lines): print the top-5 and bottom-5 channels behind each decision",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="redo every photo (default: skip photos whose outputs are intact and were made "
        "from the same input, model and options)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=4,
        metavar="N",
        help="photos decoded and explained together (default 4; photos of equal size share a batch)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=2,
        metavar="N",
        help="local engine: batches decoded and preprocessed ahead in a background thread while one is "
        "explained and another written (default 2; 0: no background threads, one batch after the other)",
    )


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Add batching, device, report and input-limit options."""
    p.add_argument(
        "--device", default="cpu", help="torch device for the model: cpu (default), cuda, cuda:1, mps"
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="the forward pass under autocast at bf16 or fp16 (fp16: CUDA/MPS only); gradients and maps "
        "stay float32 (default fp32)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="at the end, write OUT/index.html (see 'gradcam report'; implies --json)",
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=MAX_SIDE,
        metavar="PX",
        help=f"cap the long side of the model input at PX pixels (default {MAX_SIDE}; bounds the "
        "memory of extreme aspect ratios; 0: no cap)",
    )
    p.add_argument(
        "--max-pixels",
        type=float,
        default=MAX_MEGAPIXELS,
        metavar="MP",
        help=f"refuse files whose header declares more than MP megapixels, before decoding "
        f"(default {MAX_MEGAPIXELS:g}; 0: no limit of ours)",
    )
    p.add_argument(
        "--maps",
        action="store_true",
        help="also save each photo's maps (K, h, w) at the model input's "
        "resolution, float32, as <stem>.maps.pt (torch.load(..., weights_only=True))",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this process; ray: a Ray Data pipeline (pip install 'gradcam[ray]')",
    )


def _add_engine_options(p: argparse.ArgumentParser) -> None:
    """Add the executor and perturbation options: --engine ... --masks."""
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="--engine ray: connect to this running Ray cluster "
        "(e.g. ray://head:10001; default: start a local Ray)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="--engine ray: model actors (default: one per CPU, "
        "leaving some for decoding; on GPUs see --gpus-per-worker)",
    )
    p.add_argument(
        "--gpus-per-worker",
        type=float,
        default=1.0,
        metavar="G",
        help="--engine ray with --device cuda: GPUs each model actor holds (default 1; 0.5: two actors "
        "share a GPU); the pool has (cluster GPUs / G) actors",
    )
    p.add_argument(
        "--perturbation-batch-size",
        type=int,
        metavar="N",
        help="scorecam, ablationcam, rise, occlusion: perturbed inputs per forward pass (bounds memory)",
    )
    p.add_argument("--masks", type=int, metavar="N", help="rise: number of random masks (default 2000)")


def options_from_args(args: argparse.Namespace) -> Options:
    """The typed :class:`gradcam.pipeline.Options` of parsed ``gradcam explain`` arguments."""
    method_options = {
        k: v
        for k, v in (("batch_size", args.perturbation_batch_size), ("n_masks", args.masks))
        if v is not None
    }
    return Options(
        paths=tuple(args.paths),
        out=args.out,
        model=args.model,
        weights=args.weights,
        method=args.method,
        target=args.target,
        top=args.top,
        layer=args.layer,
        quality=args.quality,
        box_threshold=args.box_threshold,
        box_rule=args.box,
        size=args.size,
        crop=args.crop,
        mean=args.mean,
        std=args.std,
        alpha=args.alpha,
        colormap=args.colormap,
        colorbar=bool(args.colorbar),
        json=bool(args.json),
        maps=bool(args.maps),
        report=bool(args.report),
        neurons=args.neurons,
        force=bool(args.force),
        batch_size=args.batch_size,
        prefetch=args.prefetch,
        device=args.device,
        precision=args.precision,
        max_side=args.max_side,
        max_megapixels=args.max_pixels,
        demo=bool(args.demo),
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        method_options=method_options,
        storage_options=parse_storage_options(getattr(args, "storage_options", None)),
    )


def parse_storage_options(text: Optional[str]) -> Dict[str, Any]:
    """``--storage-options JSON`` as a dict (``{}`` when not given); a clear ``ValueError`` otherwise."""
    if not text:
        return {}
    import json

    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(
            f'--storage-options must be a JSON object, e.g. \'{{"endpoint_url": "http://127.0.0.1:9000"}}\'; '
            f"cannot parse {text!r} ({e})."
        ) from None
    if not isinstance(value, dict):
        raise ValueError(f"--storage-options must be a JSON object ({{...}}); got {text!r}.")
    return value


def run(args: argparse.Namespace) -> int:
    """Explain every photo of ``args.paths`` (and the demo photo with ``--demo``); returns the exit code."""
    from ..cli import collect_from_here, started
    from ..medical.find import split_volumes
    from ..pipeline import run as run_pipeline

    vols, args.paths = split_volumes(args.paths, exclude=[args.out])  # NIfTI, DICOM, .npy: explain_volumes.py
    if vols:
        collect_from_here()  # the volume job reports no start of its own
        from .explain_volumes import run_volume_job, volume_options

        volume_options(args)  # a bad --window/--spacing/--size fails before any work
        if not args.paths and not args.demo:
            return run_volume_job(args, vols, [])
    reporter = ConsoleReporter(
        on_start=started
    )  # Ctrl-C from the start of the work: finish cleanly (exit 130)
    try:
        summary = run_pipeline(options_from_args(args), reporter)
    except KeyboardInterrupt:
        if not reporter.started:
            raise  # while starting up: the CLI says "interrupted"
        print(reporter.interrupted(), file=sys.stderr)
        return 130
    if summary.report:
        print(summary.report)
    if vols:
        return max(summary.exit_code, run_volume_job(args, vols, list(summary.failed)))
    return summary.exit_code
