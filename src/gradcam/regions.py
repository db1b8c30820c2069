"""Where a map points: its peak and the box around its evidence, for 2-D maps and 3-D volumes.

One convention for everything that leaves the library:

- a peak is ``(x, y)`` (``(x, y, z)`` for a volume), x the column, y the row, z the slice of (D, H, W);
- a box is ``(x0, y0, x1, y1)`` (``(x0, y0, z0, x1, y1, z1)`` for a volume) in pixel-edge coordinates with
  exclusive ends, as ``torchvision.ops``: it covers ``x0 <= x < x1``, ``y0 <= y < y1`` and its area is
  ``(x1 - x0) * (y1 - y0)``; an empty box (a flat map) is all zeros.

A box is found by thresholding a map at ``threshold * max(map)`` and segmenting the foreground into
8-connected segments (26-connected in 3-D). :data:`BOX_RULES` says which segment(s) the box surrounds:

- ``"largest"``: the largest segment (the Grad-CAM paper's rule, Sec. 4.1; equal sizes: the peak's);
- ``"peak"``: the segment holding the map's maximum, so the box always contains the peak;
- ``"all"``: every segment above the threshold.

:data:`BOX_THRESHOLD` (0.45, measured on annotated photos) is the default of every user-facing box
(:meth:`gradcam.Explanation.boxes`, :func:`gradcam.image.boxes`, :func:`gradcam.explain`, ``gradcam explain``);
the evaluation code that reproduces the paper's Table 1 passes :data:`PAPER_BOX_THRESHOLD` (0.15)
explicitly (:func:`gradcam.metrics.box_from_map`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BOX_THRESHOLD = 0.45  # the default of every user-facing box (README "Defaults chosen by measurement")
PAPER_BOX_THRESHOLD = 0.15  # the Grad-CAM paper's rule (Sec. 4.1), used by the Table 1 evaluation
BOX_RULES = ("largest", "peak", "all")
DEFAULT_BOX_RULE = "largest"


def check_box_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`BOX_RULES`, else a ValueError naming the choices."""
    if rule not in BOX_RULES:
        raise ValueError(
            f"box rule must be one of {', '.join(BOX_RULES)} (largest: the paper's rule, the largest "
            f"segment; peak: the segment holding the peak; all: every segment); got {rule!r}."
        )
    return rule


def peaks(maps: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """(..., dims) integer ``(x, y)`` (``(x, y, z)`` for ``dims=3``) of each map's first maximum.

    ``maps`` (..., H, W), or (..., D, H, W) with ``dims=3``; "first" in row-major order of the last
    ``dims`` axes. Index i of the flattened map gives x = i mod W, y = (i div W) mod H, z = i div (H W).
    """
    if dims not in (2, 3) or maps.dim() < dims:
        raise ValueError(
            f"peaks needs maps (..., H, W) (dims=2) or (..., D, H, W) (dims=3); got shape "
            f"{tuple(maps.shape)} with dims={dims}."
        )
    h, w = maps.shape[-2:]
    idx = maps.flatten(-dims).argmax(-1)
    coords = [idx % w, torch.div(idx, w, rounding_mode="floor") % h]
    if dims == 3:
        coords.append(torch.div(idx, h * w, rounding_mode="floor"))
    return torch.stack(coords, dim=-1)


def _run_max(lab: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Max of ``lab`` over each horizontal run of foreground pixels (B, H, W), both directions at once:
    a segmented cumulative max, keyed by run index so that one run never leaks into the next."""
    big = lab.shape[-1] * lab.shape[-2] + 1
    dtype = torch.int32 if big * (lab.shape[-1] // 2 + 2) < 2**31 else torch.int64

    def forward(lab, fg):
        start = fg & ~F.pad(fg[..., :-1], (1, 0), value=False)
        run = start.cumsum(-1, dtype=dtype) * big
        return (torch.cummax(run + lab.to(dtype), -1).values - run).to(lab.dtype)

    fwd = forward(lab, fg)
    bwd = forward(lab.flip(-1), fg.flip(-1)).flip(-1)
    return torch.maximum(fwd, bwd) * fg


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """Label the 8-connected segments of bool masks (..., H, W).

    Returns int64 labels of the same shape: 0 on the background, and on each segment the (1-based)
    largest flat pixel index inside it. Computed by max-propagation, batched over all masks: a
    segmented max along every row run and every column run, a 3 x 3 max (diagonal neighbours) and
    pointer jumping (a label L names pixel L - 1, which lies in the same segment), repeated until no
    label changes (a few rounds for compact segments; maps that have converged drop out).
    """
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor; got {mask.dtype}.")
    if mask.dim() < 2:
        raise ValueError(f"mask must have shape (..., H, W); got {tuple(mask.shape)}.")
    h, w = mask.shape[-2:]
    if h * w >= 2**24:
        raise ValueError(
            f"maps of {h}x{w} pixels are too large for exact float labels; downsample them first."
        )
    fg = mask.reshape(-1, h, w)
    ids = torch.arange(1, h * w + 1, dtype=torch.float32, device=mask.device).view(1, h, w)
    lab = torch.where(fg, ids, torch.zeros((), device=mask.device))
    work, wfg = lab, fg
    todo = torch.arange(fg.shape[0], device=mask.device)  # maps not yet converged
    while todo.numel():
        new = _run_max(work, wfg)
        new = _run_max(new.transpose(1, 2), wfg.transpose(1, 2)).transpose(1, 2)
        new = F.max_pool2d(new.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * wfg
        flat = new.flatten(1)
        for _ in range(2):  # pointer jumping: take the label now held by the pixel a label names
            flat = torch.maximum(flat, flat.gather(1, (flat.long() - 1).clamp_min_(0)) * (flat > 0))
        new = flat.view_as(new)
        changed = (new != work).flatten(1).any(1)
        lab[todo[~changed]] = new[~changed]
        todo, work, wfg = todo[changed], new[changed], wfg[changed]
    return lab.long().reshape(mask.shape)


def connected_components_3d(mask: torch.Tensor) -> torch.Tensor:
    """Label the 26-connected segments of bool volumes (..., D, H, W), as :func:`connected_components`.

    Labels: 0 on the background, on each segment the (1-based) largest flat voxel index inside it, found by
    a 3 x 3 x 3 max propagation with pointer jumping, repeated until no label changes.
    """
    if mask.dtype != torch.bool or mask.dim() < 3:
        raise ValueError(f"mask must be a bool tensor (..., D, H, W); got {mask.dtype} {tuple(mask.shape)}.")
    d, h, w = mask.shape[-3:]
    if d * h * w >= 2**24:
        raise ValueError(
            f"volumes of {d}x{h}x{w} voxels are too large for exact float labels; downsample them first."
        )
    fg = mask.reshape(-1, d, h, w)
    ids = torch.arange(1, d * h * w + 1, dtype=torch.float32, device=mask.device).view(1, d, h, w)
    lab = torch.where(fg, ids, torch.zeros((), device=mask.device))
    while True:
        new = F.max_pool3d(lab.unsqueeze(1), 3, stride=1, padding=1).squeeze(1) * fg
        flat = new.flatten(1)
        for _ in range(2):  # pointer jumping: a label L names voxel L - 1, which lies in the same segment
            flat = torch.maximum(flat, flat.gather(1, (flat.long() - 1).clamp_min_(0)) * (flat > 0))
        new = flat.view_as(lab)
        if torch.equal(new, lab):
            return lab.long().reshape(mask.shape)
        lab = new


def _extent(sel: torch.Tensor, dims: int) -> torch.Tensor:
    """(B, 2 * dims) bounding boxes (x0, y0, [z0,] x1, y1, [z1]) of bool masks (B, *spatial); zeros when empty."""
    lo, hi = [], []
    for axis in range(dims, 0, -1):  # x is the last axis, y the one before, z the one before that
        others = [a for a in range(1, dims + 1) if a != axis]
        line = sel.any(dim=others[1]).any(dim=others[0]) if len(others) == 2 else sel.any(dim=others[0])
        size = line.shape[1]
        lo.append(line.float().argmax(1))
        hi.append(size - line.flip(1).float().argmax(1))
    box = torch.stack(lo + hi, 1).long()
    return torch.where(sel.flatten(1).any(1, keepdim=True), box, torch.zeros_like(box))


def map_boxes(
    maps: torch.Tensor, threshold: float = BOX_THRESHOLD, rule: str = DEFAULT_BOX_RULE, dims: int = 2
) -> torch.Tensor:
    """The box around the evidence of each map: (..., 2 * dims) int64, see the module's conventions.

    Foreground: m >= threshold * max(m) and m > 0, segmented 8-connected (26 in 3-D); ``rule`` picks the
    segment(s): ``"largest"`` (the paper's; equal sizes: the one holding the maximum), ``"peak"`` (the one
    holding the maximum) or ``"all"``. A map with no positive value gives the empty box; a constant positive
    map gives the whole map. ``maps`` (..., H, W), or (..., D, H, W) with ``dims=3``.
    """
    check_box_rule(rule)
    if isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1]; got {threshold}.")
    if dims not in (2, 3) or maps.dim() < dims:
        raise ValueError(
            f"maps must have shape (..., H, W) (dims=2) or (..., D, H, W) (dims=3); got "
            f"{tuple(maps.shape)} with dims={dims}."
        )
    spatial = tuple(maps.shape[-dims:])
    m = maps.detach().reshape(-1, *spatial).float()
    b = m.shape[0]
    flat = m.flatten(1)
    fg = (flat >= threshold * flat.amax(1, keepdim=True)) & (flat > 0)
    if rule == "all":
        sel = fg
    else:
        fgs = fg.view(b, *spatial)
        labels = (connected_components(fgs) if dims == 2 else connected_components_3d(fgs)).flatten(1)
        peak_label = labels.gather(1, flat.argmax(1, keepdim=True))
        if rule == "peak":
            best = peak_label.view(-1)
        else:
            counts = torch.zeros(b, flat.shape[1] + 1, device=m.device).scatter_add_(
                1, labels, torch.ones_like(labels, dtype=torch.float)
            )
            counts[:, 0] = 0
            bonus = torch.zeros_like(counts).scatter_(1, peak_label, 0.5)  # ties go to the maximum's segment
            best = (counts + bonus * (counts > 0)).argmax(1)
        sel = (labels == best.view(-1, 1)) & (labels > 0)
    return _extent(sel.view(b, *spatial), dims).reshape(*maps.shape[:-dims], 2 * dims)
