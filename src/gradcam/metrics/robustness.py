"""Robustness of an explanation to small input perturbations (Yeh et al., NeurIPS 2019, "On the
(in)fidelity and sensitivity of explanations"), batched over perturbation samples.

For ``n_samples`` perturbations x + d with d ~ U[-radius, radius] per value (Quantus' ``uniform_noise``),
the sensitivity of a sample is ||e(x) - e(x + d)||_F / ||e(x)||_F with e the explanation of the same
target; ``max_sensitivity`` reports the maximum over samples, ``avg_sensitivity`` the mean (lower = more
robust). All perturbed images are explained in batches of ``max_batch`` by ``explain``; a zero map
gives 0 where the perturbed maps are zero too, inf otherwise.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .faithfulness import MAX_BATCH, _check, check_max_batch

Explain = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _as_maps(m: torch.Tensor) -> torch.Tensor:
    m = getattr(m, "maps", m)
    return m[:, 0] if m.dim() == 4 else m


def sensitivities(
    model: nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    targets,
    explain: Explain,
    n_samples: int = 10,
    radius: float = 0.2,
    seed: int = 0,
    max_batch: int = MAX_BATCH,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Per image and sample (N, S): ||e(x) - e(x + d_s)||_F / ||e(x)||_F, d_s ~ U[-radius, radius]^(C H W).

    ``explain(images, targets)`` returns maps (B, H, W) (or (B, 1, H, W), or an object with ``.maps``).
    Noise is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` as one (S, N, C, H, W) tensor:
    ``(torch.rand(...) * 2 - 1) * radius``. The S N perturbed images go to ``explain`` ``max_batch`` at a time
    (:data:`~gradcam.metrics.faithfulness.MAX_BATCH`; ``batch_size``: its old name)."""
    max_batch = check_max_batch(max_batch, batch_size)
    maps, t = _check(model, x, maps, targets)
    if n_samples < 1 or radius < 0:
        raise ValueError(f"n_samples must be >= 1 and radius >= 0; got {n_samples}, {radius}.")
    n = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(seed)
    noise = ((torch.rand((n_samples, *x.shape), generator=g, dtype=x.dtype) * 2 - 1) * radius).to(x.device)
    xs = (x[None] + noise).flatten(0, 1)  # sample-major: (S N, C, H, W)
    ts = t.repeat(n_samples)
    out = [
        _as_maps(explain(xs[i : i + max_batch], ts[i : i + max_batch])).detach()
        for i in range(0, xs.shape[0], max_batch)
    ]
    pert = torch.cat(out).view(n_samples, n, -1).double()
    a = maps.reshape(1, n, -1).double()
    num = (a - pert).norm(dim=-1)
    den = a.norm(dim=-1)
    ratio = torch.where(den > 0, num / den.clamp_min(1e-300), torch.where(num > 0, float("inf"), 0.0))
    return ratio.T.float()


def max_sensitivity(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets, explain: Explain, **kw
) -> torch.Tensor:
    """Max-sensitivity per image (N,): max over samples of :func:`sensitivities` (Yeh et al. 2019)."""
    return sensitivities(model, x, maps, targets, explain, **kw).amax(1)


def avg_sensitivity(
    model: nn.Module, x: torch.Tensor, maps: torch.Tensor, targets, explain: Explain, **kw
) -> torch.Tensor:
    """Average sensitivity per image (N,): mean over samples of :func:`sensitivities` (Yeh et al. 2019)."""
    return sensitivities(model, x, maps, targets, explain, **kw).mean(1)


__all__: Tuple[str, ...] = ("avg_sensitivity", "max_sensitivity", "sensitivities")
