"""More faithfulness measures, batched over images and perturbations (each a few batched forward passes).

Model metrics take ``(model, x, maps, targets, ...)`` like :func:`gradcam.metrics.deletion`: images x
(N, C, H, W), one map per image (N, H, W) (or (N, 1, H, W)), one class per image (or one for all). The
model runs in eval mode and is restored afterwards. Pixels are the features (a pixel's channels change
together) unless ``per_channel=True``, where each of the C x H x W values is a feature and the map is
broadcast over channels (Quantus' convention when a map has one channel).

- ``faithfulness_correlation`` (Bhatt et al., IJCAI 2020): for ``n_runs`` random subsets S of
  ``subset_size`` features, Pearson's r over the runs between sum_{i in S} m_i and f(x) - f(x_S), with
  x_S = x with S set to ``baseline``; f is the target's logit (``softmax=False``, as Quantus).
- ``monotonicity`` (Arya et al. 2019, "One explanation does not fit all", as Quantus' ``Monotonicity``):
  start from the all-``baseline`` image and put the features back in ascending order of the map,
  ``features_in_step`` at a time; 1.0 when the target's probability never decreases, else 0.0.
- ``irof`` (Rieger & Hansen 2020, "IROF: a low resource evaluation metric for explanation methods"):
  superpixels (a ``grid`` x ``grid`` partition, or ``segments`` of your own) are replaced by the image's
  mean in descending order of their mean map value; with q_s = f(x after s segments) / f(x) (probabilities),
  IROF = S - trapz(q_1..q_S, dx=1), the area over the curve, as Quantus (higher is better).
- ``road`` (Rong et al., ICML 2022, "A consistent and efficient evaluation strategy for attribution
  methods"): remove the top (MoRF) or bottom (LeRF) p% of pixels and fill them by noisy linear imputation
  (each removed pixel = the weighted mean of its 8 neighbours, weights 1/6 direct and 1/12 diagonal, a
  sparse linear system solved here by batched multigrid-preconditioned conjugate gradients, plus
  N(0, noise^2)); report for every p whether the model still predicts the target (``output="accuracy"``,
  as ROAD and Quantus) or its probability. MoRF: lower is better; LeRF: higher is better.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import frozen
from .faithfulness import MAX_BATCH, Score, _check, check_max_batch, stream

Baseline = Union[float, torch.Tensor]


def _score_of(target: torch.Tensor, softmax: bool) -> Score:
    """The score of rows f: the target's probability (``softmax``) or logit."""
    if softmax:
        return lambda logits, f: logits.softmax(1).gather(1, target[f, None])[:, 0]
    return lambda logits, f: logits.gather(1, target[f, None])[:, 0]


def _scores(model: nn.Module, images: torch.Tensor, target: torch.Tensor, max_batch: int, softmax: bool):
    """The target's score on each of ``images``, ``max_batch`` per forward pass."""
    return stream(
        model, images.shape[0], lambda f: images[f], _score_of(target, softmax), max_batch, images.device
    )


def _baseline(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    b = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    try:
        return b.expand_as(x) if b.dim() <= x.dim() else b.reshape(x.shape)
    except RuntimeError:
        raise ValueError(
            f"baseline must be a number or broadcast to x {tuple(x.shape)}; got {tuple(b.shape)}."
        ) from None


def _features(x: torch.Tensor, maps: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Attributions per feature (N, F): pixels (F = H W) or every value (F = C H W)."""
    n, c = x.shape[:2]
    if per_channel:
        return maps[:, None].expand(n, c, *maps.shape[-2:]).reshape(n, -1)
    return maps.reshape(n, -1)


def _apply(x: torch.Tensor, base: torch.Tensor, changed: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """x (B, C, H, W) with features ``changed`` (B, F) set to base (B, C, H, W): (B, C, H, W)."""
    b, c, h, w = x.shape
    ch = changed.view(b, c, h, w) if per_channel else changed.view(b, 1, h, w)
    return torch.where(ch, base, x)


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a.double() - a.double().mean(-1, keepdim=True)
    b = b.double() - b.double().mean(-1, keepdim=True)
    den = (a.pow(2).sum(-1) * b.pow(2).sum(-1)).sqrt()
    return torch.where(den > 0, (a * b).sum(-1) / den.clamp_min(1e-300), torch.zeros_like(den)).float()


def faithfulness_correlation(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    n_runs: int = 100,
    subset_size: int = 224,
    baseline: Baseline = 0.0,
    per_channel: bool = False,
    softmax: bool = False,
    seed: int = 0,
    subsets: Optional[torch.Tensor] = None,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Faithfulness correlation per image (N,) (Bhatt et al. 2020): Pearson's r over ``n_runs`` random
    feature subsets S (|S| = ``subset_size``) between sum_{i in S} m_i and f(x) - f(x with S = baseline).

    ``subsets`` (N, R, K) feature indices replace the random draw (seeded with ``seed`` otherwise). The N R
    perturbed inputs go ``max_batch`` per forward pass (:data:`~gradcam.metrics.faithfulness.MAX_BATCH`)."""
    max_batch = check_max_batch(max_batch, batch_size)
    maps, t = _check(model, x, maps, targets)
    a = _features(x, maps.to(x.dtype), per_channel)
    n, nf = a.shape
    if subsets is None:
        if not 0 < subset_size <= nf:
            raise ValueError(f"subset_size must be in 1..{nf} (the number of features); got {subset_size}.")
        g = torch.Generator(device="cpu").manual_seed(seed)
        subsets = torch.rand(n, n_runs, nf, generator=g).argsort(-1)[..., :subset_size].to(x.device)
    subsets = torch.as_tensor(subsets, device=x.device).long()
    if subsets.dim() != 3 or subsets.shape[0] != n:
        raise ValueError(f"subsets must be (N, R, K) feature indices; got {tuple(subsets.shape)}.")
    r = subsets.shape[1]
    base = _baseline(x, baseline)
    att = a[:, None].expand(n, r, nf).gather(2, subsets).sum(-1)  # (N, R)
    flat = subsets.reshape(n * r, -1)

    def make(f: torch.Tensor) -> torch.Tensor:  # input f = image i, run k (f = i R + k)
        i = f // r
        changed = torch.zeros(f.shape[0], nf, dtype=torch.bool, device=x.device).scatter_(1, flat[f], True)
        return _apply(x[i], base[i], changed, per_channel)

    with frozen(model) as model:
        y = _scores(model, x, t, max_batch, softmax)
        yp = stream(model, n * r, make, _score_of(t.repeat_interleave(r), softmax), max_batch, x.device)
    return _pearson(att, y[:, None] - yp.view(n, r))


def monotonicity(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    features_in_step: Optional[int] = None,
    steps: int = 16,
    baseline: Baseline = 0.0,
    per_channel: bool = False,
    softmax: bool = True,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Monotonicity per image (N,) in {0, 1} (Arya et al. 2019): features are put back into the baseline
    image in ascending order of the map, ``features_in_step`` at a time (default ceil(F / steps)); 1 when
    the target's score after each step never decreases (p_{s+1} >= p_s for all s). ``max_batch``: inputs
    per forward pass."""
    max_batch = check_max_batch(max_batch, batch_size)
    maps, t = _check(model, x, maps, targets)
    a = _features(x, maps.to(x.dtype), per_channel)
    n, nf = a.shape
    k = features_in_step or math.ceil(nf / steps)
    if k < 1:
        raise ValueError(f"features_in_step must be >= 1; got {k}.")
    n_steps = math.ceil(nf / k)
    order = torch.sort(a, dim=1, stable=True).indices  # ascending
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(nf, device=x.device).expand(n, nf))
    counts = (torch.arange(1, n_steps + 1, device=x.device) * k).clamp_max(nf)
    base = _baseline(x, baseline)

    def make(f: torch.Tensor) -> torch.Tensor:  # input f = image i, step s (f = i S + s)
        i = f // n_steps
        restored = rank[i] < counts[f % n_steps, None]  # (B, F): features put back
        return _apply(x[i], base[i], ~restored, per_channel)

    with frozen(model) as model:
        score = _score_of(t.repeat_interleave(n_steps), softmax)
        p = stream(model, n * n_steps, make, score, max_batch, x.device).view(n, n_steps)
    return (p.diff(dim=1) >= 0).all(1).float()


def grid_segments(size: Tuple[int, int], grid: int, device=None) -> torch.Tensor:
    """Superpixels as a ``grid`` x ``grid`` partition of an (H, W) image: labels (H, W) in 0..grid^2-1,
    row-major, cell edges at floor(i * H / grid)."""
    h, w = size
    if not 1 <= grid <= min(h, w):
        raise ValueError(f"grid must be in 1..{min(h, w)} cells per side; got {grid}.")
    ys = torch.arange(h, device=device) * grid // h
    xs = torch.arange(w, device=device) * grid // w
    return ys[:, None] * grid + xs[None, :]


def irof(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    segments: Optional[torch.Tensor] = None,
    grid: int = 8,
    baseline: Optional[Baseline] = None,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """IROF per image (N,) (Rieger & Hansen 2020): superpixels (``segments`` (N, H, W) or (H, W) labels
    0..S-1, default a ``grid`` x ``grid`` partition) are set to ``baseline`` (default: each image's mean
    over all values) in descending order of their mean map value; with q_s = p(x_s) / p(x) after s
    segments, IROF = S - trapz(q_1, ..., q_S), the area over the curve (higher is better). Images with
    fewer segments than the largest label are padded with q = 0 steps, as Quantus. ``max_batch``: inputs per
    forward pass."""
    max_batch = check_max_batch(max_batch, batch_size)
    maps, t = _check(model, x, maps, targets)
    n, c, h, w = x.shape
    seg = (
        grid_segments((h, w), grid, x.device)
        if segments is None
        else torch.as_tensor(segments, device=x.device).long()
    )
    seg = seg.expand(n, h, w)
    if seg.min() < 0:
        raise ValueError("segments must be labels >= 0.")
    s = int(seg.max()) + 1
    flat = seg.reshape(n, -1)
    cnt = torch.zeros(n, s, dtype=torch.float64, device=x.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float64)
    )
    tot = torch.zeros(n, s, dtype=torch.float64, device=x.device).scatter_add_(
        1, flat, maps.reshape(n, -1).double()
    )
    present = cnt > 0
    mean = torch.where(present, tot / cnt.clamp_min(1), torch.full_like(tot, -float("inf")))
    order = torch.sort(mean, dim=1, descending=True, stable=True).indices
    seg_rank = torch.empty_like(order).scatter_(1, order, torch.arange(s, device=x.device).expand(n, s))
    pix_rank = seg_rank.gather(1, flat).view(n, h, w)  # rank of each pixel's segment
    base = x.mean((1, 2, 3), keepdim=True).expand_as(x) if baseline is None else _baseline(x, baseline)

    def make(f: torch.Tensor) -> torch.Tensor:  # input f = image i after k + 1 segments (f = i S + k)
        i = f // s
        removed = pix_rank[i] < (f % s + 1).view(-1, 1, 1)  # (B, H, W)
        return torch.where(removed[:, None], base[i], x[i])

    with frozen(model) as model:
        p0 = _scores(model, x, t, max_batch, True)
        qs = stream(model, n * s, make, _score_of(t.repeat_interleave(s), True), max_batch, x.device)
    q = qs.view(n, s).double() / p0.double()[:, None].clamp_min(1e-300)
    valid = torch.arange(s, device=x.device)[None, :] < present.sum(1, keepdim=True)
    q = q * valid
    area = (q[:, 1:] + q[:, :-1]).sum(1) / 2
    return (valid.sum(1).double() - area).float()


def _stencil(v: torch.Tensor) -> torch.Tensor:
    """S(v) = ([1, 2, 1] x [1, 2, 1]) * v with zeros outside the image (last two dims): two shifted-add passes."""
    p = F.pad(v, (1, 1, 1, 1))
    s = (p[..., :, :-2] + p[..., :, 2:]).add_(p[..., :, 1:-1], alpha=2)
    return (s[..., :-2, :] + s[..., 2:, :]).add_(s[..., 1:-1, :], alpha=2)


def _neighbour_sum(v: torch.Tensor) -> torch.Tensor:
    """sum_j w_ij v_j over the 8 neighbours (w = 1/6 direct, 1/12 diagonal; zero outside the image):
    N(v) = (S(v) - 4 v) / 12, the stencil being separable."""
    return (_stencil(v) - 4 * v) / 12


class _Level:
    """One grid of the multigrid preconditioner: ``u`` (M, H, W) 1.0 on unknowns; the operator on vectors
    that vanish off the unknowns is A v = u * (deg * v - N(v)) = c * v - (u / 12) * S(v), c = u (deg + 1/3),
    deg (H, W) the neighbour weight inside the image."""

    def __init__(self, u: torch.Tensor):
        self.u = u
        self.deg = _neighbour_sum(torch.ones(u.shape[-2:], dtype=u.dtype, device=u.device))
        self.c = u * (self.deg + 1 / 3)
        self.u12 = u / 12

    def op(self, v: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.c * v, self.u12, _stencil(v), value=-1)


def _even(v: torch.Tensor) -> torch.Tensor:
    return F.pad(v, (0, v.shape[-1] % 2, 0, v.shape[-2] % 2))


def _levels(u: torch.Tensor, coarsest: int = 8):
    """Grids 2x coarser each time; a coarse cell is unknown only where its 2 x 2 fine cells all are (cells
    past the image edge count as known), so every coarse system keeps its known boundary and stays SPD."""
    levels = [_Level(u)]
    while max(u.shape[-2:]) > coarsest:
        u = (F.avg_pool2d(_even(u)[:, None], 2)[:, 0] == 1).to(u.dtype)
        levels.append(_Level(u))
    return levels


def _coarse_solver(level: _Level):
    """A dense Cholesky factor of the coarsest operator (+ identity on known cells) for each system."""
    h, w = level.u.shape[-2:]
    eye = torch.eye(h * w, dtype=level.u.dtype, device=level.u.device)
    basis = eye.view(h * w, 1, h, w) * level.u  # (n, M, H, W): unit vectors on the unknowns
    mat = level.op(basis).flatten(2).permute(1, 2, 0) + torch.diag_embed(1 - level.u.flatten(1)) + 1e-6 * eye
    return torch.linalg.cholesky(mat)


def _vcycle(levels, chol, r: torch.Tensor, i: int = 0, sweeps: int = 2, omega: float = 0.8) -> torch.Tensor:
    """A V-cycle (damped Jacobi, ``sweeps`` before and after; sum-restriction R = P^T of the piecewise-
    constant prolongation P; float32): an approximation of A^{-1} r, used as CG's preconditioner."""
    lv = levels[i]
    if i == len(levels) - 1:
        return torch.cholesky_solve(r.flatten(1)[..., None], chol)[..., 0].view_as(r) * lv.u
    d = omega * lv.u / lv.deg
    e = d * r
    for _ in range(sweeps - 1):
        e = e + d * (r - lv.op(e))
    h, w = r.shape[-2:]
    rc = levels[i + 1].u * F.avg_pool2d(_even(r - lv.op(e))[:, None], 2, divisor_override=1)[:, 0]
    ec = _vcycle(levels, chol, rc, i + 1, sweeps, omega)
    e = e + lv.u * ec.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]
    for _ in range(sweeps):
        e = e + d * (r - lv.op(e))
    return e


def noisy_linear_imputation(
    x: torch.Tensor,
    keep: torch.Tensor,
    noise: float = 0.01,
    generator: Optional[torch.Generator] = None,
    tol: float = 1e-8,
    max_iter: Optional[int] = None,
    eps: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """ROAD's noisy linear imputation (Rong et al. 2022), batched: x (B, C, H, W), ``keep`` (B, H, W) bool
    (False = remove). Every removed pixel v_i solves sum_j w_ij (v_i - v_j) = 0 over its neighbours j in
    the image (w = 1/6 direct, 1/12 diagonal), i.e. v_i is the weighted mean of its neighbours, known or
    removed; then N(0, noise^2) is added to the removed pixels. The sparse system (the masked graph
    Laplacian) is solved by conjugate gradients preconditioned with a geometric multigrid V-cycle (damped
    Jacobi smoothing, 2 x 2 aggregation, a dense Cholesky solve on the coarsest <= 8 x 8 grid) on all B x C
    systems at once, from a coarse-to-fine fill, in float32 inside float64 iterative refinement (residuals in
    float64), to a relative residual ``tol``. A removed region with no kept pixel around it is set to 0.
    ``eps`` (B, C, H, W): the standard normal draws of the noise (default: drawn on the CPU from ``generator``)."""
    b, c, h, w = x.shape
    if keep.shape != (b, h, w) or keep.dtype != torch.bool:
        raise ValueError(
            f"keep must be a bool (B, H, W) = {(b, h, w)} mask; got {keep.dtype} {tuple(keep.shape)}."
        )
    u = (~keep).double()[:, None].expand(b, c, h, w).reshape(b * c, h, w)  # unknowns
    xv = x.double().reshape(b * c, h, w)
    known = xv * (1 - u)
    levels = _levels((~keep).float())  # the mask is shared by the C channels; the V-cycle runs in float32
    for lv in levels:
        for name in ("u", "c", "u12"):
            setattr(lv, name, getattr(lv, name).repeat_interleave(c, 0))
    chol = _coarse_solver(levels[-1])
    fine, fine32 = _Level(u), levels[0]
    rhs = u * _neighbour_sum(known)
    v = u * _coarse_fill(xv, 1 - u)
    stop = tol**2 * (rhs * rhs).sum((1, 2)).clamp_min(1e-30)
    budget = max_iter or 4 * (h + w)
    while True:  # iterative refinement: float64 residual, float32 correction
        r = rhs - fine.op(v)
        rr = (r * r).sum((1, 2))
        if budget <= 0 or bool((rr <= stop).all()):
            break
        e, used = _pcg32(fine32, levels, chol, r.float(), 1e-4, budget)
        v = v + e.double()
        budget -= used
    if eps is None:
        eps = torch.randn(b, c, h, w, generator=generator, dtype=torch.float64, device="cpu")
    eps = eps.to(device=x.device, dtype=torch.float64)
    out = known + u * v + noise * eps.reshape(b * c, h, w) * u
    return out.reshape(b, c, h, w).to(x.dtype)


def _pcg32(lv: _Level, levels, chol, r: torch.Tensor, rel: float, max_iter: int):
    """Solve A e = r (float32) by flexible CG preconditioned with the V-cycle, from e = 0, until every
    system's residual is below ``rel`` times its start; returns (e, iterations used)."""
    e = torch.zeros_like(r)
    z = _vcycle(levels, chol, r)
    p, rz = z, (r * z).sum((1, 2))
    stop = rel**2 * (r * r).sum((1, 2))
    for it in range(1, max_iter + 1):
        ap = lv.op(p)
        alpha = rz / (p * ap).sum((1, 2)).clamp_min(1e-30)
        e = e + alpha.view(-1, 1, 1) * p
        r_new = r - alpha.view(-1, 1, 1) * ap
        if bool(((r_new * r_new).sum((1, 2)) <= stop).all()):
            return e, it
        z_new = _vcycle(levels, chol, r_new)
        # flexible (Polak-Ribiere) beta: robust to rounding inside the preconditioner
        beta = (z_new * (r_new - r)).sum((1, 2)) / rz.clamp_min(1e-30)
        r, z = r_new, z_new
        rz = (r * z).sum((1, 2))
        p = z + beta.view(-1, 1, 1) * p
    return e, max_iter


def _coarse_fill(v: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """A start for the solver: unknown pixels take the mean of the known ones in ever larger blocks."""
    out, filled = v * known, known > 0
    val, wgt = v * known, known
    while min(val.shape[-2:]) > 1 and not bool(filled.all()):
        val = F.avg_pool2d(val[:, None], 2, ceil_mode=True)[:, 0]
        wgt = F.avg_pool2d(wgt[:, None], 2, ceil_mode=True)[:, 0]
        up = F.interpolate((val / wgt.clamp_min(1e-12))[:, None], size=v.shape[-2:], mode="nearest")[:, 0]
        has = F.interpolate((wgt > 0).double()[:, None], size=v.shape[-2:], mode="nearest")[:, 0] > 0
        take = ~filled & has
        out = torch.where(take, up, out)
        filled = filled | take
    return out


def road(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    percentages: Sequence[float] = tuple(range(10, 100, 10)),
    order: str = "morf",
    noise: float = 0.01,
    output: str = "accuracy",
    seed: int = 0,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """ROAD curve per image (N, P) (Rong et al. 2022): for each p in ``percentages`` the int(H W p / 100)
    pixels ranked first by the map (``order="morf"``, most relevant first) or last (``"lerf"``) are removed
    and imputed by :func:`noisy_linear_imputation`; the value is 1[argmax f(x_p) = target]
    (``output="accuracy"``, ROAD's and Quantus' measure) or the target's probability
    (``output="probability"``). Average over images for the curve, over p as well for one number.

    The N P imputed inputs are imputed and forwarded ``max_batch`` at a time; the noise of input (i, p) is
    drawn from its own generator (seeded from ``seed``), so the result does not depend on ``max_batch``."""
    max_batch = check_max_batch(max_batch, batch_size)
    if order not in ("morf", "lerf"):
        raise ValueError(
            f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first); got {order!r}."
        )
    if output not in ("accuracy", "probability"):
        raise ValueError(f"output must be 'accuracy' or 'probability'; got {output!r}.")
    maps, t = _check(model, x, maps, targets)
    n, c, h, w = x.shape
    pct = torch.as_tensor(list(percentages), dtype=torch.float64)
    if pct.numel() == 0 or bool(((pct < 0) | (pct > 100)).any()):
        raise ValueError(f"percentages must be in [0, 100]; got {list(percentages)}.")
    counts = (pct * (h * w) / 100).long().to(x.device)  # int(), as ROAD / Quantus
    a = maps.reshape(n, -1)
    ranked = torch.sort(a, dim=1, descending=(order == "morf"), stable=True).indices
    rank = torch.empty_like(ranked).scatter_(1, ranked, torch.arange(h * w, device=x.device).expand(n, -1))
    p_n = counts.numel()
    g = torch.Generator(device="cpu").manual_seed(seed)
    seeds = torch.randint(0, 2**62, (n * p_n,), generator=g).tolist()  # one noise generator per input (i, p)
    tt = t.repeat_interleave(p_n)

    def make(f: torch.Tensor) -> torch.Tensor:  # input f = image i at percentage p (f = i P + p)
        i = f // p_n
        keep = ~(rank[i] < counts[f % p_n, None])  # (B, HW)
        eps = torch.stack(
            [
                torch.randn(c, h, w, generator=torch.Generator().manual_seed(seeds[k]), dtype=torch.float64)
                for k in f.tolist()
            ]
        )
        return noisy_linear_imputation(x[i], keep.view(-1, h, w), noise, eps=eps)

    def score(logits: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        if output == "accuracy":
            return (logits.argmax(1) == tt[f]).float()
        return logits.softmax(1).gather(1, tt[f, None])[:, 0]

    with frozen(model) as model:
        return stream(model, n * p_n, make, score, max_batch, x.device).view(n, p_n)
