"""The folder pipeline at its limit (issue 23, item 2): the prefetching local engine writes byte-identical
outputs to the serial path and to the previous version's data path; start-up builds the jet colormap and the
built-in model exactly as before, without matplotlib, and ``gradcam explain`` imports neither matplotlib
nor the other commands."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from gradcam import index
from gradcam.cli import main
from gradcam.pipeline import Options, run
from gradcam.pipeline import local as local_executor
from gradcam.pipeline.kinds import decode

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera")
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:  # real photos of two sizes (coffee and rocket are 600 x 400): 3 batches of 2
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").reduce(2).save(
            d / f"{name}.jpg", quality=90
        )
    (d / "broken.jpg").write_text("not an image")
    return d


def _outputs(out) -> dict:
    """Every file's bytes (the index aside), by its path relative to ``out``."""
    files = {}
    for r, _, fs in os.walk(out):
        for f in fs:
            if not f.startswith("index."):
                with open(os.path.join(r, f), "rb") as fh:
                    files[os.path.relpath(os.path.join(r, f), out)] = fh.read()
    return files


def _rows(out) -> list:
    """The index rows with the output folder written OUT and without the time of writing."""
    return [
        {k: (v.replace(str(out), "OUT") if isinstance(v, str) else v) for k, v in r.items() if k != "updated"}
        for r in index.read_index(str(out))
    ]


def _run(folder, out, prefetch: int) -> None:
    options = Options(paths=(str(folder),), out=str(out), json=True, maps=True, top=2, batch_size=2)
    options.prefetch = prefetch
    summary = run(options)
    assert (summary.explained, len(summary.failed)) == (len(PHOTOS), 1)


def test_prefetch_gives_the_serial_and_the_previous_outputs(folder, tmp_path, monkeypatch):
    """Overlays, JSON, maps, records and failures.json byte for byte, and the index rows, are the same with
    prefetching (decode + preprocess in a thread), serially (``prefetch=0``), and along the previous version's
    data path (the prefetch thread only decodes; the explain step preprocesses)."""
    _run(folder, tmp_path / "prefetch", 2)
    _run(folder, tmp_path / "serial", 0)
    monkeypatch.setattr(local_executor, "prepare_one", lambda it, max_pixels, loaded: decode(it, max_pixels))
    _run(folder, tmp_path / "before", 1)
    got = {name: _outputs(tmp_path / name) for name in ("prefetch", "serial", "before")}
    assert sum(k.endswith(".png") for k in got["prefetch"]) == 2 * len(PHOTOS)
    assert sum(k.endswith(".maps.pt") for k in got["prefetch"]) == len(PHOTOS)
    assert got["prefetch"] == got["serial"] == got["before"]
    rows = [_rows(tmp_path / name) for name in ("prefetch", "serial", "before")]
    assert rows[0] == rows[1] == rows[2] and len(rows[0]) == 2 * len(PHOTOS) + 1


def test_prepare_one_preprocesses_photos_only(folder):
    """The prefetch thread's step: a photo comes with its model input (exactly ``loaded.preprocess``); a file
    that cannot be read keeps its reason and no input."""
    from gradcam.models import load_model

    loaded = load_model()
    img, reason, x = local_executor.prepare_one(_item(folder / "coffee.jpg"), None, loaded)
    assert reason is None and torch.equal(x, loaded.preprocess(img))
    assert tuple(x.shape) == (3, 256, 384)  # 300 x 200 photo: short side 256, long side a multiple of 32
    bad = local_executor.prepare_one(_item(folder / "broken.jpg"), None, loaded)
    assert bad[0] is None and len(bad) == 2 and "not an image" in bad[1]


def _item(path):
    from gradcam.io import Item

    return Item(str(path), path.stem)


def test_prefetch_option_is_checked(folder, tmp_path, capsys):
    assert main(["explain", str(folder), "--out", str(tmp_path / "o"), "--prefetch", "-1"]) == 2
    assert "--prefetch is a number of batches decoded ahead (0: no background threads); got -1." in (
        capsys.readouterr().err
    )


def test_jet_is_matplotlibs_bit_for_bit():
    import matplotlib

    from gradcam.image import _jet_lut, colormap_lut

    ref = matplotlib.colormaps["jet"](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32)
    assert torch.equal(_jet_lut(), torch.from_numpy(ref))
    assert colormap_lut("jet").dtype == torch.float32 and tuple(colormap_lut("jet").shape) == (256, 3)
    assert torch.equal(colormap_lut("viridis")[0], torch.tensor([0.267004, 0.004874, 0.329415]))


def test_built_in_model_loads_the_same_weights_in_the_same_layout():
    """Built on the meta device and assigned the checkpoint (no random init, no copy): every tensor equal
    in value, shape and strides to the classic build (random init, then ``load_state_dict``'s copy), and
    the logits identical."""
    from gradcam.models import efficientnet_lite as lite

    width, depth, _, dropout = lite.LITE_VARIANTS["efficientnet-lite0"]
    classic = lite.EfficientNetLite(lite.lite_stages(width, depth), dropout=dropout)
    state = torch.load(lite.weights_path("efficientnet-lite0"), map_location="cpu", weights_only=True)
    classic.load_state_dict(state, strict=True)
    classic.eval()
    fast = lite.efficientnet_lite("efficientnet-lite0")
    a, b = classic.state_dict(), fast.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]) and a[k].stride() == b[k].stride(), k
    assert all(p.requires_grad for p in fast.parameters()) and not fast.training
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(classic(x), fast(x))


def test_explain_imports_neither_matplotlib_nor_other_commands(folder, tmp_path):
    code = (
        "import sys\nfrom gradcam.cli import main\n"
        f"assert main(['explain', {str(folder / 'chelsea.jpg')!r}, '--out', {str(tmp_path / 'o')!r}]) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib' "
        "or m.startswith('gradcam.commands.')))\n"
    )
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (
        r.stdout.strip().splitlines()[-1]
        == "['gradcam.commands.explain', 'gradcam.commands.explain_volumes']"
    )
