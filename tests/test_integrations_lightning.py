"""GradCAMCallback: training is bit-identical with and without it, and TensorBoard and CSV get the grids."""

from __future__ import annotations

import glob
import io
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

pl = pytest.importorskip("lightning.pytorch", reason="needs the 'lightning' extra")
pytest.importorskip("tensorboard", reason="needs the 'lightning' extra (tensorboard)")

from PIL import Image  # noqa: E402

from gradcam import GradCAM  # noqa: E402
from gradcam.integrations.grid import explanation_grid  # noqa: E402
from gradcam.integrations.lightning import GradCAMCallback  # noqa: E402
from gradcam.methods import registry  # noqa: E402

LABELS = ["left", "right", "none"]


class Tiny(pl.LightningModule):
    """Conv + BatchNorm + Dropout (dropout draws from the RNG, so a stolen random number would show)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Conv2d(6, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
        self.losses = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.losses.append(loss.detach().clone())
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 12, 12, generator=g) * 0.3
    y = torch.randint(0, 3, (n,), generator=g)
    x[y == 0, :, 3:9, 1:5] += 2.0  # a blob on the left, on the right, or none
    x[y == 1, :, 3:9, 7:11] += 2.0
    return x, y


def _fit(root, callback=None):
    pl.seed_everything(7, workers=True)
    x, y = _data()
    ds = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)
    val = torch.utils.data.DataLoader(ds, batch_size=16)
    model = Tiny()
    loggers = [pl.loggers.TensorBoardLogger(root, name="tb"), pl.loggers.CSVLogger(root, name="csv")]
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        logger=loggers,
        callbacks=[callback] if callback else [],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
    )
    trainer.fit(model, train, val)
    after = (torch.rand(4), np.random.rand(2), random.random())  # the RNG stream after training
    return model, trainer, after


def _events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(folder, size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """The run without the callback."""
    model, _, after = _fit(tmp_path_factory.mktemp("plain"))
    return model, after


def _same_training(model, after, plain_run):
    plain, after_plain = plain_run
    assert len(model.losses) == len(plain.losses) == 12
    assert all(torch.equal(a, b) for a, b in zip(model.losses, plain.losses))
    sa, sb = model.state_dict(), plain.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(after[0], after_plain[0]) and np.array_equal(after[1], after_plain[1])
    assert after[2] == after_plain[2]


def test_callback_changes_nothing_and_logs_grids(tmp_path, plain):
    images = _data(4, seed=1)[0]
    cb = GradCAMCallback(images, every_n_epochs=1, method="gradcam", layer="net.4", top_k=2, labels=LABELS)
    model, trainer, after = _fit(tmp_path, cb)

    # Training is bit-identical: every loss, every weight and buffer, and the random stream afterwards.
    _same_training(model, after, plain)

    # TensorBoard got one grid per epoch (not in the sanity check), at the global steps 6 and 12.
    acc = _events(trainer.loggers[0].log_dir)
    shots = acc.Images("gradcam")
    assert [s.step for s in shots] == [6, 12]
    tb = [np.asarray(Image.open(io.BytesIO(s.encoded_image_string)).convert("RGB")) for s in shots]
    # The last one is exactly the grid of the trained model's explanation: 4 rows of [image, 2 overlays].
    res = GradCAM(model, layer="net.4")(images, top_k=2)
    expected = np.asarray(explanation_grid(images, res, LABELS))
    assert tb[1].shape == expected.shape == (4 * (96 + 14), 3 * 96, 3)  # 12 px images enlarged 8 times
    np.testing.assert_array_equal(tb[1], expected)
    assert not np.array_equal(tb[0], tb[1])  # epoch 1's model explains differently
    assert "caption" in " ".join(acc.Tags()["tensors"])

    # The CSV logger's folder holds the same two grids as PNG files, and their captions.
    pngs = sorted(
        glob.glob(os.path.join(trainer.loggers[1].log_dir, "gradcam", "gradcam_epoch=*_step=*.png"))
    )
    assert [os.path.basename(p) for p in pngs] == [
        "gradcam_epoch=0_step=6.png",
        "gradcam_epoch=1_step=12.png",
    ]
    for p, t in zip(pngs, tb):
        np.testing.assert_array_equal(np.asarray(Image.open(p)), t)
    caption = open(pngs[1][:-4] + ".txt").read()
    top = res.targets[0].tolist()
    assert caption.startswith("gradcam at net.4\nimage 0: ") and LABELS[top[0]] in caption.splitlines()[1]


class NoisyGradCAM(GradCAM):
    """A user's method that draws noise from the global torch, NumPy and Python generators (as SmoothGrad does)."""

    def __call__(self, x, target=None, top_k=None, **kw):
        x = x + 0.01 * torch.randn_like(x) + float(np.random.rand()) * 0 + random.random() * 0
        return super().__call__(x, target, top_k, **kw)


def test_callback_every_n_epochs_and_rank(tmp_path, plain, monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))  # registered for this test only
    monkeypatch.setattr(registry, "INFO", dict(registry.INFO))
    registry.register("test-noisy", NoisyGradCAM)
    images = _data(2, seed=2)[0]
    cb = GradCAMCallback(images, every_n_epochs=2, method="test-noisy")
    model, trainer, after = _fit(tmp_path, cb)
    _same_training(model, after, plain)  # the RNG states are put back after the method drew from them
    assert cb.logged == [
        "tensorboard",
        f"csv:{trainer.loggers[1].log_dir}/gradcam/gradcam_epoch=1_step=12.png",
    ]

    class NotZero:  # a rank other than 0 never explains
        sanity_checking, is_global_zero, current_epoch = False, False, 1

    cb.logged.clear()
    cb.on_validation_epoch_end(NotZero(), None)
    assert cb.logged == []


def test_callback_bad_arguments():
    with pytest.raises(ValueError, match="every_n_epochs must be a positive int"):
        GradCAMCallback(torch.zeros(1, 1, 4, 4), every_n_epochs=0)
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        GradCAMCallback(torch.zeros(1, 1, 4, 4), method="nope")
    with pytest.raises(TypeError, match="input batch as a tensor"):
        GradCAMCallback([1, 2, 3])


def test_callback_under_inference_mode(tmp_path):
    """trainer.validate runs the hooks under torch.inference_mode(); the callback still gets its gradients."""
    seen = []

    class Recording(GradCAMCallback):
        def on_validation_epoch_end(self, trainer, pl_module):
            seen.append(torch.is_inference_mode_enabled())
            super().on_validation_epoch_end(trainer, pl_module)

    pl.seed_everything(3)
    x, y = _data(8)
    cb = Recording(x[:2], layer="net.4")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=pl.loggers.CSVLogger(tmp_path, name="csv"),
        callbacks=[cb],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(
        Tiny(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8), verbose=False
    )
    assert seen == [True]
    assert len(cb.logged) == 1 and os.path.getsize(cb.logged[0][4:]) > 0


def test_callback_sends_wandb_and_mlflow_their_calls():
    """W&B and MLflow are optional: loggers of those class names get log_image / experiment.log_image."""
    calls = []

    class WandbLogger:
        def log_image(self, **kw):
            calls.append(("wandb", kw["key"], kw["images"][0].size, kw["caption"], kw["step"]))

    class _Client:
        def log_image(self, run_id, image, artifact_file):
            calls.append(("mlflow", run_id, image.size, artifact_file))

    class MLFlowLogger:
        run_id, experiment = "run-1", _Client()

    class Other:  # a logger that takes no images (e.g. a metrics-only one) is skipped
        pass

    class Trainer:
        current_epoch, global_step, loggers = 2, 30, [WandbLogger(), MLFlowLogger(), Other()]

    grid = Image.new("RGB", (20, 10))
    cb = GradCAMCallback(torch.zeros(1, 1, 4, 4), tag="cam")
    cb._log(Trainer(), grid, "gradcam at x\nimage 0: a")
    assert calls == [
        ("wandb", "cam", (20, 10), ["gradcam at x\nimage 0: a"], 30),
        ("mlflow", "run-1", (20, 10), "cam/epoch=2_step=30.png"),
    ]
    assert cb.logged == ["wandb", "mlflow"]
