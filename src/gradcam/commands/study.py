"""``gradcam study bias|adversarial|failures``: the paper's studies; parsing and printing only.

The work is done by :mod:`gradcam.studies`. ``--json`` prints one JSON object on stdout (progress goes to
stderr); ``--out DIR`` also writes ``DIR/<study>.json``, ``DIR/<study>.png`` (and ``failures.md``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

STUDIES = {
    "bias": "dataset bias: a spurious stamp, then a rebalanced and an attention-trained model (Sec. 6.3)",
    "adversarial": "targeted FGSM and PGD on the embedded model; Grad-CAM before and after (Sec. 6.2)",
    "failures": "every photo the embedded model gets wrong: predicted vs true class maps (Sec. 6.1)",
}


def register(subparsers) -> None:
    """Add the ``study`` subcommand and its three studies."""
    p = subparsers.add_parser("study", help="rerun the paper's studies: bias, adversarial, failures",
                              description="Rerun one of the paper's studies and print its summary.")
    sub = p.add_subparsers(dest="study", metavar="STUDY")
    for name, text in STUDIES.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--quick", action="store_true", help="a small, fast variant (the test suite runs it)")
        s.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
        s.add_argument("--out", metavar="DIR", help=f"write DIR/{name}.json and the figure DIR/{name}.png")
        s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
        s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
        if name == "bias":
            s.add_argument("--cache", metavar="DIR", help="cache of the trained models (default $GRADCAM_CACHE "
                           "or ~/.cache/gradcam)")
            s.add_argument("--no-cache", action="store_true", help="always train, store nothing")
        s.set_defaults(func=run)
    p.set_defaults(func=lambda args: _no_study(p))


def _no_study(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    print(f"\ngradcam: error: name a study: {', '.join(STUDIES)}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run the study named in ``args.study`` and print its summary."""
    import torch

    threads = torch.get_num_threads()
    if args.threads:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1; got {args.threads}.")
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads)


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from ..studies import adversarial, bias, failures, figures

    name = args.study
    cfg: Any  # each study has its own config and result types
    result: Any
    if name == "bias":
        cfg = dataclasses.replace(bias.QUICK if args.quick else bias.BiasConfig(), seed=args.seed)
        from ..evaluation.synthetic import default_cache_dir

        cache = None if args.no_cache else (args.cache or default_cache_dir())
        result = bias.run(cfg, cache_dir=cache, log=_log)
        draw = figures.bias_figure
    elif name == "adversarial":
        cfg = dataclasses.replace(adversarial.QUICK if args.quick else adversarial.AdversarialConfig(), seed=args.seed)
        result = adversarial.run(cfg, log=_log)
        draw = figures.adversarial_figure
    else:
        result = failures.run(failures.QUICK if args.quick else failures.FailuresConfig(), log=_log)
        draw = figures.failures_figure
    summary = result.summary()
    summary["command"] = f"gradcam study {name}" + (" --quick" if args.quick else "") + (
        f" --seed {args.seed}" if args.seed else "")
    if args.json:
        print(json.dumps(summary))
    else:
        _print_text(name, summary, result)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
        written = [os.path.join(args.out, f"{name}.json")]
        if name != "failures" or result.failures:
            written.append(draw(result, os.path.join(args.out, f"{name}.png")))
        if name == "failures":
            with open(os.path.join(args.out, "failures.md"), "w", encoding="utf-8") as f:
                f.write(result.markdown() + "\n")
            written.append(os.path.join(args.out, "failures.md"))
        _log(f"wrote {', '.join(written)}")
    return 0


def _print_text(name: str, summary: dict, result) -> None:
    if name == "failures":
        print(f"{summary['n_correct']}/{summary['n_photos']} photos right; the mistakes:")
        print(result.markdown())
        return
    for key, value in summary.items():
        if isinstance(value, float):
            print(f"{key:40s} {value:.4f}")
    if name == "bias":
        print("object mass (stamped test images):", json.dumps(summary["object_mass"]))
    else:
        for attack, numbers in summary["attacks"].items():
            print(f"{attack}: {json.dumps(numbers)}")
