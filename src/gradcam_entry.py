"""The ``gradcam`` console script's entry point, outside the ``gradcam`` package on purpose.

Importing ``gradcam`` imports torch, and the command then loads a model: seconds in which a Ctrl-C
would otherwise print a traceback from whichever library was starting (or, caught by a library's bare
``except``, surface later as an unrelated error). Until the command says start-up is over
(:func:`gradcam.cli.started`), Ctrl-C exits at once with code 130 and one line; nothing has been
written by then. After it, Ctrl-C raises ``KeyboardInterrupt`` as usual and the work loops finish
cleanly (exit 130, finished outputs kept).
"""

import gc
import os
import signal
import sys


def interrupted_while_starting(signum=None, frame=None) -> None:
    """SIGINT handler during start-up: one line on stderr, exit 130 (no traceback, no cleanup needed)."""
    try:
        sys.stderr.write("gradcam: interrupted while starting\n")
        sys.stderr.flush()
    finally:
        os._exit(130)


def main() -> int:
    """Run ``gradcam.cli.main`` with the start-up SIGINT handler installed."""
    signal.signal(signal.SIGINT, interrupted_while_starting)
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    paused = bool(words) and words[0] == "explain" and gc.isenabled()
    if paused:  # no cyclic collection while torch is imported and the model loaded (see gradcam.cli)
        gc.disable()
    import gradcam.cli

    gradcam.cli.FREEZE_AT_START = True  # a process of its own (see gradcam.cli.started)
    gradcam.cli._GC_PAUSED = paused
    return gradcam.cli.main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
