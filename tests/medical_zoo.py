"""A tiny 3-D classifier for the medical CLI tests: ``--model medical_zoo:tiny3d``."""

import torch
from torch import nn


class Tiny3D(nn.Module):
    def __init__(self, classes: int = 2):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(6, classes)

    def forward(self, x):
        f = self.features(x)
        return self.head((f * f).mean(dim=(2, 3, 4)))


def tiny3d() -> nn.Module:
    torch.manual_seed(0)
    return Tiny3D()
