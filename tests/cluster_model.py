"""Tiny models for the Ray cluster tests (``--model cluster_model:tiny``): importable on the Ray workers,
which get this folder on their ``PYTHONPATH`` (tests/ray_cluster.py)."""

import time

import torch
from torch import nn


class Tiny(nn.Module):
    """Conv -> ReLU -> conv -> global average pool -> 5 classes; ``delay`` seconds of sleep per forward (so
    that a run of 100 photos lasts long enough to kill a worker in the middle of it)."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(8, 5)
        self.delay = delay

    def forward(self, x):
        if self.delay:
            time.sleep(self.delay)
        return self.head(self.features(x).mean(dim=(2, 3)))


def tiny() -> nn.Module:
    return Tiny()


def slow_tiny() -> nn.Module:
    return Tiny(delay=0.05)
