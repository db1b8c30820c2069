"""``gradcam serve`` over HTTP: the JSON API, the token, upload limits, and 20 concurrent requests."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from serving import ROOT, multipart, peak_rss_mb, requires_app, serve

requires_app()


# Requests go to 127.0.0.1 directly, whatever proxy the environment names.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(url, data=None, headers=None, method=None):
    """(status, parsed JSON or bytes) of one request (never raises on HTTP errors)."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with OPENER.open(req, timeout=120) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("content-type", "")
    return status, (json.loads(body) if "json" in ctype else body)


def _explain(base, photo: bytes, **fields):
    body, ctype = multipart([(k, str(v)) for k, v in fields.items()], photo)
    return _request(base + "/api/explain", body, {"Content-Type": ctype})


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking RGB PNG whose header declares width x height, with almost no pixel data (~100 bytes)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def server():
    with serve() as (base, proc):
        yield base, proc


def _photos():
    cat = Image.open(f"{ROOT}/src/gradcam/data/chelsea.png").convert("RGB")
    rng = np.random.default_rng(0)
    noise = Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8))
    return [
        _png(cat),
        _png(cat.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        _png(cat.resize((200, 133))),
        _png(noise),
    ]


def test_info_and_explain(server):
    base, _ = server
    status, info = _request(base + "/api/info")
    assert status == 200 and info["model"] == "efficientnet-lite0"
    assert info["auto_layer"] == "_head_act" and {"name": "_head_act", "auto": True} in info["layers"]
    assert sum(layer["auto"] for layer in info["layers"]) == 1 and len(info["layers"]) > 10
    assert {"gradcam", "gradcam++", "scorecam"} <= set(info["methods"])
    status, page = _request(base + "/")
    assert status == 200 and b"gradcam serve" in page

    cat = _request(base + "/api/demo/chelsea")[1]
    status, res = _explain(base, cat, method="gradcam", alpha=0.3, overlay_side=128)
    assert status == 200, res
    assert res["size"] == [451, 300] and len(res["predictions"]) == 5 and len(res["explanations"]) == 5
    assert res["predictions"][0]["class"] in ("Egyptian cat", "tabby", "tiger cat")
    ex = res["explanations"][0]
    assert ex["id"] == res["predictions"][0]["id"] and 0 <= ex["peak"][0] < 451 and 0 <= ex["peak"][1] < 300
    x0, y0, x1, y1 = ex["box"]
    assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300
    import base64

    overlay = Image.open(io.BytesIO(base64.b64decode(ex["overlay"].split(",", 1)[1])))
    assert overlay.size == (128, 85)
    # The same photo explained through the Python API gives the same classes, peaks and boxes.
    from gradcam import explain

    ref = explain(Image.open(io.BytesIO(cat)), top_k=5)
    assert [e["id"] for e in res["explanations"]] == ref.class_ids
    assert [e["peak"] for e in res["explanations"]] == ref.peaks
    assert [e["box"] for e in res["explanations"]] == ref.boxes

    status, one = _explain(base, cat, target="tabby", layer="_blocks.15")
    assert (
        status == 200
        and [e["class"] for e in one["explanations"]] == ["tabby"]
        and one["layer"] == "_blocks.15"
    )


def test_bad_requests(server):
    base, _ = server
    cat = _request(base + "/api/demo/chelsea")[1]
    assert _explain(base, b"not an image at all")[0] == 400
    status, err = _explain(base, cat, method="nope")
    assert status == 400 and "Unknown method 'nope'" in err["error"]
    status, err = _explain(base, cat, layer="no.such.layer")
    assert status == 400 and "Unknown layer" in err["error"]
    status, err = _explain(base, cat, overlay_side=-1)
    assert status == 400 and "overlay_side must be a number of pixels" in err["error"]
    status, err = _explain(base, cat, top_k="many")
    assert status == 400 and "top_k and overlay_side must be integers" in err["error"]
    status, err = _explain(base, cat, target="not a class name")
    assert status == 400 and "Unknown class name" in err["error"]
    assert _request(base + "/api/demo/../../etc/passwd")[0] == 404
    assert _request(base + "/api/explain")[0] == 405  # GET
    # A forged Host header (DNS rebinding) is refused on a loopback server.
    assert _request(base + "/api/info", headers={"Host": "evil.example"})[0] == 400


def test_60_megapixel_upload_refused_before_decoding(server):
    base, proc = server
    forged = png_header_only(10_000, 6_000)  # declares 60 MP (180 MB of pixels), is 100 bytes long
    assert len(forged) < 200
    before = peak_rss_mb(proc.pid)
    t0 = time.perf_counter()
    status, err = _explain(base, forged)
    took = time.perf_counter() - t0
    assert status == 413, err
    assert err["error"] == (
        "upload: image too large: its header declares 10000x6000 = 60.0 megapixels, over the "
        "limit of 50 megapixels (raise it with --max-pixels N, or max_pixels= in Python)"
    )
    assert peak_rss_mb(proc.pid) - before < 50  # decoding would have needed 180 MB
    assert took < 5


def test_20_concurrent_requests_match_sequential(server):
    base, proc = server
    photos = _photos()
    jobs = [(i % 4, ("gradcam", "gradcam++")[i // 4 % 2]) for i in range(20)]
    fields = {"top_k": 5, "overlay_side": 96, "alpha": 0.5}

    def call(job):
        status, res = _explain(base, photos[job[0]], method=job[1], **fields)
        assert status == 200, res
        res.pop("seconds")
        return res

    t0 = time.perf_counter()
    sequential = {job: call(job) for job in sorted(set(jobs))}
    one = (time.perf_counter() - t0) / len(sequential)
    rss_before = peak_rss_mb(proc.pid)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(call, jobs))
    took = time.perf_counter() - t0
    rss_after = peak_rss_mb(proc.pid)
    for job, res in zip(jobs, results):
        # Classes, scores, peaks, boxes and the overlay PNGs, byte for byte.
        assert res == sequential[job], job
    assert len({json.dumps(r["explanations"][0]["peak"]) + r["method"] for r in results}) > 1
    print(
        f"\n20 concurrent POST /api/explain: {took:.2f} s ({one:.2f} s per request sent alone); "
        f"server peak RSS {rss_before:.0f} -> {rss_after:.0f} MB"
    )
    assert rss_after - rss_before < 300  # bounded: at most --concurrency (2) explanations at a time


def test_token_required_off_loopback():
    cmd = [sys.executable, "-m", "gradcam", "serve", "--host", "0.0.0.0"]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": f"{ROOT}/src"}
    )
    assert (
        r.returncode == 2
        and "--host 0.0.0.0 accepts connections from other machines: add --token" in r.stderr
    )

    secret = "s3cret-token-123"
    with serve("--host", "0.0.0.0", "--token", secret, "--max-upload-mb", "0.5") as (base, _):
        base = base.replace("0.0.0.0", "127.0.0.1")
        for path in ("/", "/api/info", "/api/demo/chelsea"):
            status, err = _request(base + path)
            assert status == 401 and "missing or wrong token" in err["error"]
        assert _request(base + "/api/info", headers={"X-Gradcam-Token": "wrong-token-123"})[0] == 401
        assert _request(base + "/api/info?token=s3cret-token-12")[0] == 401
        body, ctype = multipart([], b"x")
        assert _request(base + "/api/explain", body, {"Content-Type": ctype})[0] == 401
        assert _request(base + "/api/info", headers={"X-Gradcam-Token": secret})[0] == 200
        assert _request(base + "/api/info", headers={"Authorization": f"Bearer {secret}"})[0] == 200
        assert _request(base + f"/?token={secret}")[0] == 200
        # Any Host is fine off loopback (the token guards it); uploads over --max-upload-mb are refused unread.
        assert _request(base + f"/api/info?token={secret}", headers={"Host": "my-box.lan"})[0] == 200
        big, ctype = multipart([], b"\0" * 600_000)
        status, err = _request(base + f"/api/explain?token={secret}", big, {"Content-Type": ctype})
        assert status == 413 and "upload too large" in err["error"]
