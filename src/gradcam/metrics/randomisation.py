"""Randomisation: does the map change when the class does? ``random_logit`` (Sixt et al., ICML 2020,
"When explanations lie: why many modified BP attributions fail"), as Quantus' ``RandomLogit``.

For each image a class other than the target is drawn uniformly (seeded): r ~ U{0..K-2}, off = r if
r < target else r + 1 (Quantus' rule); the score is the structural similarity SSIM(e_target, e_off) (lower =
more class-sensitive). SSIM is Wang et al. 2004 as scikit-image's ``structural_similarity`` defaults:
uniform 7-wide window, K1 = 0.01, K2 = 0.03, sample covariances (N_p / (N_p - 1)), mean over the windows
fully inside the map, data range max - min over both maps.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import frozen
from ..targets import logits_of
from .faithfulness import _check
from .robustness import Explain, _as_maps


def ssim(a: torch.Tensor, b: torch.Tensor, dims: int = 2, win_size: int = 7) -> torch.Tensor:
    """SSIM of a and b over their last ``dims`` (1 or 2) dimensions, batched -> (...):
    mean over windows of (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2)),
    C1 = (0.01 R)^2, C2 = (0.03 R)^2, R = max - min over a and b together (per pair)."""
    if a.shape != b.shape or dims not in (1, 2):
        raise ValueError(
            f"ssim needs two equal shapes and dims 1 or 2; got {tuple(a.shape)}, {tuple(b.shape)}, {dims}."
        )
    if min(a.shape[-dims:]) < win_size:
        raise ValueError(
            f"ssim needs at least {win_size} values along each of the last {dims} dimensions; got {tuple(a.shape)}."
        )
    lead = a.shape[:-dims]
    a = a.detach().double().reshape(-1, 1, *a.shape[-dims:])
    b = b.detach().double().reshape(-1, 1, *b.shape[-dims:])
    pool = (lambda v: F.avg_pool1d(v, win_size, 1)) if dims == 1 else (lambda v: F.avg_pool2d(v, win_size, 1))
    both = torch.cat([a, b], 1).flatten(1)
    rng = both.amax(1) - both.amin(1)
    c1 = ((0.01 * rng) ** 2).view(-1, 1, *([1] * dims))
    c2 = ((0.03 * rng) ** 2).view(-1, 1, *([1] * dims))
    norm = win_size**dims / (win_size**dims - 1)
    ua, ub = pool(a), pool(b)
    va = norm * (pool(a * a) - ua * ua)
    vb = norm * (pool(b * b) - ub * ub)
    vab = norm * (pool(a * b) - ua * ub)
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
    s = torch.where(torch.isnan(s), torch.ones_like(s), s)  # two identical flat maps (R = 0)
    return s.flatten(1).mean(1).reshape(lead).float()


def random_logit(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    explain: Explain,
    num_classes: Optional[int] = None,
    seed: int = 0,
    flatten: bool = False,
    others: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Random-logit similarity per image (N,) (Sixt et al. 2020): SSIM between the map of the target and
    the map ``explain(x, off)`` of a random other class (``num_classes`` default: the model's output
    size). ``flatten=True`` compares the row-major flattened maps with a 1-D window, as Quantus does.
    ``others`` (N,) gives the other classes instead of the seeded draw (e.g. to replay another tool's)."""
    maps, t = _check(model, x, maps, targets)
    if others is not None:
        off = torch.as_tensor(others, device=x.device).long().reshape(-1)
        if off.numel() != x.shape[0] or bool((off == t).any()):
            raise ValueError("others must give one class per image, each different from the image's target.")
        num_classes = 2
    if num_classes is None:
        with frozen(model) as m, torch.no_grad():
            num_classes = logits_of(m(x[:1])).shape[1]
    if num_classes < 2:
        raise ValueError(f"random_logit needs at least 2 classes; got {num_classes}.")
    if others is None:
        g = torch.Generator(device="cpu").manual_seed(seed)
        r = torch.randint(0, num_classes - 1, (x.shape[0],), generator=g).to(x.device)
        off = torch.where(r < t, r, r + 1)
    other = _as_maps(explain(x, off)).detach()
    if flatten:
        return ssim(maps.flatten(-2), other.flatten(-2), dims=1)
    return ssim(maps, other, dims=2)
