"""A minimal headless-Chromium driver over the Chrome DevTools Protocol on a pipe (``--remote-debugging-pipe``).

No dependency beyond the standard library and a ``chromium`` binary: Chromium reads commands from fd 3 and
writes replies and events to fd 4, as NUL-terminated JSON messages. Used by tests/test_report_browser.py and
benchmarks/report_scale.py.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--mute-audio",
    "--remote-debugging-pipe",
]


def find_chromium() -> Optional[str]:
    """Path of a Chromium binary (``$CHROMIUM``, ``chromium``, ``chromium-browser``, ``google-chrome``) or None."""
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page attached; records console errors, exceptions and dialogs."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="gradcam-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def fds():  # runs in the child before exec: Chromium expects the pipe on fds 3 and 4
            r, w = os.dup(to_child_r), os.dup(from_child_w)  # above 4, so neither dup2 overwrites the other
            r, w = (os.dup(r) if r < 5 else r), (os.dup(w) if w < 5 else w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            preexec_fn=fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._replies: Dict[int, queue.Queue[dict]] = {}
        self._lock = threading.Lock()
        self.events: List[dict] = []
        self.errors: List[str] = []
        self.dialogs: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    # -- protocol ------------------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    q = self._replies.get(msg["id"])
                    if q is not None:
                        q.put(msg)
                else:
                    self._event(msg)

    def _event(self, msg: dict) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console: "
                + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            )
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description", d.get("text"))))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}")
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            threading.Thread(
                target=self.send,
                args=("Page.handleJavaScriptDialog",),
                kwargs={"session": True, "accept": True},
                daemon=True,
            ).start()

    def send(self, method: str, session: bool = False, **params) -> Dict[str, Any]:
        with self._lock:
            self._next += 1
            mid = self._next
            self._replies[mid] = q = queue.Queue()
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        try:
            reply = q.get(timeout=self.timeout)
        except queue.Empty:
            raise CDPError(f"no reply to {method} within {self.timeout} s") from None
        finally:
            self._replies.pop(mid, None)
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    # -- conveniences --------------------------------------------------------------------------------
    def wait_event(self, method: str, since: int = 0, timeout: Optional[float] = None) -> dict:
        end = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < end:
            for e in self.events[since:]:
                if e.get("method") == method:
                    return e
            time.sleep(0.01)
        raise CDPError(f"no {method} event within {timeout or self.timeout} s")

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        n = len(self.events)
        self.send("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired", since=n)

    def eval(self, expression: str, await_promise: bool = True) -> Any:
        """The JSON value of a JavaScript expression in the page (promises awaited)."""
        r = self.send(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=await_promise,
            returnByValue=True,
        )
        if "exceptionDetails" in r:
            raise CDPError(f"{expression[:80]}...: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self, path: str, full_page: bool = False) -> None:
        kw = {"captureBeyondViewport": True} if full_page else {}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            kw["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
        data = self.send("Page.captureScreenshot", session=True, format="png", **kw)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
