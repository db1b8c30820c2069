"""``gradcam report``: the page's data, escaping, thumbnails, evaluation charts; rich display in Jupyter."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import quote, unquote

import numpy as np
import pytest
import torch
from PIL import Image

from gradcam.api import ImageResult
from gradcam.cli import main
from gradcam.explanation import Explanation
from gradcam.image import colorize
from gradcam.pixels import PixelExplanation, to_image
from gradcam.report import write_report
from gradcam.report.evaluation import evaluation_html
from gradcam.report.render import json_for_script
from gradcam.report.svg import bar_chart, line_chart

XSS_IMG = "<img src=x onerror=alert(1)>.jpg"
XSS_SCRIPT = '"><script>alert(2)</script>.jpg'
XSS_BROKEN = '"><script>alert(3)</script>broken.jpg'


class Page(HTMLParser):
    """Start tags (name, attrs), the text outside scripts, and each script's body."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.scripts, self._in = [], [], [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in = dict(attrs)
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)

    def data(self) -> dict:
        return json.loads(next(b for a, b in self.scripts if a.get("type") == "application/json"))


def _record(folder, stem, file, preds, colours, size=(80, 60), method="gradcam"):
    """A record as ``gradcam explain --json`` writes it, with one flat-coloured overlay PNG per class."""
    names = [f"{stem}.png"] if len(colours) == 1 else [f"{stem}.top{r + 1}.png" for r in range(len(colours))]
    for name, c in zip(names, colours):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, c).save(folder / name)
    rec = {
        "file": file,
        "size": list(size),
        "model": "efficientnet-lite0",
        "method": method,
        "layer": "_head_act",
        "predictions": [{"class": c, "id": i, "probability": p} for c, i, p in preds],
        "explanations": [
            {
                "class": c,
                "id": i,
                "score": 10.0 - r,
                "probability": p,
                "peak": [10 + r, 20],
                "box": [5, 6, 50, 40],
                "box_threshold": 0.15,
            }
            for r, (c, i, p) in enumerate(preds[: len(colours)])
        ],
        "overlays": [n.split("/")[-1] for n in names],
    }
    (folder / f"{stem}.json").write_text(json.dumps(rec))
    return rec


def _results(folder):
    folder.mkdir(parents=True, exist_ok=True)
    _record(
        folder,
        "cat",
        "photos/cat.jpg",
        [("tabby", 281, 0.6), ("tiger cat", 282, 0.3)],
        [(255, 0, 0), (0, 0, 255)],
    )
    _record(
        folder,
        "sub/cup",
        "photos/sub/cup.jpg",
        [("espresso", 967, 0.9), ("cup", 968, 0.05)],
        [(0, 255, 0)],
        size=(600, 400),
    )
    _record(folder, "x1", "photos/" + XSS_IMG, [("tabby", 281, 0.7)], [(10, 20, 30)])
    _record(folder, "x2", "photos/" + XSS_SCRIPT, [("espresso", 967, 0.2)], [(40, 50, 60)])
    (folder / "failures.json").write_text(
        json.dumps([{"file": "photos/" + XSS_BROKEN, "reason": "not an image"}])
    )


def test_json_for_script_has_no_markup_and_round_trips():
    data = {"n": "</script><script>alert(1)</script><!-- & -->", "x": [1.5, None, "é"]}
    text = json_for_script(data)
    assert not set("<>&") & set(text)
    assert json.loads(text) == data


def test_report_page_data_thumbnails_and_escaping(tmp_path):
    folder = tmp_path / 'res<b>&"'
    _results(folder)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (90, 30), (200, 100, 0)).save(
        tmp_path / "photos" / "cat.jpg"
    )  # beside the results folder
    path = write_report(str(folder))
    assert path == str(folder / "index.html")
    html = (folder / "index.html").read_text()
    page = Page(html)
    # Nothing from the input became markup: two scripts (data + the page's own), no img/onerror in the HTML.
    assert [a.get("type") for a, _ in page.scripts] == ["application/json", None]
    assert not any(t == "img" or "onerror" in a for t, a in page.tags)
    assert "alert(" not in page.scripts[1][1]
    text = "".join(page.text)
    assert "photos/" + XSS_BROKEN + ": not an image" in text
    assert 'gradcam report: res<b>&"' in text  # the folder name, shown as text
    # Only the page's own script may run: the CSP names its SHA-256.
    csp = next(a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy")
    digest = base64.b64encode(hashlib.sha256(page.scripts[1][1].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp
    data = page.data()
    assert data["page_size"] == 50
    rows = {p["n"]: p for p in data["photos"]}
    assert set(rows) == {"photos/cat.jpg", "photos/sub/cup.jpg", "photos/" + XSS_IMG, "photos/" + XSS_SCRIPT}
    cat = rows["photos/cat.jpg"]
    assert (cat["w"], cat["h"]) == (80, 60) and cat["model"] == "efficientnet-lite0"
    assert cat["p"] == [["tabby", 281, 0.6], ["tiger cat", 282, 0.3]]
    assert [(f["m"], f["c"], f["i"], f["pr"], f["pk"], f["bx"]) for f in cat["f"]] == [
        ("gradcam", "tabby", 281, 0.6, [10, 20], [5, 6, 50, 40]),
        ("gradcam", "tiger cat", 282, 0.3, [11, 20], [5, 6, 50, 40]),
    ]
    assert [f["o"] for f in cat["f"]] == ["cat.top1.png", "cat.top2.png"]
    assert rows["photos/sub/cup.jpg"]["f"][0]["o"] == "sub/cup.png"
    assert (
        cat["src"] == "../photos/cat.jpg" and rows["photos/sub/cup.jpg"]["src"] is None
    )  # the original photo
    with Image.open(folder / unquote(cat["t"])) as im:
        assert (
            im.size == (90, 30) and np.abs(np.asarray(im, dtype=float).mean((0, 1)) - (200, 100, 0)).max() < 3
        )
    assert rows["photos/" + XSS_IMG]["f"][0]["o"] == quote("x1.png")
    # Thumbnails: small JPEGs of the overlays, beside the page.
    for p, colours in ((cat, [(255, 0, 0), (0, 0, 255)]), (rows["photos/sub/cup.jpg"], [(0, 255, 0)])):
        for f, c in zip(p["f"], colours):
            assert f["t"].startswith("report-thumbs/") and f["t"] != f["o"]
            with Image.open(folder / unquote(f["t"])) as im:
                assert im.format == "JPEG" and max(im.size) <= 320
                assert np.abs(np.asarray(im, dtype=float).mean((0, 1)) - c).max() < 3
    with Image.open(folder / unquote(rows["photos/sub/cup.jpg"]["f"][0]["t"])) as im:
        assert im.size == (320, 213)  # 600 x 400 shrunk to fit 320 x 240, aspect kept


def test_several_methods_for_one_photo_are_merged(tmp_path):
    folder = tmp_path / "res"
    _record(folder / "gc", "cat", "cat.jpg", [("tabby", 281, 0.6)], [(255, 0, 0)], method="gradcam")
    _record(folder / "cam", "cat", "cat.jpg", [("tabby", 281, 0.6)], [(0, 0, 255)], method="cam")
    write_report(str(folder))
    (row,) = Page((folder / "index.html").read_text()).data()["photos"]
    assert sorted((f["m"], f["o"]) for f in row["f"]) == [("cam", "cam/cat.png"), ("gradcam", "gc/cat.png")]


def test_index_table_is_preferred_to_the_records(tmp_path):
    folder = tmp_path / "res"
    _results(folder)
    Image.new("RGB", (8, 8)).save(folder / "z.png")
    rows = [
        {
            "file": "z.jpg",
            "size": [8, 8],
            "method": "gradcam",
            "class": "zebra",
            "id": 340,
            "probability": 0.5,
            "score": 3.0,
            "peak": [1, 2],
            "box": [0, 0, 4, 4],
            "overlay": "z.png",
        },
        {"file": "bad.jpg", "error": "empty file (0 bytes)"},
    ]
    (folder / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(str(folder))
    page = Page((folder / "index.html").read_text())
    (row,) = page.data()["photos"]
    assert row["n"] == "z.jpg" and row["p"] == [["zebra", 340, 0.5]] and row["f"][0]["o"] == "z.png"
    text = "".join(page.text)
    assert "bad.jpg: empty file (0 bytes)" in text and XSS_BROKEN in text


def _svg(text: str) -> ET.Element:
    return ET.fromstring(text)


NS = "{http://www.w3.org/2000/svg}"


def test_bar_chart_lengths_are_proportional_and_baseline_is_marked():
    svg = _svg(
        bar_chart([("gradcam", 0.8), ("<b>x</b>", 0.4), ("random", 0.2)], "pointing & <game>", baseline=0.2)
    )
    rects = svg.findall(f"{NS}rect")
    widths = [float(r.get("width")) for r in rects]
    assert widths[0] == pytest.approx(2 * widths[1], rel=1e-3) == pytest.approx(4 * widths[2], rel=1e-3)
    assert [r.get("class") for r in rects] == ["bar", "bar", "bar base"]
    x0 = float(rects[0].get("x"))
    (line,) = [ln for ln in svg.findall(f"{NS}line") if ln.get("class") == "baseline"]
    assert float(line.get("x1")) == pytest.approx(x0 + widths[2], abs=0.11)
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert "pointing & <game>" in texts and "<b>x</b>" in texts and "random = 0.200" in texts


def test_line_chart_points_follow_the_values():
    svg = _svg(line_chart({"gradcam": [1.0, 0.5, 0.0], "random": [1.0, 0.75, 0.5]}, "deletion"))
    lines = svg.findall(f"{NS}polyline")
    pts = [[tuple(map(float, p.split(","))) for p in ln.get("points").split()] for ln in lines]
    (x0, y1), (xm, yh), (x1, y0) = pts[0]
    assert xm == pytest.approx((x0 + x1) / 2, abs=0.1) and yh == pytest.approx((y0 + y1) / 2, abs=0.1)
    assert pts[1][2][1] == pytest.approx(yh, abs=0.1)  # random ends at 0.5
    assert lines[1].get("stroke-dasharray") and not lines[0].get("stroke-dasharray")


def test_evaluation_section_tables_bars_and_curves(tmp_path):
    ev = {
        "command": "gradcam evaluate --quick",
        "wall_seconds": 3.0,
        "notes": ["<note>"],
        "results": {
            "mosaic": {
                "meta": {},
                "rows": [
                    {
                        "method": "gradcam",
                        "pointing": 0.9,
                        "deletion": 0.2,
                        "deletion_curve": [1.0, 0.3, 0.1],
                        "seconds": 1.0,
                    },
                    {
                        "method": "random",
                        "pointing": 0.25,
                        "deletion": 0.5,
                        "deletion_curve": [1.0, 0.6, 0.2],
                    },
                    {"method": "cam", "note": "n/a: no GAP head"},
                ],
            },
            "vl": {"results": {"caption_pointing": {"colour": {"gradcam": 0.4, "random": 0.05, "n": 10}}}},
        },
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(ev))
    assert main(["report", str(tmp_path)]) == 0
    html = (tmp_path / "index.html").read_text()
    page = Page(html)
    assert page.data()["photos"] == []
    text = "".join(page.text)
    assert "<note>" in text and "n/a: no GAP head" in text and "gradcam evaluate --quick" in text
    cells = re.findall(r"<tr><th>(\w+)</th><td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert cells == [("gradcam", "0.9", "0.2"), ("random", "0.25", "0.5")]
    assert "random = 0.250" in html and "random = 0.500" in html  # each measure's bars mark the baseline
    assert html.count("<polyline") == 2 and "deletion curve" in html
    assert "colour · gradcam" in html and "colour · random" in html
    assert evaluation_html(ev).count("<svg") == 4  # 1 curve + 2 measures + 1 vl group


def test_cli_report_prints_the_path_and_refuses_an_empty_folder(tmp_path, capsys):
    _results(tmp_path / "r")
    assert main(["report", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "r" / "index.html")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "Nothing to report in" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "No such folder" in capsys.readouterr().err


def test_explain_with_report_writes_the_page_and_the_failures(tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photos / XSS_IMG)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["explain", str(photos), "--out", str(out), "--top", "2", "--report"]) == 1
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "index.html")
    assert json.loads((out / "failures.json").read_text()) == [
        {"file": str(photos / "broken.jpg"), "reason": "not an image (format not recognised)"}
    ]
    page = Page((out / "index.html").read_text())
    (row,) = page.data()["photos"]
    rec = json.loads((out / XSS_IMG.replace(".jpg", ".json")).read_text())
    assert row["n"] == str(photos / XSS_IMG)
    assert [f["c"] for f in row["f"]] == [p["class"] for p in rec["predictions"][:2]]
    assert row["t"] is not None  # the original photo was found: its thumbnail is shown too
    assert f"{photos / 'broken.jpg'}: not an image" in "".join(page.text)


# -- rich display ---------------------------------------------------------------------------------


def _pngs(html: str):
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB"))
        for s in re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    ]


def test_explanation_repr_html_shows_each_map_coloured():
    torch.manual_seed(0)
    maps = torch.rand(2, 3, 12, 16)
    exp = Explanation(
        maps=maps,
        raw=maps,
        weights=None,
        targets=torch.tensor([[1, 2, 3], [4, 5, 6]]),
        scores=torch.tensor([[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]),
        layer="<layer>",
        method="gradcam",
    )
    html = exp._repr_html_()
    imgs = _pngs(html)
    assert len(imgs) == 6
    for i in range(2):
        for j in range(3):
            want = (colorize(maps[i, j]) * 255).round().to(torch.uint8).numpy()
            assert np.array_equal(imgs[3 * i + j], want)
    assert "image 1 · class 5 · score 5.5" in html and "&lt;layer&gt;" in html and "<layer>" not in html


def test_pixel_explanation_repr_html_shows_the_attribution_images():
    torch.manual_seed(1)
    px = torch.randn(1, 2, 3, 10, 14)
    exp = PixelExplanation(
        maps=px.abs().amax(2),
        raw=px.abs().amax(2),
        weights=None,
        targets=torch.tensor([[7, 8]]),
        scores=torch.tensor([[0.5, 0.25]]),
        layer="input",
        method="gradient",
        pixels=px,
    )
    imgs = _pngs(exp._repr_html_())
    want = (to_image(px)[0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    assert len(imgs) == 2 and np.array_equal(imgs[0], want[0]) and np.array_equal(imgs[1], want[1])


def test_image_result_repr_html_shows_overlays_and_predictions():
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    torch.manual_seed(2)
    res = ImageResult(
        image=photo,
        source="<cat>.jpg",
        predictions=[("tabby", 281, 0.6), ("<b>cup</b>", 968, 0.1)],
        class_ids=[281, 968],
        classes=["tabby", "<b>cup</b>"],
        scores=[9.0, 3.0],
        probabilities=[0.6, 0.1],
        input_maps=torch.rand(2, 15, 20),
        peaks=[[1, 2], [3, 4]],
        boxes=[[0, 0, 10, 10], [5, 5, 20, 20]],
        layer="_head_act",
        method="gradcam",
        model="m",
    )
    html = res._repr_html_()
    imgs = _pngs(html)
    assert len(imgs) == 2
    for j in range(2):
        assert np.array_equal(imgs[j], np.asarray(res.overlay(j)))
    assert (
        "&lt;b&gt;cup&lt;/b&gt; (968): 10.0%" in html and "&lt;cat&gt;.jpg" in html and "<b>cup" not in html
    )


def test_a_hidden_record_finds_its_overlay_beside_its_folder(tmp_path):
    folder = tmp_path / "res"
    _record(folder / ".gradcam", "cat", "cat.jpg", [("tabby", 281, 0.6)], [(255, 0, 0)])
    (folder / ".gradcam" / "cat.png").rename(folder / "cat.png")
    write_report(str(folder))
    (row,) = Page((folder / "index.html").read_text()).data()["photos"]
    assert row["f"][0]["o"] == "cat.png"


def test_evaluation_rows_carry_the_mean_deletion_and_insertion_curves():
    from gradcam import metrics as M
    from gradcam.evaluation.runner import _faithfulness

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 3),
    )
    x, maps, t = torch.randn(3, 3, 8, 8), torch.rand(3, 8, 8), torch.tensor([0, 1, 2])
    out = _faithfulness(net, x, maps, t, steps=4, batch_size=8)
    for mode in ("deletion", "insertion"):
        curve = M.perturbation_curve(net, x, maps, t, mode, 4, max_batch=8)
        assert out[f"{mode}_curve"] == pytest.approx(curve.mean(0).tolist(), abs=1e-4)
        assert out[mode] == pytest.approx(float(getattr(M, mode)(net, x, maps, t, steps=4).mean()), abs=1e-4)
        assert len(out[f"{mode}_curve"]) == 5


def test_an_index_that_does_not_lead_to_the_overlays_gives_way_to_the_records(tmp_path):
    folder = tmp_path / "res"
    _results(folder)
    (folder / "index.jsonl").write_text(
        json.dumps({"file": "z.jpg", "class": "zebra", "overlay": "missing.png"}) + "\n"
    )
    write_report(str(folder))
    names = {p["n"] for p in Page((folder / "index.html").read_text()).data()["photos"]}
    assert names == {"photos/cat.jpg", "photos/sub/cup.jpg", "photos/" + XSS_IMG, "photos/" + XSS_SCRIPT}


def test_report_of_a_real_run_reads_the_index_with_top5_and_sizes(tmp_path):
    # A real `gradcam explain --top 2` run writes the results index (gradcam.index); the report reads it, and
    # what it shows per photo (size, top-5 predictions, explained classes, peaks, boxes, overlays) equals the
    # per-photo JSON records of the same run.
    from gradcam.report.data import _index_rows as index_rows
    from gradcam.report.data import photos_from_index, read_records

    out = tmp_path / "out"
    assert main(["explain", "--demo", "--top", "2", "--json", "--out", str(out)]) == 0
    rows = index_rows(str(out))
    assert rows and all(r.get("predictions") for r in rows)
    from_index, failed = photos_from_index(rows, str(out))
    from_records = read_records(str(out))
    assert failed == [] and len(from_index) == len(from_records) == 1
    a, b = from_index[0], from_records[0]
    assert a.size == b.size == (451, 300)
    assert len(a.predictions) == 5
    assert [(c, i) for c, i, _ in a.predictions] == [(c, i) for c, i, _ in b.predictions]
    assert [(f.cls, f.cid, f.peak, f.box, f.overlay) for f in a.frames] == [
        (f.cls, f.cid, f.peak, f.box, f.overlay) for f in b.frames
    ]
