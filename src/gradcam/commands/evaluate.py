"""``gradcam evaluate``: measure explanation quality; one command, one table (Markdown + JSON)."""

from __future__ import annotations

import argparse
import json
import os
import sys


def register(subparsers) -> None:
    """Add the ``evaluate`` subcommand."""
    from ..evaluation.runner import BENCHMARKS, all_methods

    p = subparsers.add_parser(
        "evaluate",
        help="measure explanation quality (pointing game, localization, faithfulness, sanity) and print the table",
        description="Run the evaluation benchmarks over the registered methods and write a Markdown table and JSON.",
    )
    p.add_argument(
        "--benchmarks",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default: {','.join(BENCHMARKS)})",
    )
    p.add_argument(
        "--methods", default=",".join(all_methods()), help="comma-separated method names (default: all)"
    )
    p.add_argument("--quick", action="store_true", help="a small version that runs in under a minute")
    p.add_argument("--out", metavar="DIR", help="write DIR/evaluation.md and DIR/evaluation.json")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--cache",
        metavar="DIR",
        help="where the synthetic benchmark's trained CNNs are cached (default $GRADCAM_CACHE or ~/.cache/gradcam)",
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the synthetic CNNs instead of loading the committed weights (results then depend on the CPU)",
    )
    p.add_argument(
        "--split",
        type=_split,
        default="held_out",
        metavar="{held_out,tuning,all}",
        help="photos benchmark: which half of the annotated photos to measure (default held_out: the half no "
        "default was chosen on; tuning: the half the presets were chosen on; all: both)",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    p.set_defaults(func=run)


def _names(text: str, what: str) -> list:
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise ValueError(f"--{what} names nothing; give a comma-separated list.")
    return names


def _split(text: str) -> str:
    """``--split``: ``held_out`` (also ``heldout``, ``held-out``), ``tuning`` or ``all``."""
    name = {"heldout": "held_out", "held-out": "held_out"}.get(text, text)
    if name not in ("held_out", "tuning", "all"):
        raise argparse.ArgumentTypeError(f"choose held_out, tuning or all (got {text!r})")
    return name


def _command(args: argparse.Namespace) -> str:
    parts = ["gradcam evaluate", f"--benchmarks {args.benchmarks}"]
    if args.quick:
        parts.append("--quick")
    if getattr(args, "retrain", False):
        parts.append("--retrain")
    if args.seed:
        parts.append(f"--seed {args.seed}")
    if getattr(args, "split", "held_out") != "held_out":
        parts.append(f"--split {args.split}")
    if args.methods != ",".join(_default_methods()):
        parts.append(f"--methods {args.methods}")
    return " ".join(parts)  # --out, --cache and --threads do not change the results


def _known_methods() -> list:
    """Every registered method name (including the evaluation baselines), sorted."""
    from ..evaluation import baselines  # noqa: F401 - kept for older callers; every method is registered at import
    from ..methods import registry

    registry._load_optional()
    return sorted(registry.METHODS)


def _default_methods():
    from ..evaluation.runner import all_methods

    return all_methods()


def run(args: argparse.Namespace) -> int:
    """Run the benchmarks, print the Markdown table, and write it with the JSON under ``--out``."""
    import torch

    from ..cli import started

    started()  # Ctrl-C from here on: KeyboardInterrupt, exit 130 (see gradcam.cli.main)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace) -> int:
    from ..evaluation.runner import Settings
    from ..evaluation.runner import run as run_benchmarks

    benchmarks = _names(args.benchmarks, "benchmarks")
    unknown = [n for n in _names(args.methods, "methods") if n not in _known_methods()]
    if unknown:
        raise ValueError(
            f"--methods: unknown method{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(n) for n in unknown)}; known methods: {', '.join(_known_methods())}."
        )
    settings = Settings(
        quick=args.quick,
        seed=args.seed,
        cache_dir=args.cache,
        retrain=args.retrain,
        split=getattr(args, "split", "held_out"),
        methods=_names(args.methods, "methods"),
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    result = run_benchmarks(benchmarks, settings)
    command = _command(args)
    result["command"] = command
    md = f"<!-- made by: {command} -->\n\n" + result["markdown"] + "\n"
    print(result["markdown"])
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "evaluation.md"), "w", encoding="utf-8") as f:
            f.write(md)
        with open(os.path.join(args.out, "evaluation.json"), "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in result.items() if k != "markdown"}, f, indent=1)
        print(f"wrote {os.path.join(args.out, 'evaluation.md')} and evaluation.json", file=sys.stderr)
    return 0
