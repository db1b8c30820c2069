"""The ``gradcam`` command: argument parsing and printing only; the work is done by the library.

Each subcommand lives in ``gradcam.commands.<name>`` and provides ``register(subparsers)``, which adds
its parser and sets ``func`` to a function ``(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import threading
import traceback
from typing import List, Optional

COMMANDS = ("explain", "evaluate", "report", "study", "serve", "methods")


def version() -> str:
    """The installed gradcam version (package metadata; the source tree's ``__version__`` when not installed)."""
    try:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as _version

        return _version("gradcam")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        from . import __version__

        return __version__


#: Set by the console script and ``python -m gradcam`` (a process of its own): ``gradcam explain`` then runs its
#: start-up (imports, the model) without the cyclic garbage collector and :func:`started` freezes what start-up
#: made (see :func:`collect_from_here`).
FREEZE_AT_START = False
_GC_PAUSED = False


def pause_collector() -> None:
    """Start-up of ``gradcam explain`` in its own process: no cyclic garbage collection until
    :func:`collect_from_here` (imports make few cycles; each full collection would walk all of torch)."""
    global _GC_PAUSED
    if FREEZE_AT_START and gc.isenabled():
        gc.disable()
        _GC_PAUSED = True


def collect_from_here() -> None:
    """Start-up is over: freeze the objects alive now (torch's modules, the model: a few hundred thousand
    objects that live until the process ends) so that no later collection walks them again (a 0.1-0.3 s pause
    each, at exit too), and collect garbage as usual from here on."""
    global _GC_PAUSED
    if FREEZE_AT_START:
        gc.freeze()
    if _GC_PAUSED:
        gc.enable()
        _GC_PAUSED = False


def started() -> None:
    """Start-up is over: from now on Ctrl-C raises ``KeyboardInterrupt`` (the work loops handle it).

    Until then the console script (``gradcam_entry``) exits at once with code 130 on Ctrl-C. In the command's
    own process, the garbage collector takes over from here (:func:`collect_from_here`).
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        collect_from_here()


def build_parser(only: Optional[str] = None) -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand (``only``: just that one, when it is one).

    ``main`` passes the command named first on the line, so that ``gradcam explain`` does not import the
    other commands' modules (start-up time); ``gradcam --help`` and unknown commands get them all.
    """
    names = (only,) if only in COMMANDS else COMMANDS
    parser = argparse.ArgumentParser(prog="gradcam", description="Show where a PyTorch model looks.")
    parser.add_argument("--version", action="version", version=f"gradcam {version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an unexpected error (also GRADCAM_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in names:
        try:
            mod = importlib.import_module(f"gradcam.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"gradcam.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


USAGE_ERRORS = (
    ValueError,
    FileNotFoundError,
    ImportError,
)  # bad input or a missing extra: the message says the fix


def debug_enabled(argv: Optional[List[str]]) -> bool:
    """Whether ``--debug`` is among the arguments or ``GRADCAM_DEBUG`` is set to a true value."""
    env = os.environ.get("GRADCAM_DEBUG", "").strip().lower()
    return "--debug" in (argv or []) or env not in ("", "0", "false", "no", "off")


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``gradcam`` console script (see ``gradcam_entry``).

    Exit codes: 0 done; 1 some inputs failed, or an unexpected error (a bug: one line naming it, the
    traceback with ``--debug`` or ``GRADCAM_DEBUG=1``); 2 usage error: a bad argument or input (argparse's
    errors and the library's ``ValueError`` / ``FileNotFoundError`` / ``ImportError``, whose one line says
    what to fix); 130 interrupted (Ctrl-C).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled(argv)
    argv = [a for a in argv if a != "--debug"]
    try:
        parser = build_parser(argv[0] if argv else None)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        if args.command == "explain":
            pause_collector()  # until started(); imports and the model load make few cycles
        return int(args.func(args) or 0)
    except USAGE_ERRORS as e:
        if debug:
            traceback.print_exc()
        print(f"gradcam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # while starting up (imports, loading the model); the work loops say more
        print("gradcam: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - anything else is a bug, not the user's mistake
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (run with --debug or GRADCAM_DEBUG=1 for the traceback)"
        print(f"gradcam: internal error: {type(e).__name__}: {e}{hint}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
