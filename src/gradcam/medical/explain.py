"""Explain a volume with a 3-D model: :func:`explain_volume` -> :class:`VolumeResult` (and its files)."""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from ..api import BOX_THRESHOLD, check_box_threshold, get_method, get_model
from ..io import atomic_write
from ..models import LoadedModel
from ..volumes import upsample_volume
from .outputs import box3d, montage, peak3d
from .preprocess import WindowSpec, model_input, parse_window
from .read import read_volume
from .volume import MAX_VOXELS, Volume, VolumeError


@dataclass
class VolumeResult:
    """The explanation of one volume.

    - ``volume``: the :class:`Volume` read; ``input_shape``: the model input's (D', H', W');
    - ``class_ids`` / ``classes`` / ``scores`` / ``probabilities``: the K explained classes;
    - ``input_maps`` (K, D', H', W'): the maps on the model's grid, in [0, 1];
    - ``peaks`` (x, y, z) voxel indices and ``peaks_mm`` world coordinates (mm, RAS+, from the affine),
      ``boxes`` (x0, y0, z0, x1, y1, z1) with exclusive ends, all on the volume's own grid (``None``: flat map);
    - ``files``: what was written (``nifti``, ``montage`` per class, ``json``).
    """

    volume: Volume
    input_shape: Tuple[int, ...]
    predictions: List[Tuple[str, int, float]]
    class_ids: List[int]
    classes: List[str]
    scores: List[float]
    probabilities: List[Optional[float]]
    input_maps: torch.Tensor
    peaks: List[Optional[List[int]]]
    peaks_mm: List[Optional[List[float]]]
    boxes: List[Optional[List[int]]]
    layer: str
    method: str
    model: str
    window: Optional[Tuple[float, float]] = None
    box_threshold: float = BOX_THRESHOLD
    files: Dict[str, List[str]] = field(default_factory=dict)

    def map(self, k: int = 0) -> torch.Tensor:
        """The k-th map (D, H, W) at the volume's size (trilinear from ``input_maps``), in [0, 1]."""
        return upsample_volume(self.input_maps[k][None, None], self.volume.shape)[0, 0].clamp_(0, 1)

    def to_dict(self) -> dict:
        """A JSON-ready record (voxel indices (x, y, z); mm from the affine)."""
        v = self.volume
        sz, sy, sx = v.spacing
        return {
            "file": v.source,
            "kind": v.kind,
            "shape_dhw": list(v.shape),
            "shape_on_disk": list(v.shape_on_disk),
            "voxel_size_mm_xyz": [round(sx, 6), round(sy, 6), round(sz, 6)],
            "affine": [[round(float(c), 6) for c in row] for row in v.affine.tolist()],
            "model": self.model,
            "method": self.method,
            "layer": self.layer,
            "model_input_dhw": list(self.input_shape),
            "window": list(self.window) if self.window else None,
            "predictions": [
                {"class": c, "id": i, "probability": round(p, 6)} for c, i, p in self.predictions
            ],
            "explanations": [
                {
                    "class": c,
                    "id": i,
                    "score": round(s, 6),
                    "probability": None if p is None else round(p, 6),
                    "peak": pk,
                    "peak_mm": pm,
                    "box": bx,
                    "box_threshold": self.box_threshold,
                    "nifti": self.files.get("nifti", [None] * len(self.classes))[r],
                    "montage": self.files.get("montage", [None] * len(self.classes))[r],
                }
                for r, (c, i, s, p, pk, pm, bx) in enumerate(
                    zip(
                        self.classes,
                        self.class_ids,
                        self.scores,
                        self.probabilities,
                        self.peaks,
                        self.peaks_mm,
                        self.boxes,
                    )
                )
            ],
            "info": v.info,
        }


def _in_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.Conv2d, nn.Conv1d)):
            return int(m.in_channels)
    return 1


def _loaded(model: Union[str, nn.Module, LoadedModel], weights: Optional[str]) -> LoadedModel:
    if isinstance(model, nn.Module):
        return LoadedModel(model=model.eval(), labels=[], layer="auto", name=type(model).__name__, size=None)
    return get_model(model, weights)


def safe_name(label: str) -> str:
    """A class name as a file-name part: runs of characters other than letters, digits, ``-`` and ``.`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", label).strip("_") or "class"


def _label(loaded: LoadedModel, c: int) -> str:
    return loaded.labels[c] if 0 <= c < len(loaded.labels) else ("custom" if c < 0 else f"class {c}")


def _run(method, x, target, top_k):
    return method(x, top_k=top_k) if target is None else method(x, target=target)


def _predictions(res, loaded: LoadedModel):
    try:
        probs = res.probabilities()[0]
    except (TypeError, ValueError, RuntimeError, AttributeError):
        return [], [None] * res.targets.shape[1]
    top_p, top_i = probs.topk(min(5, probs.numel()))
    preds = [(_label(loaded, int(c)), int(c), float(p)) for c, p in zip(top_i, top_p)]
    return preds, [float(probs[c]) if c >= 0 else None for c in res.targets[0].tolist()]


def explain_volume(
    path: Union[str, Volume],
    model: Union[str, nn.Module, LoadedModel],
    target=None,
    top_k: int = 1,
    *,
    method: str = "gradcam",
    layer: Optional[str] = None,
    weights: Optional[str] = None,
    window: WindowSpec = None,
    spacing=None,
    size=None,
    channels: Optional[int] = None,
    box_threshold: float = BOX_THRESHOLD,
    out: Optional[str] = None,
    max_voxels: int = MAX_VOXELS,
    alpha: float = 0.5,
    stem: Optional[str] = None,
    write_json: bool = True,
) -> VolumeResult:
    """Explain one volume (NIfTI, DICOM file or series folder, ``.npy``, or a :class:`Volume`) with a 3-D model.

    x = window(resample(volume)) repeated to the model's input channels, (1, C, D', H', W'); the method
    (default Grad-CAM: L^c = ReLU(sum_k alpha_k^c A^k), alpha_k^c = mean_zyx dy^c/dA^k_zyx) gives maps on that
    grid, brought back to the volume's (D, H, W) by trilinear upsampling. ``target``: a class id or name,
    or a callable target such as ``gradcam.targets.segmentation(c)`` for a segmenter (default: the top
    ``top_k``). ``window``: (level, width), ``"L,W"`` or a preset (:data:`~.preprocess.WINDOWS`);
    ``spacing`` (mm) or ``size`` (D', H', W'): the model's grid; ``channels``: the input channels (default
    the first convolution's). ``out``: a folder to write ``<stem>.<class>.nii.gz`` (the map with the
    input's shape and affine), ``<stem>.<class>.montage.png`` and (``write_json``) ``<stem>.json``; ``stem``
    defaults to the file's name without its suffix. ``method`` may also be a method object (e.g.
    ``gradcam.GradCAM(model, layer=..., reshape=...)``).
    """
    check_box_threshold(box_threshold)
    volume = path if isinstance(path, Volume) else read_volume(path, max_voxels=max_voxels)
    loaded = _loaded(model, weights)
    dev = next(loaded.model.parameters(), torch.empty(0)).device
    x = model_input(volume, window, spacing, size, channels or _in_channels(loaded.model)).to(dev)
    m = get_method(loaded, method, layer) if isinstance(method, str) else method
    tgt = target
    if isinstance(target, (str, int)) and not isinstance(target, bool):
        tgt = loaded.class_id(target) if loaded.labels else int(target)
    try:
        res = _run(m, x, tgt, top_k)
    except (ValueError, RuntimeError) as e:  # the model cannot take this volume: a failure of this volume
        raise VolumeError(
            volume.source,
            f"the model cannot explain this {'x'.join(map(str, volume.shape))} volume "
            f"as input {tuple(x.shape)} ({e}); resample it to the model's grid with "
            "size=(D, H, W) (CLI: --size).",
        ) from e
    preds, probs = _predictions(res, loaded)
    ids = res.targets[0].tolist()
    result = VolumeResult(
        volume=volume,
        input_shape=tuple(x.shape[2:]),
        predictions=preds,
        class_ids=ids,
        classes=[_label(loaded, c) for c in ids],
        scores=res.scores[0].float().tolist(),
        probabilities=probs,
        input_maps=res.maps[0].detach().float().cpu(),
        peaks=[],
        peaks_mm=[],
        boxes=[],
        layer=res.layer,
        method=res.method,
        model=loaded.name,
        window=parse_window(window),
        box_threshold=float(box_threshold),
    )
    _locate_and_write(result, out, alpha, stem or volume.stem, write_json)
    return result


def _locate_and_write(
    result: VolumeResult, out: Optional[str], alpha: float, stem: str, write_json: bool
) -> None:
    """Peaks, boxes (one full-size map at a time: memory is one map at the volume's size) and the files."""
    v = result.volume
    files: Dict[str, List[str]] = {"nifti": [], "montage": []}
    if out is not None:
        os.makedirs(out, exist_ok=True)
    for k, name in enumerate(result.classes):
        full = result.map(k)
        flat = not float(full.max()) > 0
        pk = None if flat else list(peak3d(full))
        result.peaks.append(pk)
        result.peaks_mm.append(None if pk is None else v.world(pk))
        result.boxes.append(None if flat else box3d(full, result.box_threshold))
        if out is not None:
            base = os.path.join(out, f"{stem}.{safe_name(name)}")
            from .nifti import write_nifti

            files["nifti"].append(write_nifti(base + ".nii.gz", full, v))
            shown = pk or [s // 2 for s in v.shape[::-1]]
            buf = io.BytesIO()
            montage(v, full, shown, result.window, alpha=alpha).save(buf, format="PNG")
            atomic_write(base + ".montage.png", buf.getvalue())
            files["montage"].append(base + ".montage.png")
        del full
    if out is not None:
        result.files = files
    if out is not None and write_json:
        js = os.path.join(out, f"{stem}.json")
        result.files["json"] = [js]
        atomic_write(js, (json.dumps(result.to_dict(), indent=1) + "\n").encode())
