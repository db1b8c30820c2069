"""Small networks the tests build (random weights, seeded)."""

import torch
import torch.nn.functional as F
from torch import nn


def fc_net(num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """Conv features + a fully connected head (VGG-like; CAM does not apply)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 8 * 8, 32),
        nn.ReLU(),
        nn.Linear(32, num_classes),
    )


def gap_net(num_classes: int = 10, seed: int = 0) -> nn.Sequential:
    """Conv features + global average pooling + one linear layer (CAM applies)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


class ResBlockNet(nn.Module):
    """A residual block with an in-place add after the tapped BN and one shared nn.ReLU module."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.relu(self.stem(x))
        out = self.bn(self.conv(x))
        out += x
        out = self.relu(out)
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class DictNet(nn.Module):
    """Returns a dict; an auxiliary spatial branch runs last and does not feed the logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(6, 4)
        self.aux = nn.Conv2d(3, 2, 1)
        self.unused = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        f = self.features(x)
        logits = self.head(f.mean((2, 3)))
        return {"logits": logits, "aux": self.aux(x)}
