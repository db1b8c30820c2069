"""The user's own models by name: ``torchvision:NAME``, ``timm:NAME``, a TorchScript file, ``package.module:factory``.

Nothing is downloaded: torchvision weights are taken from the local torch hub cache when they are
there, otherwise ``weights=FILE`` (a state dict) is required; timm models always need ``weights=FILE``.
torchvision and timm are optional: a missing package gives a message saying what to install.
"""

from __future__ import annotations

import importlib
import os
from typing import List, Optional

import torch
from torch import nn

from .loaded import LoadedModel, imagenet_labels, load_state_dict_file  # noqa: F401  (re-exported)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

MODEL_FILE_EXTENSIONS = (".pt", ".pth", ".ts", ".jit", ".pt2", ".torchscript", ".zip")
FORMS = (
    "'efficientnet-lite0', 'efficientnet-lite1', 'efficientnet-lite2' (built in), 'torchvision:NAME' (e.g. torchvision:resnet50), 'timm:NAME' with "
    "--weights FILE, a TorchScript file (model.pt), or 'package.module:factory' (a function returning an nn.Module)"
)


def _require(package: str, install: str):
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ImportError(
            f"This model needs the package '{package}', which is not importable here ({e}). Install it with: "
            f"{install}"
        ) from None


def _num_outputs(model: nn.Module, size=224) -> int:
    h, w = (size, size) if isinstance(size, int) else size
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, h, w))
    except Exception as e:  # noqa: BLE001 - a model that refuses this input: a 3-D one, or say which and how to fix
        conv = next((m for m in model.modules() if isinstance(m, nn.Conv3d)), None)
        if conv is not None:  # a volume model (gradcam.medical): probe it with a 64^3 volume
            try:
                with torch.no_grad():
                    out = model(torch.zeros(1, conv.in_channels, 64, 64, 64))
            except Exception:  # noqa: BLE001 - the class names stay unknown ("class i" from the output)
                return 0
        else:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ValueError(
                f"The model fails on a 1x3x{h}x{w} input ({type(e).__name__}: {first}). If it takes a "
                "fixed input size, give it an image_size attribute (or pass --size/--crop when "
                "explaining)."
            ) from None
    out = out.logits if hasattr(out, "logits") else out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if isinstance(out, dict):
        out = out.get("logits")
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        return 0
    return int(out.shape[1])


def _labels_for(n: int) -> List[str]:
    return imagenet_labels() if n == 1000 else [f"class {i}" for i in range(n)]


def _torchvision(arch: str, weights: Optional[str]) -> LoadedModel:
    tv = _require("torchvision", "pip install torchvision (the build that matches your torch version)")
    try:
        builder = tv.models.get_model_builder(arch)
    except ValueError:
        names = ", ".join(sorted(tv.models.list_models(tv.models))[:40])
        raise ValueError(f"torchvision has no model {arch!r}; some names: {names} ...") from None
    model = builder(weights=None)
    labels: Optional[List[str]] = None
    if weights is None:
        w = tv.models.get_model_weights(arch).DEFAULT
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
        if not os.path.isfile(cached):
            raise ValueError(
                f"torchvision:{arch} has no weights on this machine ({cached} is missing) and gradcam never "
                f"downloads. Pass --weights FILE (a state dict), or fetch them once yourself: "
                f"torchvision.models.get_model('{arch}', weights='DEFAULT')."
            )
        weights = cached
        labels = list(w.meta.get("categories") or []) or None
    load_state_dict_file(model, weights)
    model.eval()
    size, crop, mean, std, source = _torchvision_input(tv, arch)
    fixed = _stated_size(model)
    labels = labels or _labels_for(_num_outputs(model, fixed or crop))
    return LoadedModel(
        model=model,
        labels=labels,
        layer="auto",
        name=f"torchvision:{arch}",
        size=size,
        mean=mean,
        std=std,
        fixed_size=fixed,
        input_source=source,
    )


def _torchvision_input(tv, arch: str):
    """(short side, crop size, mean, std, source) from the architecture's DEFAULT weights transforms
    (metadata only, nothing is downloaded); short side 256, crop 224 and ImageNet's mean/std without them."""
    try:
        t = tv.models.get_model_weights(arch).DEFAULT.transforms()
        resize, crop = int(list(t.resize_size)[0]), int(list(t.crop_size)[0])
        return resize, crop, tuple(t.mean), tuple(t.std), "torchvision weights transforms"
    except Exception:  # noqa: BLE001 - architectures without weights metadata
        return 256, 224, IMAGENET_MEAN, IMAGENET_STD, "default (ImageNet)"


def _stated_size(model: nn.Module):
    """(H, W) when the model states a fixed input size: an ``image_size`` attribute (torchvision ViT), its
    ``config.image_size`` (Hugging Face), or a timm patch embedding with ``strict_img_size``; else ``None``."""
    pe = getattr(model, "patch_embed", None)
    if (
        pe is not None
        and getattr(pe, "strict_img_size", False)
        and not getattr(pe, "dynamic_img_size", False)
    ):
        size = getattr(pe, "img_size", None)
    else:
        size = getattr(model, "image_size", None)
        if size is None:
            size = getattr(getattr(model, "config", None), "image_size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(v, int) for v in size):
        return (int(size[0]), int(size[1]))
    return None


def _timm(arch: str, weights: Optional[str]) -> LoadedModel:
    timm = _require("timm", "pip install timm")
    if weights is None:
        raise ValueError(
            f"timm:{arch} needs --weights FILE (a state dict saved with torch.save(model.state_dict(), FILE)); "
            "gradcam never downloads weights."
        )
    try:
        model = timm.create_model(arch, pretrained=False)
    except RuntimeError as e:
        raise ValueError(f"timm cannot build {arch!r}: {e}") from None
    load_state_dict_file(model, weights)
    model.eval()
    try:
        cfg = dict(timm.data.resolve_model_data_config(model))
        source = "timm data config"
    except Exception:  # noqa: BLE001 - older timm: the pretrained_cfg alone
        cfg = dict(getattr(model, "pretrained_cfg", None) or {})
        source = "timm pretrained_cfg"
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    crop = float(cfg.get("crop_pct") or 0.875)
    fixed = _stated_size(model)
    return LoadedModel(
        model=model,
        labels=_labels_for(_num_outputs(model, fixed or size)),
        layer="auto",
        name=f"timm:{arch}",
        size=int(round(size / crop)),
        fixed_size=fixed,
        input_source=source,
        mean=tuple(cfg.get("mean") or IMAGENET_MEAN),
        std=tuple(cfg.get("std") or IMAGENET_STD),
    )


def _torchscript(path: str, weights: Optional[str]) -> LoadedModel:
    if weights is not None:
        raise ValueError("A TorchScript file already holds its weights; drop --weights.")
    try:
        model = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ValueError(
            f"Cannot load {path} as a TorchScript model ({type(e).__name__}). Save it with "
            "torch.jit.save(torch.jit.script(model), path), or name a 'package.module:factory'."
        ) from None
    model.eval()
    fixed = _stated_size(model)
    return LoadedModel(
        model=model,
        labels=_labels_for(_num_outputs(model, fixed or 224)),
        layer="auto",
        name=os.path.basename(path),
        size=256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        fixed_size=fixed,
        input_source="image_size attribute" if fixed else "default (ImageNet)",
    )


def _factory(spec: str, weights: Optional[str]) -> LoadedModel:
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ImportError(
            f"Cannot import module {mod_name!r} for model {spec!r} ({e}). Make it importable (install the package "
            "or run from its folder)."
        ) from None
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(
            f"Module {mod_name!r} has no callable {attr!r}; '{spec}' must name a function returning a model."
        )
    model = fn()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec}() returned {type(model).__name__}, not a torch.nn.Module.")
    if weights is not None:
        load_state_dict_file(model, weights)
    model.eval()
    fixed = _stated_size(model)
    return LoadedModel(
        model=model,
        labels=_labels_for(_num_outputs(model, fixed or 224)),
        layer="auto",
        name=spec,
        size=256,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        fixed_size=fixed,
        input_source="image_size attribute" if fixed else "default (ImageNet)",
    )


def load_external(name: str, weights: Optional[str] = None) -> LoadedModel:
    """Load a model named in one of the forms of the module docstring; a clear error for anything else."""
    if name.startswith("monai:"):  # MONAI's networks (gradcam.models.monai; the medical extra)
        from .monai import load_monai

        return load_monai(name, weights)
    if name.startswith("torchvision:"):
        return _torchvision(name.split(":", 1)[1], weights)
    if name.startswith("timm:"):
        return _timm(name.split(":", 1)[1], weights)
    if os.path.isfile(name):
        return _torchscript(name, weights)
    if ":" in name and os.path.sep not in name:
        return _factory(name, weights)
    if os.path.sep in name or name.lower().endswith(MODEL_FILE_EXTENSIONS):
        where = "the path exists but is not a file" if os.path.exists(name) else "the file does not exist"
        raise FileNotFoundError(
            f"Model file {name!r}: {where}. Give the path of a TorchScript file "
            f"(saved with torch.jit.save), or a model name: {FORMS}."
        )
    raise ValueError(f"Unknown model {name!r}. A model is one of: {FORMS}.")
