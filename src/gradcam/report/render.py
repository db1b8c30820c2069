"""Write ``DIR/index.html``: one static, self-contained page for a results folder (no server, nothing fetched).

The page is the template ``template.html`` with four things filled in: the escaped title, the failure
list and the evaluation section (HTML built here with every input string escaped by :func:`html.escape`), and
the gallery's data as JSON in a ``<script type="application/json">`` block (``<``, ``>`` and ``&`` written as
``\\u003c``, ``\\u003e``, ``\\u0026``, so no file name can close the block). The page's own script builds the
gallery from that JSON with ``textContent`` and ``setAttribute`` only, one page of photos at a time; a
Content-Security-Policy allows only that script (by its SHA-256), so even injected markup could not run.
Thumbnails (JPEG, at most 320 px) are written to ``DIR/report-thumbs/`` and loaded lazily.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from html import escape
from typing import Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from .data import Photo, _index_rows, _record_files, read_folder
from .evaluation import evaluation_html
from .volumes import read_volumes, volumes_html

THUMBS = "report-thumbs"
THUMB_SIZE = (320, 240)
PAGE_SIZE = 50
_TEMPLATE = os.path.join(os.path.dirname(__file__), "template.html")


def json_for_script(data) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` characters."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def href(rel: str) -> str:
    """A relative URL for a '/'-separated path relative to the report (every special character %-encoded)."""
    return quote(rel, safe="/")


def _thumb(folder: str, rel: str) -> Optional[str]:
    """Write (or reuse) the thumbnail of ``folder/rel``; returns its path relative to ``folder``, or ``None``."""
    from PIL import Image

    src = os.path.join(folder, rel)
    name = hashlib.sha1(rel.encode("utf-8", "surrogatepass")).hexdigest()[:20] + ".jpg"
    dst = os.path.join(folder, THUMBS, name)
    try:
        if os.path.exists(dst) and os.path.getmtime(dst) >= os.path.getmtime(src):
            return f"{THUMBS}/{name}"
        with Image.open(src) as opened:
            opened.draft("RGB", THUMB_SIZE)
            im = opened.convert("RGB")
            im.thumbnail(THUMB_SIZE)
            tmp = dst + f".{os.getpid()}.tmp"
            im.save(tmp, "JPEG", quality=82)
        os.replace(tmp, dst)
    except (OSError, ValueError):
        return None
    return f"{THUMBS}/{name}"


def _source(folder: str, file: str) -> Optional[str]:
    """The original photo's path relative to ``folder`` when it can be found (absolute, or from the cwd, the
    folder or the folder's parent)."""
    for cand in (file, os.path.join(folder, file), os.path.join(folder, os.pardir, file)):
        if cand and os.path.isfile(cand):
            return os.path.relpath(os.path.abspath(cand), os.path.abspath(folder)).replace(os.sep, "/")
    return None


def _thumbnails(folder: str, rels: Sequence[str], workers: int) -> Dict[str, Optional[str]]:
    os.makedirs(os.path.join(folder, THUMBS), exist_ok=True)
    uniq = list(dict.fromkeys(rels))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return dict(zip(uniq, pool.map(lambda r: _thumb(folder, r), uniq)))


def gallery_data(folder: str, photos: List[Photo], thumbnails: bool = True, workers: int = 2) -> List[dict]:
    """The JSON rows the page's script renders: one per photo, its frames (method x class) side by side."""
    sources = {p.file: _source(folder, p.file) for p in photos} if thumbnails else {}
    rels = [f.overlay for p in photos for f in p.frames if f.overlay] + [s for s in sources.values() if s]
    thumbs = _thumbnails(folder, rels, workers) if thumbnails and rels else {}
    rows = []
    for p in sorted(photos, key=lambda p: p.file):
        src = sources.get(p.file)
        rows.append(
            {
                "n": p.file,
                "w": p.size[0] if p.size else None,
                "h": p.size[1] if p.size else None,
                "model": p.model,
                "p": [list(q) for q in p.predictions],
                "t": href(t) if src and (t := thumbs.get(src)) else None,
                "src": href(src) if src else None,
                "f": [
                    {
                        "m": f.method,
                        "c": f.cls,
                        "i": f.cid,
                        "pr": f.probability,
                        "s": f.score,
                        "pk": f.peak,
                        "bx": f.box,
                        "o": href(f.overlay) if f.overlay else None,
                        "t": href(thumbs.get(f.overlay) or f.overlay) if f.overlay else None,
                    }
                    for f in p.frames
                ],
            }
        )
    return rows


def failures_html(failed: Sequence[Tuple[str, str]]) -> str:
    """The list of files that failed, with their reasons (escaped)."""
    if not failed:
        return ""
    items = "".join(
        f'<li><code class="path">{escape(f)}</code>: <span class="reason">{escape(r)}</span></li>'
        for f, r in failed
    )
    return (
        f'<section id="failures"><h2>Failed files ({len(failed)})</h2>'
        f'<ul id="failure-list">{items}</ul></section>'
    )


def _fill(template: str, values: Dict[str, str]) -> str:
    """Replace every ``@@NAME@@`` in one pass (a value is never scanned again for placeholders)."""
    return re.sub(r"@@([A-Z_]+)@@", lambda m: values.get(m.group(1), m.group(0)), template)


def render_html(
    title: str,
    photos_json: List[dict],
    failed: Sequence[Tuple[str, str]],
    evaluation: Optional[dict],
    page_size: int = PAGE_SIZE,
    volumes: str = "",
) -> str:
    """The whole page as a string; ``volumes``: the volume section (:func:`.volumes.volumes_html`)."""
    with open(_TEMPLATE, encoding="utf-8") as f:
        template = f.read()
    found = re.search(r"<script>(.*?)</script>", template, re.S)
    assert found is not None, f"{_TEMPLATE} has no <script> block"
    script = found.group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    n_frames = sum(len(p["f"]) for p in photos_json)
    meta = (
        "evaluation"
        if evaluation and not photos_json and not failed and not volumes
        else (
            f"{len(photos_json)} photo{'s' if len(photos_json) != 1 else ''}, {n_frames} explanation"
            f"{'s' if n_frames != 1 else ''}, {len(failed)} failed"
        )
    )
    meta += f"; made {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
    data = {"page_size": page_size, "photos": photos_json}
    return _fill(
        template,
        {
            "SCRIPT_HASH": digest,
            "TITLE": escape(title),
            "META": escape(meta),
            "FAILURES": failures_html(failed),
            "VOLUMES": volumes,
            "PHOTOS_HIDDEN": "" if photos_json else "hidden",
            "EVALUATION": evaluation_html(evaluation) if evaluation else "",
            "DATA": json_for_script(data),
        },
    )


def write_report(
    folder: str, title: Optional[str] = None, thumbnails: bool = True, page_size: int = PAGE_SIZE
) -> str:
    """Write ``folder/index.html`` for a results folder (``gradcam explain --json`` and/or ``gradcam evaluate``
    output) and return its path. Overlay thumbnails go to ``folder/report-thumbs/``."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No such folder: {folder}. Give the --out folder of 'gradcam explain' or 'gradcam evaluate'."
        )
    photos, failed, evaluation = read_folder(folder)
    volumes = read_volumes(folder, list(_record_files(folder)), _index_rows(folder))
    if not photos and not failed and evaluation is None and not volumes:
        raise ValueError(
            f"Nothing to report in {folder}: no JSON records of 'gradcam explain --json', no "
            "failures.json and no evaluation.json. Run 'gradcam explain PHOTOS --out "
            f"{folder} --json' or 'gradcam evaluate --out {folder}' first."
        )
    rows = gallery_data(folder, photos, thumbnails=thumbnails)
    name = title or f"gradcam report: {os.path.basename(os.path.abspath(folder))}"
    page = render_html(name, rows, failed, evaluation, page_size, volumes_html(volumes))
    path = os.path.join(folder, "index.html")
    tmp = path + f".{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
    return path
