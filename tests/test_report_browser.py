"""``gradcam report`` in a real browser: headless Chromium over the DevTools protocol (tests/cdp.py).

The page is opened over file:// and checked for: no console errors or exceptions, every thumbnail and every
overlay it links to loads, the class filter and the search hide the other photos, sorting by confidence,
the failed files are listed, and file and folder names made of markup show as text and run nothing.
Skipped only when no Chromium is installed (CI installs Debian's ``chromium``).
"""

from __future__ import annotations

import json
import os

import pytest
from cdp import Browser, find_chromium
from test_report import XSS_BROKEN, XSS_IMG, _record

from gradcam.report import write_report

CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get(
    "GRADCAM_REQUIRE_BROWSER"
):  # CI (.ci/run) installs it: never skip there
    raise RuntimeError(
        "GRADCAM_REQUIRE_BROWSER is set but no chromium binary was found (apt-get install chromium)."
    )
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")

XSS_SVG = '"><svg onload=alert(4)>'
XSS_DIR = '"><script>alert(2)<'  # with the file name below: "<dir>/script>.jpg", a folder name made of markup


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM, width=1280, height=900)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "res"
    _record(
        folder,
        "cat",
        "photos/cat.jpg",
        [("tabby", 281, 0.6), ("tiger cat", 282, 0.3)],
        [(255, 0, 0), (0, 0, 255)],
    )
    _record(folder, "cup", "photos/cup.jpg", [("espresso", 967, 0.9), ("cup", 968, 0.05)], [(0, 255, 0)])
    _record(folder, XSS_IMG[:-4], "photos/" + XSS_IMG, [("tabby", 281, 0.7)], [(10, 20, 30)])
    _record(folder, XSS_SVG, f"photos/{XSS_DIR}/script>.jpg", [("espresso", 967, 0.2)], [(40, 50, 60)])
    (folder / "failures.json").write_text(
        json.dumps(
            [
                {"file": "photos/" + XSS_BROKEN, "reason": "not an image"},
                {"file": "photos/empty.jpg", "reason": "empty file (0 bytes)"},
            ]
        )
    )
    return write_report(str(folder))


def _set(b, element_id, value, event):
    """Set a control's value and fire the event a user's change would."""
    b.eval(
        f"{{ const e = document.getElementById({json.dumps(element_id)}); e.value = {json.dumps(value)}; "
        f"e.dispatchEvent(new Event({json.dumps(event)})); }}"
    )


def _cards(b):
    return b.eval(
        "[...document.querySelectorAll('#gallery .card')].map(c => [c.dataset.file, c.dataset.cls])"
    )


def test_page_in_chromium(browser, report):
    b = browser
    b.open("file://" + report)
    assert b.eval("document.body.dataset.ready") == "1"
    assert sorted(_cards(b)) == sorted(
        [
            ["photos/cat.jpg", "tabby"],
            ["photos/cup.jpg", "espresso"],
            ["photos/" + XSS_IMG, "tabby"],
            [f"photos/{XSS_DIR}/script>.jpg", "espresso"],
        ]
    )

    # Every thumbnail loads, and so does every full-size overlay the page links to.
    widths = b.eval(
        "Promise.all([...document.querySelectorAll('#gallery img')].map(i => { i.loading = 'eager'; "
        "return i.decode().then(() => i.naturalWidth, () => 0); }))"
    )
    assert len(widths) == 5 and all(w > 0 for w in widths)
    linked = b.eval(
        "Promise.all([...document.querySelectorAll('#gallery figure a[href]')].map(a => new Promise(r => "
        "{ const i = new Image(); i.onload = () => r([a.getAttribute('href'), i.naturalWidth]); "
        "i.onerror = () => r([a.getAttribute('href'), 0]); i.src = a.href; })))"
    )
    assert len(linked) == 5 and all(w == 80 for _, w in linked), linked

    # Names made of markup are text: visible as typed, no element made from them, no dialog, nothing ran.
    text = b.eval("document.body.innerText")
    for name in ("photos/" + XSS_IMG, f"photos/{XSS_DIR}/script>.jpg", "photos/" + XSS_BROKEN):
        assert name in text
    assert b.eval("document.querySelectorAll('script').length") == 2
    assert b.eval("document.querySelectorAll('img[src=\"x\"], [onerror], [onload]').length") == 0
    assert b.eval("document.querySelectorAll('#gallery svg:not(.marks)').length") == 0

    # The failed files are listed with their reasons.
    failed = b.eval("[...document.querySelectorAll('#failure-list li')].map(li => li.textContent)")
    assert failed == ["photos/" + XSS_BROKEN + ": not an image", "photos/empty.jpg: empty file (0 bytes)"]

    # Clicking a class name shows only the photos predicted as that class; 'all' brings them back.
    b.eval(
        "[...document.querySelectorAll('#gallery button.cls')].find(x => x.dataset.cls === 'espresso').click()"
    )
    assert sorted(_cards(b)) == sorted(
        [["photos/cup.jpg", "espresso"], [f"photos/{XSS_DIR}/script>.jpg", "espresso"]]
    )
    assert b.eval("document.getElementById('class-filter').value") == "espresso"
    assert b.eval("document.getElementById('count').textContent") == "2 of 4 photos"
    _set(b, "class-filter", "", "change")
    assert len(_cards(b)) == 4

    # Search by file name, then sort by confidence.
    _set(b, "search", "ONERROR", "input")
    assert _cards(b) == [["photos/" + XSS_IMG, "tabby"]]
    _set(b, "search", "", "input")
    _set(b, "sort", "conf-desc", "change")
    assert [f for f, _ in _cards(b)] == [
        "photos/cup.jpg",
        "photos/" + XSS_IMG,
        "photos/cat.jpg",
        f"photos/{XSS_DIR}/script>.jpg",
    ]

    # Peak and box are drawn on demand, in the photo's pixel coordinates.
    assert b.eval("getComputedStyle(document.querySelector('svg.marks')).display") == "none"
    b.eval("document.getElementById('marks').click()")
    assert b.eval("getComputedStyle(document.querySelector('svg.marks')).display") == "block"
    assert b.eval(
        "[...document.querySelector('svg.marks rect').attributes].filter(a => "
        "['x','y','width','height'].includes(a.name)).map(a => a.name + '=' + a.value).sort()"
    ) == ["height=34", "width=45", "x=5", "y=6"]

    assert b.dialogs == []
    assert b.errors == []
