"""Train a small CNN on synthetic shapes with PyTorch Lightning and watch its Grad-CAM maps in TensorBoard.

    pip install 'gradcam[lightning]'
    python docs/examples/lightning_shapes.py --out lightning_logs   # about 20 s on one CPU core
    tensorboard --logdir lightning_logs                              # the IMAGES tab: "gradcam"

Each 32x32 image holds one shape (square, disc or cross) at a random place on noise; the class is the shape.
GradCAMCallback explains the same 6 validation images after every epoch: as the network learns, the maps
move onto the shapes. The CSV logger gets the same grids as PNG files in its log folder.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
from torch import nn

from gradcam.integrations.lightning import GradCAMCallback

CLASSES = ["square", "disc", "cross"]


def shapes(n: int, seed: int) -> tuple:
    """n images (n, 1, 32, 32) in [0, 1] with one shape of 8-12 px each, and their classes."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 32, 32, generator=g) * 0.3
    y = torch.randint(0, 3, (n,), generator=g)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    for i in range(n):
        s = int(torch.randint(8, 13, (1,), generator=g))
        r0, c0 = (int(v) for v in torch.randint(1, 31 - s, (2,), generator=g))
        cy, cx, h = r0 + s / 2, c0 + s / 2, s / 2
        if y[i] == 0:
            mask = (yy >= r0) & (yy < r0 + s) & (xx >= c0) & (xx < c0 + s)
        elif y[i] == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= h * h
        else:
            mask = (((yy - cy).abs() < 1.6) & ((xx - cx).abs() < h)) | (
                ((xx - cx).abs() < 1.6) & ((yy - cy).abs() < h)
            )
        x[i, 0][mask] = 0.9
    return x, y


class ShapeNet(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3))

    def forward(self, x):
        return self.head(self.features(x))

    def training_step(self, batch, _):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.log("val_acc", (logits.argmax(1) == y).float().mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="lightning_logs")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    pl.seed_everything(0)
    train = torch.utils.data.TensorDataset(*shapes(1500, 0))
    val_x, val_y = shapes(300, 1)
    cb = GradCAMCallback(val_x[:6], every_n_epochs=1, layer="features.6", top_k=1, labels=CLASSES)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=[
            pl.loggers.TensorBoardLogger(args.out, name="shapes"),
            pl.loggers.CSVLogger(args.out, name="shapes_csv"),
        ],
        callbacks=[cb],
        enable_checkpointing=False,
        log_every_n_steps=10,
    )
    trainer.fit(
        ShapeNet(),
        torch.utils.data.DataLoader(train, batch_size=32, shuffle=True),
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(val_x, val_y), batch_size=100),
    )
    print("logged:", *cb.logged, sep="\n  ")


if __name__ == "__main__":
    main()
