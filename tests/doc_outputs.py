"""Command outputs quoted in the documentation, generated from the program so that they cannot drift.

A quoted output in README.md or any page under docs/ sits between two markers::

    <!-- output: gradcam explain --demo -->
    ```text
    ...what the command prints (stdout and stderr, in order)...
    ```
    <!-- end output -->

A JSON file a command writes is quoted the same way, with ``<!-- output: FILE written by gradcam ... -->``
and a ``json`` block: one line per top-level key, numbers rounded to 4 decimals.

``tests/test_doc_outputs.py`` runs every such command (``gradcam ...`` as ``python -m gradcam ...``, in an
empty temporary folder prepared by :data:`SETUPS` where the command needs input files) and fails when a
block differs from what the program prints. After a deliberate change of the program's output, rewrite the
blocks with::

    python tests/doc_outputs.py --update
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"(?P<head><!-- output: (?P<cmd>.+?) -->\n```(?:text|json)\n)(?P<body>.*?)(?P<tail>```\n<!-- end output -->)",
    re.S,
)
RECORD = re.compile(r"^(?P<file>\S+) written by (?P<cmd>gradcam .+)$")


def _bad_files(folder: Path) -> None:
    """A folder of photos, four of them unreadable, for the failure-list example of the CLI guide."""
    photos = folder / "photos"
    (photos / "sub").mkdir(parents=True)
    data = (ROOT / "src" / "gradcam" / "data" / "chelsea.png").read_bytes()
    (photos / "cat.png").write_bytes(data)
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.png").write_text("not a picture\n")
    (photos / "sub" / "cut.png").write_bytes(data[: len(data) // 2])
    os.symlink(photos / "missing.jpg", photos / "dangling.jpg")


#: Input files a command needs, made in its temporary working folder before it runs.
SETUPS: Dict[str, Callable[[Path], None]] = {
    "gradcam explain photos/ --out out": _bad_files,
}


def doc_files() -> List[Path]:
    """README.md and every Markdown page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(text: str) -> Iterator[Tuple[str, str]]:
    """(command, quoted output) of every marked block of one file."""
    for m in BLOCK.finditer(text):
        yield m.group("cmd"), m.group("body")


def _record(path: Path) -> str:
    """A JSON record, one line per top-level key, numbers to 4 decimals (the last digits of a float32 score
    may differ between CPUs); paths inside the repository made relative to src/."""
    record = json.loads(path.read_text(encoding="utf-8"), parse_float=lambda v: round(float(v), 4))
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items()]
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    return text.replace(json.dumps(str(ROOT / "src"))[1:-1] + "/", "")


def run(cmd: str) -> str:
    """What ``cmd`` (a ``gradcam ...`` command line) prints, stdout and stderr in order, ending in a newline;
    for ``FILE written by gradcam ...``, the JSON file the command wrote (see :func:`_record`)."""
    record = RECORD.match(cmd)
    if record:
        cmd = record.group("cmd")
    argv = shlex.split(cmd)
    if argv[0] != "gradcam":
        raise ValueError(f"quoted outputs must come from a gradcam command, not {cmd!r}")
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("GRADCAM_DEBUG", None)
    with tempfile.TemporaryDirectory() as tmp:
        if cmd in SETUPS:
            SETUPS[cmd](Path(tmp))
        proc = subprocess.run(
            [sys.executable, "-m", "gradcam", *argv[1:]],
            cwd=tmp,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        out = proc.stdout.replace(os.path.realpath(tmp) + os.sep, "").replace(tmp + os.sep, "")
        if record:
            return _record(Path(tmp) / record.group("file"))
    return out if out.endswith("\n") else out + "\n"


def update() -> List[Path]:
    """Rewrite every marked block with the output of its command; returns the files that changed."""
    cache: Dict[str, str] = {}
    changed = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")

        def fill(m: re.Match) -> str:
            cmd = m.group("cmd")
            if cmd not in cache:
                cache[cmd] = run(cmd)
            return m.group("head") + cache[cmd] + m.group("tail")

        new = BLOCK.sub(fill, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/doc_outputs.py --update")
    for p in update():
        print(f"updated {p.relative_to(ROOT)}")
