"""Reporting the folder job's progress: the :class:`Reporter` hooks (silent by default) and the terminal's
:class:`ConsoleReporter` (a progress bar on stderr, a description per photo on stdout)."""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional

from .summary import Summary


class Reporter:
    """Hooks the folder job calls as it goes; this base class says nothing. Subclass to show progress.

    ``start(total)`` once the photos to do are known; ``within(done, total, what)`` inside one photo (a method
    with many forward passes); ``outcome(file, reason, text)`` per finished photo (``reason``: ``None`` unless it
    failed; ``text``: its printed description); ``note(text)`` for a notice (a method's cost, an engine
    fallback); ``finish(summary)`` at the end.
    """

    def start(self, total: int) -> None:
        """The work begins: ``total`` (photo, method) results to compute."""

    def within(self, done: int, total: int, what: str = "windows") -> None:
        """Progress inside the current photo."""

    def outcome(self, file: str, reason: Optional[str], text: str) -> None:
        """One photo is done (written) or failed."""

    def note(self, text: str) -> None:
        """A notice for the user."""

    def finish(self, summary: Summary) -> None:
        """The run is over."""


class Progress:
    """A one-line progress bar with rate and ETA on a terminal's stderr; silent when stderr is not a TTY.

    The bar is drawn for two photos or more; :meth:`within` adds progress inside the current photo
    (occlusion's windows), drawn even for a single photo.
    """

    def __init__(self, total: int, stream: Any = None, enabled: Optional[bool] = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.done = 0
        self.start = time.monotonic()
        self._shown = False
        self.detail = ""

    def clear(self) -> None:
        """Erase the bar (before other text is printed)."""
        if self.enabled and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    def within(self, done: int, total: int, what: str = "windows") -> None:
        """Progress inside the current photo: ``done`` of ``total`` steps (cleared when the photo is done)."""
        self.detail = f"  (this photo: {done}/{total} {what})" if done < total else ""
        self.draw()

    def draw(self) -> None:
        """Draw the bar: done/total, rate, ETA (and the progress inside the current photo)."""
        if not self.enabled or (self.total <= 1 and not self.detail):
            return
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else None
        width = 28
        filled = int(width * self.done / max(self.total, 1))
        eta_s = time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "--:--:--"
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  "
            f"{rate:.1f} img/s  ETA {eta_s}{self.detail}\033[K"
        )
        self.stream.flush()
        self._shown = True

    def update(self, n: int = 1) -> None:
        """``n`` more photos done."""
        self.done += n
        self.detail = ""
        self.draw()


class ConsoleReporter(Reporter):
    """The terminal's view of a run: a :class:`Progress` bar, each photo's description on stdout (not with
    ``quiet``), failures and notices on stderr, the closing summary on stderr. ``on_start``: called when the
    work begins (the CLI lets Ctrl-C interrupt from then on)."""

    def __init__(self, quiet: bool = False, on_start: Optional[Callable[[], None]] = None):
        self.quiet = quiet
        self.on_start = on_start
        self.progress = Progress(0, enabled=False)
        self.failures = 0
        self.started = False  # True once the work has begun (before: start-up, loading the model)

    def say(self, text: str, err: bool = False) -> None:
        """Print ``text`` (stdout, or stderr with ``err``) around the progress bar."""
        if self.quiet and not err:
            return
        self.progress.clear()
        print(text, file=sys.stderr if err else sys.stdout, flush=True)
        self.progress.draw()

    def start(self, total: int) -> None:
        self.progress = Progress(total)
        self.started = True
        if self.on_start is not None:
            self.on_start()
        self.progress.draw()

    def within(self, done: int, total: int, what: str = "windows") -> None:
        self.progress.within(done, total, what)

    def outcome(self, file: str, reason: Optional[str], text: str) -> None:
        self.failures += reason is not None
        self.say(text, err=reason is not None)
        self.progress.update()

    def note(self, text: str) -> None:
        self.say(text, err=True)

    def interrupted(self) -> str:
        """The message after Ctrl-C (the bar cleared)."""
        self.progress.clear()
        return (
            f"gradcam: interrupted after {self.progress.done - self.failures} image(s); run the same command "
            "again to continue (finished outputs are kept)."
        )

    def finish(self, summary: Summary) -> None:
        self.progress.clear()
        print(summary.text(), file=sys.stderr)
        for path, reason in summary.failed:
            print(f"  failed: {path}: {reason}", file=sys.stderr)
