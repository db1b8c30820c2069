"""torch-cam's smoothed family on the one engine: Smooth Grad-CAM++, SS-CAM and IS-CAM.

Smooth Grad-CAM++ averages the derivatives of Grad-CAM++ over noisy copies of the input; SS-CAM and IS-CAM
are Score-CAM variants whose channel weights average the score gains of many noisy (SS-CAM) or scaled
(IS-CAM) masked inputs. The noise comes from a generator seeded with ``seed``, and the same draws serve
every image of a batch, so a call is reproducible and a batch gives each image what it would get alone.
"""

from __future__ import annotations

from typing import Any, List, Optional

import torch
from torch import nn

from .. import engine
from ..explanation import normalize
from ..layers import LayerSpec
from ..targets import Target
from .attribution import GRADIENT_PIXEL_BUDGET, _repeat_kwargs
from .base import LayerMethod
from .perturbation import ScoredLayerMethod, _resize, auto_batch_size
from .scoring import check_batch_size, class_scores


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int; got {value!r}.")
    return value


def _non_negative(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{what} must be a number >= 0; got {value!r}.")
    return float(value)


def gradcampp_weights(d1: torch.Tensor, d2: torch.Tensor, d3: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s channel weights (N, K, C) from derivative estimates d1, d2, d3 (N, K, C, *spatial) of the
    first, second and third order and the activations A (N, C, *spatial):

    alpha_ij = d2_ij / (2 d2_ij + sum_ab A_ab d3_ij) (0 where the denominator is 0),  w = sum_ij alpha_ij ReLU(d1_ij).

    With d1 = g, d2 = g^2, d3 = g^3 (one sample) this is :class:`~gradcam.methods.gradient_weighted.GradCAMPlusPlus`.
    """
    sum_a = a.flatten(2).sum(-1).reshape(a.shape[0], 1, a.shape[1], *([1] * (a.dim() - 2)))
    denom = 2 * d2 + sum_a * d3
    ok = denom != 0
    alpha = torch.where(ok, d2 / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(d2))
    return (alpha * torch.relu(d1)).flatten(3).sum(-1)


class SmoothGradCAMPlusPlus(LayerMethod):
    """Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with the derivatives averaged over noisy inputs.

    g_s = dy/dA at x + e_s, e_s ~ N(0, std^2) (s = 1..samples, on the input's scale); D_p = (1/S) sum_s g_s^p;
    alpha_ij = D_2 / (2 D_2 + sum_ab A_ab D_3),  w^c = sum_ij alpha_ij ReLU(D_1),  L = ReLU( sum_c w^c A^c ),
    with A the clean input's activations (see :func:`gradcampp_weights`). torch-cam's numerator D_2 (the
    paper prints D_1, which makes alpha not reduce to Grad-CAM++'s). ``std=0`` gives Grad-CAM++ exactly.
    The targets are those of the clean input; the noisy copies go ``batch_size`` inputs per pass (whole
    copies of the batch; default: the pixel budget of :mod:`gradcam.methods.attribution`, 10 at 224 x 224).
    The draws come from ``seed``: one (C, H, W) noise per sample, shared by the images of a batch.
    """

    name = "smoothgradcam++"
    supports_differentiable = False

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        samples: int = 4,
        std: float = 0.3,
        seed: int = 0,
        batch_size: Optional[int] = None,
        **kw: Any,
    ):
        super().__init__(model, layer, **kw)
        self.samples = _positive_int(samples, "samples (noisy copies per image)")
        self.std = _non_negative(std, "std (the noise's standard deviation on the input)")
        self.seed = int(seed)
        self.batch_size = None if batch_size is None else check_batch_size(batch_size)

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        cap = super()._capture(x, target, top_k, counterfactual, **kw)
        moments = self._moments(x, cap, target, counterfactual, kw.get("forward_kwargs"))
        cap.perturbation_weights = [
            gradcampp_weights(d1, d2, d3, a) for (d1, d2, d3), a in zip(moments, cap.activations)
        ]
        return cap

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return cap.perturbation_weights[i]

    def noise(self, shape, dtype: torch.dtype, device) -> torch.Tensor:
        """The draws e_s (samples, *shape), std 1 (scaled by ``std`` at use), from ``seed``."""
        gen = torch.Generator(device=device).manual_seed(self.seed)
        return torch.randn((self.samples, *shape), generator=gen, dtype=dtype, device=device)

    def _moments(self, x, cap: engine.Capture, target: Target, counterfactual: bool, forward_kwargs):
        """Per layer, (D_1, D_2, D_3): the mean of g, g^2, g^3 over the noisy copies (N, K, C, *spatial)."""
        if self.std == 0:
            return [(g, g * g, g * g * g) for g in (cap.gradient(i) for i in range(len(cap.layers)))]
        n = x.shape[0]
        x = x.detach()
        fixed = target if callable(target) and not isinstance(target, torch.Tensor) else cap.targets
        eps = self.noise(x.shape[1:], x.dtype, x.device) * self.std
        sums: List[List[torch.Tensor]] = [
            [torch.zeros_like(cap.gradient(i)) for _ in range(3)] for i in range(len(cap.layers))
        ]
        per = max(1, (self.batch_size or auto_batch_size(x.shape[2:], GRADIENT_PIXEL_BUDGET)) // n)
        for s in range(0, self.samples, per):
            t = min(per, self.samples - s)
            noisy = (x.unsqueeze(0) + eps[s : s + t].unsqueeze(1)).reshape(t * n, *x.shape[1:])
            part = engine.capture(
                self.model,
                noisy,
                cap.layers,
                fixed.repeat(t, 1) if isinstance(fixed, torch.Tensor) else fixed,
                counterfactual=counterfactual,
                reshape=self.reshape,
                eval_mode=self.eval_mode,
                forward_kwargs=_repeat_kwargs(forward_kwargs, n, t),
            )
            for i in range(len(cap.layers)):
                g = part.gradient(i).reshape(t, n, *part.gradient(i).shape[1:])
                sums[i][0] += g.sum(0)
                sums[i][1] += (g * g).sum(0)
                sums[i][2] += (g * g * g).sum(0)
        return [tuple(m / self.samples for m in layer) for layer in sums]


class _ScoreSmoothed(ScoredLayerMethod):
    """Shared part of SS-CAM and IS-CAM: masks from the activations, score gains of masked inputs, softmax.

    M^c = Up(normalise(A^c)) (min-max per channel at the layer's resolution, then (bi/tri)linear to the
    input, as torch-cam); gain_s^c = y(x (*) M_s^c) - y(x) for the target's score y (the logit; a callable
    target's own values); w^c = softmax_c( (1/S) sum_s gain_s^c );  L = ReLU( sum_c w^c A^c ). The term y(x)
    is the same for every channel, so it cancels in the softmax and is not computed.
    """

    def __init__(self, model: nn.Module, layer: LayerSpec = "auto", *, samples: int, batch_size=None, **kw):
        super().__init__(model, layer, batch_size=batch_size, **kw)
        self.samples = _positive_int(samples, "samples")

    def _masks(self, s: int, base: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """Sample ``s``'s masks (B, *input spatial) from the channels' base masks ``base`` (B, ...)."""
        raise NotImplementedError

    def _zero_stays_zero(self) -> bool:
        """Whether a channel whose base mask is all zeros (a flat channel) gets zero masks in every sample."""
        return False

    def _score(self, x: torch.Tensor, cap: engine.Capture, i: int, target: Target) -> torch.Tensor:
        """The weights (N, K, C): softmax over channels of the mean score gain (see the class docstring).

        Where a flat channel's masks stay zero (IS-CAM, SS-CAM with ``std=0``), every one of its masked inputs
        is the zero image: it is scored once per image instead of ``samples`` times per channel (a third to
        half of EfficientNet-Lite0's 1280 channels at ``_head_act`` are flat on a photo)."""
        a = cap.activations[i]
        n, c = a.shape[:2]
        x = x.detach()
        ids = cap.targets
        base_masks = normalize(a, dims=a.dim() - 2).reshape(n * c, *a.shape[2:])
        gains = torch.zeros(n * c, ids.shape[1], dtype=x.dtype, device=x.device)
        todo = torch.arange(n * c, device=x.device)
        with engine.frozen(self.model, self.eval_mode) as model, torch.no_grad():
            if self._zero_stays_zero():
                flat = base_masks.flatten(1).amax(1) == 0
                todo = todo[~flat]
                zero = torch.zeros_like(x)
                scores = class_scores(model(zero), target, ids, n, softmax=False).to(x.dtype)
                gains[flat] = self.samples * scores.repeat_interleave(c, 0)[flat]
            bs = min(self.batch_size or auto_batch_size(x.shape[2:]), max(1, todo.numel()))
            for s in range(self.samples):
                for start in range(0, todo.numel(), bs):
                    f = todo[start : start + bs]
                    img, ch = f // c, f % c
                    up = _resize(base_masks[f], x.shape[2:]).to(x.dtype)[:, 0]
                    xb = x.index_select(0, img) * self._masks(s, up, ch).unsqueeze(1)
                    gains[f] += class_scores(model(xb), target, ids[img], f.shape[0], softmax=False).to(
                        x.dtype
                    )
        # y(x) is the same for every channel of an image and target: it cancels in the softmax over channels
        mean = gains.reshape(n, c, -1).transpose(1, 2) / self.samples  # (N, K, C)
        return torch.softmax(mean, dim=-1).to(a.dtype)


class SSCAM(_ScoreSmoothed):
    """SS-CAM (Wang et al. 2020, "Smoothed Score-CAM"), torch-cam's form: Gaussian noise on the masks.

    M_s^c = Up(normalise(A^c)) + delta_s^c, delta ~ N(0, std^2) per pixel of the input's size (default
    std = 2.0, samples = 35, as torch-cam); w^c = softmax_c( (1/S) sum_s [y(x (*) M_s^c) - y(x)] );
    L = ReLU( sum_c w^c A^c ). C x ``samples`` forwards per image, ``batch_size`` masked inputs per forward
    (default: Score-CAM's pixel budget). The noise of (sample s, channel c) comes from ``seed`` alone, the
    same for every image: a call is reproducible and independent of the batch. ``std=0`` averages identical
    samples: torch-cam's Score-CAM weights (softmax over channels of the logit gains).
    """

    name = "sscam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        samples: int = 35,
        std: float = 2.0,
        seed: int = 0,
        batch_size: Optional[int] = None,
        **kw: Any,
    ):
        super().__init__(model, layer, samples=samples, batch_size=batch_size, **kw)
        self.std = _non_negative(std, "std (the noise's standard deviation on the masks)")
        self.seed = int(seed)

    def noise(self, s: int, channel: int, shape, dtype: torch.dtype, device) -> torch.Tensor:
        """delta_s^c (*shape), std 1 (scaled by ``std`` at use): a generator seeded from (seed, s, channel)."""
        gen = torch.Generator(device=device).manual_seed((self.seed * 1_000_003 + s) * 1_000_003 + channel)
        return torch.randn(tuple(shape), generator=gen, dtype=dtype, device=device)

    def _zero_stays_zero(self) -> bool:
        return self.std == 0

    def _masks(self, s: int, base: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return base
        drawn = {}
        for ch in channels.tolist():
            if ch not in drawn:
                drawn[ch] = self.noise(s, ch, base.shape[1:], base.dtype, base.device)
        return base + self.std * torch.stack([drawn[ch] for ch in channels.tolist()])


class ISCAM(_ScoreSmoothed):
    """IS-CAM (Naidu et al. 2020, "Integrated Score-CAM"), torch-cam's form: masks scaled along a path.

    M_i^c = k_i Up(normalise(A^c)) with k_i = sum_{j=1..i} j / S (i = 1..S, default S = 10 as torch-cam);
    w^c = softmax_c( (1/S) sum_i [y(x (*) M_i^c) - y(x)] );  L = ReLU( sum_c w^c A^c ). Deterministic;
    at most C x ``samples`` forwards per image: a flat channel's masked inputs are all the zero image, scored
    once per image.
    """

    name = "iscam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = "auto",
        *,
        samples: int = 10,
        batch_size: Optional[int] = None,
        **kw: Any,
    ):
        super().__init__(model, layer, samples=samples, batch_size=batch_size, **kw)

    def _zero_stays_zero(self) -> bool:
        return True

    def _masks(self, s: int, base: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        return base * ((s + 1) * (s + 2) / (2 * self.samples))
