"""``gradcam serve`` in headless Chromium: upload a photo, click the second class, switch the method.

Skipped when no Chromium is installed, unless GRADCAM_REQUIRE_BROWSER is set (then a missing browser fails).
"""

from __future__ import annotations

import os
import time

import pytest
from cdp import Browser, find_chromium
from serving import ROOT, requires_app, serve

requires_app()
CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get("GRADCAM_REQUIRE_BROWSER"):
    raise RuntimeError(
        "GRADCAM_REQUIRE_BROWSER is set but no chromium binary was found (apt-get install chromium)."
    )
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")


def _wait(b, expression, timeout=90.0):
    """Wait until a JavaScript expression is truthy; return its value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = b.eval(expression)
        if value:
            return value
        time.sleep(0.1)
    status = b.eval("document.getElementById('status').textContent")
    raise AssertionError(f"timed out waiting for {expression}; status: {status}; errors: {b.errors}")


def _renders(b):
    return int(b.eval("document.body.dataset.renders || '0'"))


def _overlay(b, side="a"):
    return b.eval(f"document.getElementById('overlay-{side}').src")


def test_app_in_chromium(tmp_path):
    shot = os.environ.get("GRADCAM_SERVE_SCREENSHOT")  # docs: where to save a screenshot of the page
    with serve() as (base, _), Browser(CHROMIUM, width=1280, height=860, timeout=120) as b:
        b.open(base + "/")
        _wait(b, "document.body.dataset.ready === '1'")
        layers = b.eval("[...document.querySelectorAll('#layer option')].map(o => o.textContent)")
        assert "\u2605 _head_act (auto)" in layers and len(layers) > 10

        # Upload a photo through the file input, as a user's file dialog would.
        b.send("DOM.enable", session=True)
        root = b.send("DOM.getDocument", session=True)["root"]["nodeId"]
        node = b.send("DOM.querySelector", session=True, nodeId=root, selector="#file")["nodeId"]
        b.send(
            "DOM.setFileInputFiles", session=True, nodeId=node, files=[f"{ROOT}/src/gradcam/data/chelsea.png"]
        )
        _wait(b, "document.body.dataset.renders === '1'")
        classes = b.eval("[...document.querySelectorAll('#classes button')].map(x => x.textContent)")
        assert len(classes) == 5 and "cat" in classes[0]
        first = _overlay(b)
        assert first.startswith("data:image/png;base64,")
        # The peak and the box are drawn over the overlay, placed as fractions of the photo (451 x 300).
        record = b.eval("fetch(document.getElementById('json-a').href).then(r => r.json())")
        (px, py), (x0, y0, x1, y1) = record["explanations"][0]["peak"], record["explanations"][0]["box"]
        style = b.eval(
            "['peak-a', 'box-a'].map(i => { const e = document.getElementById(i); "
            "return [e.hidden, e.style.left, e.style.top, e.style.width, e.style.height]; })"
        )
        assert style[0][0] is False and style[0][1].endswith("%")
        assert abs(float(style[0][1][:-1]) - 100 * (px + 0.5) / 451) < 1e-3
        assert abs(float(style[0][2][:-1]) - 100 * (py + 0.5) / 300) < 1e-3
        expected = [100 * x0 / 451, 100 * y0 / 300, 100 * (x1 - x0) / 451, 100 * (y1 - y0) / 300]
        assert style[1][0] is False
        assert all(abs(float(v[:-1]) - e) < 1e-3 for v, e in zip(style[1][1:], expected)), (style, expected)

        # Click the second class: its map replaces the first one's (no new request: all five came at once).
        b.eval("document.querySelectorAll('#classes button')[1].click()")
        _wait(b, "document.body.dataset.renders === '2'")
        second = _overlay(b)
        assert second != first
        assert b.eval("document.querySelector('#classes button.active').dataset.k") == "1"
        assert b.eval("document.getElementById('caption-a').textContent").startswith(
            classes[1].rsplit(" ", 1)[0][:8]
        )

        # Switch the method: a new explanation of the same (second) class.
        b.eval(
            "{ const s = document.getElementById('method-a'); s.value = 'gradcam++'; "
            "s.dispatchEvent(new Event('change')); }"
        )
        _wait(b, "document.body.dataset.renders === '3'")
        third = _overlay(b)
        assert third not in (first, second)
        assert "gradcam++ at _head_act" in b.eval("document.getElementById('caption-a').textContent")

        # Compare side by side, with another opacity; downloads point at the overlay and a JSON record.
        b.eval(
            "{ const s = document.getElementById('method-b'); s.value = 'gradcam'; "
            "s.dispatchEvent(new Event('change')); }"
        )
        _wait(b, "document.body.dataset.renders === '4'")
        assert _overlay(b, "b") == second and not b.eval("document.getElementById('panel-b').hidden")
        b.eval(
            "{ const s = document.getElementById('alpha'); s.value = '0.4'; s.dispatchEvent(new Event('input')); }"
        )
        _wait(b, "document.body.dataset.renders === '5'")
        assert _overlay(b, "b") != second
        assert b.eval("document.getElementById('png-a').href") == _overlay(b, "a")
        record = b.eval("fetch(document.getElementById('json-a').href).then(r => r.json())")
        assert record["method"] == "gradcam++" and "overlay" not in record["explanations"][1]
        if shot:
            b.screenshot(shot)
        assert b.errors == [], b.errors
        assert b.dialogs == []
