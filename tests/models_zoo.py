"""Small transformer, channels-last, sequence-first and 3-D models for the model-support tests, and a
float64 reference of Grad-CAM written independently of the library."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, c = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = self.attn_drop((q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5).softmax(-1))
        return self.proj((a @ v).transpose(1, 2).reshape(n, t, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    """A ViT: patch embedding, ``prefix`` leading tokens (class, distillation, registers), blocks, final
    norm, a head on the class token. No position embedding, so any input size divisible by ``patch`` works."""

    def __init__(self, dim=16, depth=2, heads=2, patch=4, classes=5, prefix=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.prefix_tokens = nn.Parameter(torch.randn(1, prefix, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.patch_embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.prefix_tokens.expand(t.shape[0], -1, -1), t], 1)
        return self.head(self.norm(self.blocks(t))[:, 0])


class TinySwinLike(nn.Module):
    """Channels-last stages, as torchvision's/timm's Swin: (N, h, w, C) maps between LayerNorm/Linear."""

    def __init__(self, dim=12, classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.norm = nn.LayerNorm(dim)
        self.mix = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.out_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).permute(0, 2, 3, 1)  # (N, h, w, C)
        t = self.out_norm(self.act(self.mix(self.norm(t))))
        return self.head(t.mean(dim=(1, 2)))


class SeqFirstTransformer(nn.Module):
    """nn.TransformerEncoder with batch_first=False: its layers output (T, N, C)."""

    def __init__(self, dim=16, classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, 2, dim_feedforward=32, dropout=0.0, batch_first=False)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.embed(x).flatten(2).permute(2, 0, 1)  # (T, N, C)
        t = torch.cat([self.cls.expand(1, t.shape[1], -1), t], 0)
        return self.head(self.encoder(t)[0])


class Tiny3DCNN(nn.Module):
    def __init__(self, classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.ReLU()
        )
        self.head = nn.Linear(6, classes)

    def forward(self, x):
        f = self.features(x)
        return self.head((f * f).mean(dim=(2, 3, 4)))  # not plain GAP: dy/dA varies along d, h and w


def as_map(a: torch.Tensor, layout: str, skip: int = 0, grid=None) -> torch.Tensor:
    """A captured output as a channels-first map, spelled out per layout (the test's own reading)."""
    if layout == "map":
        return a
    if layout == "channels_last":
        return a.permute(0, 3, 1, 2)
    if layout == "seq_first":
        a = a.transpose(0, 1)
    h, w = grid
    return a[:, skip:].transpose(1, 2).reshape(a.shape[0], a.shape[2], h, w)


def reference_gradcam(model, x, layer, score, layout="map", skip=0, grid=None, forward_kwargs=None):
    """Grad-CAM in float64 at ``layer`` (dotted name): alpha = spatial mean of dy/dA, ReLU(sum alpha A),
    upsampled (bilinear, or trilinear for volumes, align_corners=False) and min-max normalised."""
    m = copy.deepcopy(model).double().eval()
    store = {}
    handle = dict(m.named_modules())[layer].register_forward_hook(lambda mod, i, o: store.__setitem__("a", o))
    kw = {
        k: (v.double() if torch.is_tensor(v) and v.is_floating_point() else v)
        for k, v in (forward_kwargs or {}).items()
    }
    try:
        out = m(x.double(), **kw)
    finally:
        handle.remove()
    y = score(out)
    (g,) = torch.autograd.grad(y.sum(), store["a"])
    a, g = as_map(store["a"], layout, skip, grid), as_map(g, layout, skip, grid)
    dims = tuple(range(2, a.dim()))
    alpha = g.mean(dim=dims)
    cam = torch.relu(torch.einsum("nc,nc...->n...", alpha, a)).unsqueeze(1)
    mode = "trilinear" if cam.dim() == 5 else "bilinear"
    cam = F.interpolate(cam, size=x.shape[2:], mode=mode, align_corners=False)[:, 0]
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo)).reshape(cam.shape)


def snapshot(model: nn.Module):
    """Everything Grad-CAM must leave as it was: parameters, buffers, flags, hooks."""
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [
            (m.training, len(m._forward_hooks), len(m._backward_hooks), len(m._forward_pre_hooks))
            for m in model.modules()
        ],
        [p.requires_grad for p in model.parameters()],
    )


def assert_unchanged(model: nn.Module, before) -> None:
    after = snapshot(model)
    assert before[0].keys() == after[0].keys()
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert before[1] == after[1], [(i, b, a) for i, (b, a) in enumerate(zip(before[1], after[1])) if b != a][
        :3
    ]
    assert before[2] == after[2]
