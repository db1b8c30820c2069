"""The compatibility suite's models: real torchvision, timm and Hugging Face architectures with random
weights (nothing is downloaded), the target each is explained for, and one check per model.

``check(spec)`` explains a batch with ``GradCAM(model)`` (``layer="auto"``) and returns a row: the layer
auto chose, the largest difference to a float64 reference of Grad-CAM at that layer (normalised maps), whether
the model is unchanged, and the cost ratio of one explanation to one plain forward pass (medians).
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

import gradcam
from gradcam.targets import detection, segmentation


@dataclass
class Spec:
    lib: str  # torchvision | timm | hf
    name: str
    size: Tuple[int, int]  # input (H, W)
    layer: str  # the layer auto is expected to choose
    layout: Tuple = (
        "map",
    )  # how that layer's output reads as a map: ("map",), ("channels_last",), ("tokens", skip, (h, w))
    kind: str = "class"  # class | segmentation | detection
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.lib}:{self.name}"


SPECS = [
    Spec("torchvision", "resnet50", (96, 96), "layer4"),
    Spec("torchvision", "vgg16", (96, 96), "avgpool"),
    Spec("torchvision", "densenet121", (96, 96), "features"),
    Spec("torchvision", "mobilenet_v3_large", (96, 96), "features"),
    Spec("torchvision", "efficientnet_b0", (96, 96), "features"),
    Spec("torchvision", "convnext_tiny", (96, 96), "features"),
    Spec("torchvision", "regnet_y_400mf", (96, 96), "trunk_output"),
    Spec(
        "torchvision",
        "vit_b_16",
        (112, 112),
        "encoder.layers.encoder_layer_11.ln_1",
        ("tokens", 1, (7, 7)),
        kwargs={"image_size": 112},
    ),
    Spec("torchvision", "swin_t", (112, 112), "permute"),
    Spec(
        "torchvision",
        "fasterrcnn_mobilenet_v3_large_fpn",
        (128, 128),
        "backbone.fpn.layer_blocks.0",
        kind="detection",
        kwargs={"weights_backbone": None, "min_size": 128, "max_size": 128, "box_score_thresh": 0.0},
    ),
    Spec(
        "torchvision",
        "deeplabv3_mobilenet_v3_large",
        (96, 96),
        "classifier.3",
        kind="segmentation",
        kwargs={"weights_backbone": None},
    ),
    Spec("timm", "resnet50", (96, 96), "layer4"),
    Spec("timm", "efficientnet_b0", (96, 96), "bn2"),
    Spec("timm", "convnext_tiny", (96, 96), "stages"),
    Spec(
        "timm",
        "vit_small_patch16_224",
        (112, 112),
        "blocks.11.norm1",
        ("tokens", 1, (7, 7)),
        kwargs={"img_size": 112},
    ),
    Spec(
        "timm",
        "deit_small_distilled_patch16_224",
        (112, 112),
        "blocks.11.norm1",
        ("tokens", 2, (7, 7)),
        kwargs={"img_size": 112},
    ),
    Spec("timm", "swin_tiny_patch4_window7_224", (224, 224), "norm", ("channels_last",)),
    Spec(
        "hf",
        "ViTForImageClassification",
        (112, 112),
        "vit.layers.11.layernorm_before",
        ("tokens", 1, (7, 7)),
        kwargs={"image_size": 112},
    ),
    Spec("hf", "SwinForImageClassification", (224, 224), "swin.layernorm", ("tokens", 0, (7, 7))),
    Spec("hf", "ConvNextForImageClassification", (96, 96), "convnext.encoder.stages.3"),
    Spec("hf", "ResNetForImageClassification", (96, 96), "resnet.encoder.stages.3"),
    Spec(
        "hf",
        "SegformerForSemanticSegmentation",
        (128, 128),
        "decode_head.activation",
        kind="segmentation",
        kwargs={"num_labels": 8},
    ),
]


def build(spec: Spec) -> nn.Module:
    """The architecture with random weights (seeded), in eval mode."""
    torch.manual_seed(0)
    if spec.lib == "torchvision":
        import torchvision

        model = torchvision.models.get_model(spec.name, weights=None, **spec.kwargs)
    elif spec.lib == "timm":
        import timm

        model = timm.create_model(spec.name, pretrained=False, **spec.kwargs)
    else:
        import transformers

        config_cls = getattr(
            transformers,
            spec.name.replace("ForImageClassification", "Config").replace(
                "ForSemanticSegmentation", "Config"
            ),
        )
        model = getattr(transformers, spec.name)(config_cls(**spec.kwargs))
    for m in model.modules():  # torchvision's ViT starts with a zero head: no gradient would reach anything
        if isinstance(m, nn.Linear) and not bool(m.weight.any()):
            nn.init.normal_(m.weight, std=0.02)
    return model.eval()


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out


def target_for(spec: Spec, model: nn.Module, x: torch.Tensor) -> Tuple[Any, Callable[[Any], torch.Tensor]]:
    """The target to explain and the same score written out for the float64 reference (one value per image)."""
    with torch.no_grad():
        out = model(x)
    if spec.kind == "segmentation":
        dense = out.logits if hasattr(out, "logits") else out["out"]
        c = int(dense[0].flatten(1).sum(1).argmax())  # the class with the largest total score on image 0
        mask = (dense.argmax(1) == c).to(torch.float64)

        def seg_score(o):
            d = o.logits if hasattr(o, "logits") else o["out"]
            return (d[:, c] * mask).flatten(1).sum(1)

        return segmentation(c), seg_score
    if spec.kind == "detection":
        # Each image's top detection as the given box; the score of the best match (itself).
        boxes = [o["boxes"][:1] for o in out]

        def det_score(o):
            return torch.stack([oi["scores"][0] for oi in o])

        return detection(boxes, iou=0.99), det_score
    c = int(_logits(out)[0].argmax())
    return c, lambda o: _logits(o)[:, c]


def _as_map(a: torch.Tensor, layout: Tuple) -> torch.Tensor:
    if layout[0] == "map":
        return a
    if layout[0] == "channels_last":
        return a.permute(0, 3, 1, 2)
    _, skip, (h, w) = layout
    return a[:, skip:].transpose(1, 2).reshape(a.shape[0], a.shape[2], h, w)


def reference_at_layer(model: nn.Module, x: torch.Tensor, spec: Spec, score: Callable) -> torch.Tensor:
    """Grad-CAM in float64 from the chosen layer on: the float32 model's activation A at the layer, cast to
    float64, is fed into a float64 copy of the model in place of the layer's output; dy/dA in float64;
    alpha = spatial mean, ReLU(sum alpha A), bilinear upsampling, min-max normalisation."""
    store = {}
    module = dict(model.named_modules())[spec.layer]

    def keep(m, i, o):  # returns None: the model's own output goes on (in-place ops after it stay its own)
        store["a"] = o.detach().clone()

    h = module.register_forward_hook(keep)
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    a64 = store["a"].double().requires_grad_(True)
    m64 = copy.deepcopy(model).double()
    h = dict(m64.named_modules())[spec.layer].register_forward_hook(lambda m, i, o: a64.clone())
    try:
        y = score(m64(x.double()))
    finally:
        h.remove()
    (g,) = torch.autograd.grad(y.sum(), a64)
    a, g = _as_map(a64.detach(), spec.layout), _as_map(g, spec.layout)
    cam = torch.relu(torch.einsum("nc,nchw->nhw", g.mean(dim=(2, 3)), a)).unsqueeze(1)
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].flatten(1)
    lo, hi = cam.min(1, keepdim=True).values, cam.max(1, keepdim=True).values
    return ((cam - lo) / (hi - lo)).reshape(x.shape[0], *x.shape[-2:])


def _state(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [
            (m.training, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for m in model.modules()
        ],
        [p.requires_grad for p in model.parameters()],
    )


def _same(a, b) -> bool:
    return a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check(spec: Spec, batch: int = 2, reps: int = 3, model: Optional[nn.Module] = None) -> dict:
    """Explain ``spec``'s model on a random batch and compare with the float64 reference; time both
    (``reps`` runs each, medians; ``reps=0``: no timing)."""
    model = build(spec) if model is None else model
    torch.manual_seed(1)
    x = torch.randn(batch, 3, *spec.size)
    target, score = target_for(spec, model, x)
    before = _state(model)
    cam = gradcam.GradCAM(model)
    res = cam(x, target=target)  # the first call also resolves "auto" for this input shape
    unchanged = _same(before, _state(model))
    ref = reference_at_layer(model, x, spec, score) if res.layer == spec.layer else None
    err = float((res.maps[:, 0].double() - ref).abs().max()) if ref is not None else float("nan")
    if reps == 0:  # the test suite: no timing
        t_forward = t_cam = float("nan")
    else:
        with torch.no_grad():
            t_forward = _median_time(lambda: model(x), reps)
        t_cam = _median_time(lambda: cam(x, target=target), reps)
    return {
        "model": spec.id,
        "input": f"{batch}x3x{spec.size[0]}x{spec.size[1]}",
        "layer": res.layer,
        "map": "x".join(map(str, res.raw.shape[-2:])),
        "max_err": err,
        "unchanged": unchanged,
        "forward_s": t_forward,
        "gradcam_s": t_cam,
        "ratio": t_cam / t_forward,
    }
