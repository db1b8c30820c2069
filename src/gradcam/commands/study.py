"""``gradcam study bias|adversarial|failures|segmentation|trust|agent``: the paper's studies; parsing and printing only.

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
    "segmentation": "weakly-supervised segmentation (SEC) seeded by Grad-CAM, CAM and a random map (Sec. 5.2)",
    "trust": "do the explanation measures prefer the stronger of two models on images both get right? (Sec. 5.3)",
    "agent": "Grad-CAM of a small CNN policy's actions on MiniGrid pixels (needs the 'rl' extra)",
}


def register(subparsers) -> None:
    """Add the ``study`` subcommand and its three studies."""
    p = subparsers.add_parser(
        "study",
        help="rerun the paper's studies: " + ", ".join(STUDIES),
        description="Rerun one of the paper's studies and print its summary.",
    )
    sub = p.add_subparsers(dest="study", metavar="STUDY")
    for name, text in STUDIES.items():
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--quick", action="store_true", help="a small, fast variant (the test suite runs it)")
        s.add_argument(
            "--json", action="store_true", help="print one JSON object instead of the text summary"
        )
        s.add_argument("--out", metavar="DIR", help=f"write DIR/{name}.json and the figure DIR/{name}.png")
        s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
        s.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
        if name == "bias":
            s.add_argument(
                "--cache",
                metavar="DIR",
                help="cache of the trained models (default $GRADCAM_CACHE or ~/.cache/gradcam)",
            )
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
    if name in ("segmentation", "trust", "agent"):
        result, draw = _run_new(name, args)
    elif name == "bias":
        cfg = dataclasses.replace(bias.QUICK if args.quick else bias.BiasConfig(), seed=args.seed)
        from ..evaluation.synthetic import default_cache_dir

        cache = None if args.no_cache else (args.cache or default_cache_dir())
        result = bias.run(cfg, cache_dir=cache, log=_log)
        draw = figures.bias_figure
    elif name == "adversarial":
        cfg = dataclasses.replace(
            adversarial.QUICK if args.quick else adversarial.AdversarialConfig(), seed=args.seed
        )
        result = adversarial.run(cfg, log=_log)
        draw = figures.adversarial_figure
    else:
        result = failures.run(failures.QUICK if args.quick else failures.FailuresConfig(), log=_log)
        draw = figures.failures_figure
    summary = (
        result.summary() if hasattr(result, "summary") else {k: v for k, v in result.items() if k != "figure"}
    )
    summary["command"] = (
        f"gradcam study {name}"
        + (" --quick" if args.quick else "")
        + (f" --seed {args.seed}" if args.seed else "")
    )
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


def _run_new(name: str, args: argparse.Namespace):
    """The segmentation, trust and agent studies: (result, figure function)."""
    from ..studies import figures

    if name == "segmentation":
        from ..studies import segmentation

        seg = dataclasses.replace(
            segmentation.QUICK if args.quick else segmentation.SegmentationConfig(), seed=args.seed
        )
        return segmentation.run(seg, log=_log), figures.segmentation_figure
    if name == "trust":
        from ..studies import trust

        tr = dataclasses.replace(trust.QUICK if args.quick else trust.TrustConfig(), seed=args.seed)
        return trust.run(tr, log=_log), figures.trust_figure
    from ..studies import agent

    agent.require_rl()
    ag = dataclasses.replace(agent.QUICK if args.quick else agent.AgentConfig(), seed=args.seed)
    return agent.run(ag, log=_log), figures.agent_figure


def finding(name: str, summary: dict) -> str:
    """The study's finding in one sentence with its numbers (the text output's first line)."""
    if name == "bias":
        return (
            f"The biased model's Grad-CAM puts {summary['biased_cue_mass']:.3f} of its mass on the stamp and it "
            f"scores {summary['biased_test_accuracy']:.3f} on unbiased test images; the rebalanced model puts "
            f"{summary['debiased_cue_mass']:.3f} there and scores {summary['debiased_test_accuracy']:.3f}, the "
            f"attention-trained one {summary['attention_trained_cue_mass']:.3f} and "
            f"{summary['attention_trained_test_accuracy']:.3f}."
        )
    if name == "adversarial":
        return (
            f"Targeted PGD succeeds on {summary['attack_success_rate']:.3f} of the images, yet the original class's "
            f"Grad-CAM still points into the object's tile for {summary['pointing_adversarial_original_class']:.3f} of "
            f"them (clean: {summary['pointing_clean']:.3f}) against "
            f"{summary['pointing_adversarial_target_class']:.3f} for the adversarial class."
        )
    if name == "segmentation":
        from ..studies.segmentation import SOURCES, SegmentationResult

        miou = {s: summary[f"miou_{s}_seeds"] for s in SOURCES}
        return SegmentationResult(
            dict(miou, full=summary["miou_full_supervision"]), {}, {}, {}, summary["config"]
        ).sentence()
    if name == "trust":
        from ..studies.trust import sentence

        return sentence(summary)
    if name == "agent":
        from ..studies.agent import AgentResult

        return AgentResult(**{k: v for k, v in summary.items() if k != "command"}).sentence()
    return f"{summary['n_correct']} of {summary['n_photos']} photos right; the mistakes:"


def _print_text(name: str, summary: dict, result) -> None:
    print(finding(name, summary))
    if name == "failures":
        print(result.markdown())
    elif name == "trust":
        print(_trust_table(summary))


def _trust_table(summary: dict) -> str:
    """Per method and measure: stronger - weaker with its 95% interval; * where the stronger is preferred."""
    from ..studies.trust import MEASURES

    rows = ["| method | " + " | ".join(MEASURES) + " |", "| --- |" + " ---: |" * len(MEASURES)]
    for method, d in summary["differences"].items():
        rows.append(
            f"| {method} | "
            + " | ".join(
                f"{d[k]['difference']:+.3f} [{d[k]['ci95'][0]:+.3f}, {d[k]['ci95'][1]:+.3f}]"
                + (" *" if d[k]["stronger_preferred"] else "")
                for k in MEASURES
            )
            + " |"
        )
    return "\n".join(rows)
