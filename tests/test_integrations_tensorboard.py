"""log_explanations: a plain training loop's grids, read back from the TensorBoard event file."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

pytest.importorskip("tensorboard", reason="needs the 'lightning' extra (tensorboard)")

from nets import gap_net  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from gradcam import GradCAM, explain  # noqa: E402
from gradcam.integrations.grid import explanation_grid  # noqa: E402
from gradcam.integrations.tensorboard import log_explanations  # noqa: E402
from gradcam.models import LoadedModel  # noqa: E402


def _read(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_log_explanations_in_a_plain_loop(tmp_path):
    model = gap_net(num_classes=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.rand(3, 3, 16, 16)
    y = torch.tensor([0, 1, 2])
    writer = SummaryWriter(str(tmp_path))
    cam = GradCAM(model, layer="3")
    grids = []
    for step in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        res = cam(x, top_k=2)
        grids.append(
            log_explanations(writer, "val/cam", res, x, step, labels=["a", "b", "c", "d"], alpha=0.4, scale=1)
        )
    writer.close()

    acc = _read(tmp_path)
    shots = acc.Images("val/cam")
    assert [s.step for s in shots] == [0, 1]
    for s, g in zip(shots, grids):
        got = np.asarray(Image.open(io.BytesIO(s.encoded_image_string)).convert("RGB"))
        np.testing.assert_array_equal(got, g)
        assert (s.width, s.height) == (3 * 16, 3 * (16 + 14))
    # The first tile of each row is the image itself; the second the 0.6/0.4 blend with the colour map.
    np.testing.assert_array_equal(
        grids[1][:16, :16], (x[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    )
    from gradcam.image import colorize

    blend = 0.6 * x[0].permute(1, 2, 0) + 0.4 * colorize(res.maps[0, 0].detach())
    assert np.abs(grids[1][:16, 16:32].astype(int) - (blend * 255).round().numpy().astype(int)).max() <= 1
    captions = [t for t in acc.Tags()["tensors"] if t.startswith("val/cam/caption")]
    assert captions, acc.Tags()


def test_log_explanations_of_explain_results(tmp_path):
    loaded = LoadedModel(
        model=gap_net(num_classes=3).eval(), labels=["x", "y", "z"], layer="3", name="tiny", size=32
    )
    photo = Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8))
    results = [
        explain(photo, loaded, top_k=2),
        explain(photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), loaded),
    ]
    writer = SummaryWriter(str(tmp_path))
    grid = log_explanations(writer, "photos", results, None, 5)
    writer.close()
    assert grid.shape == (2 * 40, 3 * 60, 3)  # rows padded to the widest: photo + 2 overlays
    assert (grid[40:, 2 * 60 :] == 255).all()  # the second photo has one overlay: the rest is white
    np.testing.assert_array_equal(grid[:40, 60:120], np.asarray(results[0].overlay(0)))
    shot = _read(tmp_path).Images("photos")[0]
    assert shot.step == 5 and (shot.width, shot.height) == (180, 80)


def test_grid_enlarges_small_images():
    x = torch.rand(2, 3, 8, 8)
    res = GradCAM(gap_net(), layer="3")(x, top_k=3)
    grid = np.asarray(explanation_grid(x, res))
    assert grid.shape == (2 * (96 + 14), 4 * 96, 3)  # 8 px enlarged 12 times; image + 3 overlays per row
    np.testing.assert_array_equal(
        grid[96 + 14 : 2 * 96 + 14 : 12, :96:12], (x[1].permute(1, 2, 0) * 255).round().byte()
    )
    assert np.asarray(explanation_grid(x, res, scale=1, captions=False)).shape == (16, 32, 3)
    with pytest.raises(ValueError, match="scale must be a positive int"):
        explanation_grid(x, res, scale=0)


def test_log_explanations_takes_a_lightning_logger():
    calls = []

    class Writer:
        def add_image(self, tag, img, step, dataformats):
            calls.append((tag, img.shape, step, dataformats))

    class TensorBoardLogger:  # what Lightning's logger offers: the SummaryWriter as .experiment
        experiment = Writer()

    x = torch.rand(1, 3, 8, 8)
    log_explanations(TensorBoardLogger(), "cam", GradCAM(gap_net(), layer="3")(x), x, 3, scale=2)
    assert calls == [("cam", (16 + 14, 2 * 16, 3), 3, "HWC")]  # a writer without add_text gets no caption


def test_log_explanations_errors():
    res = GradCAM(gap_net(), layer="3")(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="images is required"):
        log_explanations(None, "t", res, None, 0)
    with pytest.raises(ValueError, match="3 images but the explanation has 2"):
        log_explanations(None, "t", res, torch.rand(3, 3, 8, 8), 0)
    with pytest.raises(ValueError, match="tag must be a non-empty string"):
        log_explanations(None, "", res, None, 0)
