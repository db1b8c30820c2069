"""Start ``gradcam serve`` as a subprocess on a free port (for tests/test_serve*.py); stop it afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator, List, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def requires_app() -> None:
    """Skip the calling module unless the ``app`` extra is installed."""
    for mod in ("starlette", "uvicorn", "multipart"):
        pytest.importorskip(mod, reason="needs the 'app' extra: pip install 'gradcam[app]'")


@contextmanager
def serve(*args: str, timeout: float = 180.0) -> Iterator[Tuple[str, subprocess.Popen]]:
    """Run ``gradcam serve --port 0 ARGS``; yield (base URL without a trailing slash, the process)."""
    env = dict(
        os.environ,
        PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradcam", "serve", "--port", "0", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line, end = "", time.monotonic() + timeout
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"gradcam serve exited with {proc.returncode}: {proc.stderr.read()}")
            m = re.search(r"on (http://[^/\s]+)/", line)
            if m:
                yield m.group(1), proc
                break
        else:
            raise RuntimeError("gradcam serve printed no URL within the timeout")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def multipart(fields: List[Tuple[str, str]], file: bytes, filename: str = "photo.png") -> Tuple[bytes, str]:
    """A multipart/form-data body with ``fields`` and the file as field ``image``; returns (body, content type)."""
    boundary = "gradcamtestboundary7d3f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + file
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
