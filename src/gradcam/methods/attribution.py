"""Pixel attributions users put next to Grad-CAM: Gradient x Input, Integrated Gradients, SmoothGrad, VarGrad.

Each returns a :class:`~gradcam.pixels.PixelExplanation` (``pixels`` (N, K, C, H, W) and ``maps`` its
normalised saliency) on the one engine: the targets are resolved once on the clean input ``x`` (so a
noisy or interpolated copy never changes which class is explained), then every extra input (path steps,
noise samples) is one batched :func:`gradcam.engine.capture` of its own with those class ids.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from .. import engine
from ..pixels import REDUCTIONS, PixelExplanation, pixel_explanation
from ..targets import Target
from .contract import OPTIONS, CallOptions, Method
from .perturbation import auto_batch_size

BASELINES = ("black", "uniform", "blurred")
#: The extra passes' default size: inputs per forward+backward x their pixels (10 inputs at 224 x 224).
#: Measured on EfficientNet-Lite0 (1 thread, 4 images, IG at 8 steps): 8 inputs per pass cost 0.94x the CPU
#: time of 4, 16 inputs 1.05x, 64 inputs 1.49x (larger batches spill the caches); see docs/results/peer-methods.md.
GRADIENT_PIXEL_BUDGET = 2**19


def _repeat_kwargs(forward_kwargs: Optional[dict], n: int, times: int) -> Optional[dict]:
    """``forward_kwargs`` for a batch of ``times`` stacked copies of an N-image batch (batched tensors tiled)."""
    if not forward_kwargs:
        return forward_kwargs
    return {
        k: v.repeat(times, *([1] * (v.dim() - 1)))
        if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == n
        else v
        for k, v in forward_kwargs.items()
    }


class _PixelAttribution(Method):
    """Shared part: ``reduce``, ``batch_size``, the clean capture and the batched extra passes.

    ``batch_size``: inputs per extra forward+backward (whole copies of the batch, at least one); ``None``
    (default): as many as fit :data:`GRADIENT_PIXEL_BUDGET` pixels (10 at 224 x 224). The result does not
    depend on it."""

    name = "pixel-attribution"
    output = "pixels"
    supports = frozenset(OPTIONS) - {"aug_smooth", "eigen_smooth"}

    def __init__(
        self,
        model: nn.Module,
        *,
        reduce: str = "abs-max",
        eval_mode: bool = True,
        batch_size: Optional[int] = None,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}; got {reduce!r}.")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(
                f"batch_size must be a positive int (images per extra pass); got {batch_size!r}."
            )
        self.reduce = reduce
        self.eval_mode = eval_mode
        self.batch_size = batch_size

    def _clean(
        self,
        x: torch.Tensor,
        target: Target,
        top_k: Optional[int],
        counterfactual: bool,
        forward_kwargs: Optional[dict],
        input_gradient: bool,
    ) -> engine.Capture:
        return engine.capture(
            self.model,
            x,
            [],
            target,
            top_k,
            gradients=False,
            input_gradient=input_gradient,
            counterfactual=counterfactual,
            eval_mode=self.eval_mode,
            forward_kwargs=forward_kwargs,
        )

    def _fixed_target(
        self, cap: engine.Capture, target: Target
    ) -> Union[torch.Tensor, Callable[[Any], torch.Tensor]]:
        """The targets of ``cap`` as something that applies to any stack of copies of the batch."""
        if callable(target) and not isinstance(target, torch.Tensor):
            return target
        return cap.targets

    def _gradients(
        self, xs: torch.Tensor, n: int, fixed: Any, counterfactual: bool, forward_kwargs: Optional[dict]
    ) -> torch.Tensor:
        """dy/dx (S*N, K, C, H, W) for ``xs``, S stacked copies of an N-image batch, in chunks of whole copies."""
        copies = xs.shape[0] // n
        per = max(1, (self.batch_size or auto_batch_size(xs.shape[2:], GRADIENT_PIXEL_BUDGET)) // n)
        out = []
        for s in range(0, copies, per):
            t = min(per, copies - s)
            chunk = xs[s * n : (s + t) * n]
            tgt = fixed.repeat(t, 1) if isinstance(fixed, torch.Tensor) else fixed
            cap = engine.capture(
                self.model,
                chunk,
                [],
                tgt,
                gradients=False,
                input_gradient=True,
                counterfactual=counterfactual,
                eval_mode=self.eval_mode,
                forward_kwargs=_repeat_kwargs(forward_kwargs, n, t),
            )
            assert cap.input_gradient is not None  # asked for with input_gradient=True
            out.append(cap.input_gradient)
        return torch.cat(out)


class GradientXInput(_PixelAttribution):
    """Gradient x Input (Shrikumar et al. 2016): pixels = x * dy^c/dx, one forward and one batched backward.

    For a linear model y = w.x + b it is each pixel's exact contribution w_i x_i.
    """

    name = "gradient-x-input"

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        self._images_only(x)
        counterfactual, forward_kwargs = opts.counterfactual, opts.forward_kwargs or None
        cap = self._clean(x, target, top_k, counterfactual, forward_kwargs, input_gradient=True)
        assert cap.input_gradient is not None  # asked for with input_gradient=True
        pixels = cap.input_gradient * x.detach().unsqueeze(1)
        return pixel_explanation(pixels, cap, self.name, self.reduce, counterfactual)


def baseline_for(x: torch.Tensor, baseline: Union[str, float, torch.Tensor]) -> torch.Tensor:
    """The reference input x' of Integrated Gradients, shaped like ``x``.

    ``"black"``: zeros; ``"uniform"``: each image's mean per channel; ``"blurred"``: a box blur of x whose
    window is a quarter of the short side (the information removed, the layout kept); a number: that
    constant; a tensor: broadcast to ``x``'s shape.
    """
    if isinstance(baseline, torch.Tensor):
        try:
            return baseline.to(x.dtype).to(x.device).expand_as(x).clone()
        except RuntimeError as e:
            raise ValueError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to the input "
                f"{tuple(x.shape)}; pass one image (C, H, W) or a batch like x."
            ) from e
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if baseline == "black":
        return torch.zeros_like(x)
    if baseline == "uniform":
        return x.mean(dim=tuple(range(2, x.dim())), keepdim=True).expand_as(x).clone()
    if baseline == "blurred":
        k = max(1, min(x.shape[-2:]) // 4) | 1
        pool = torch.nn.functional.avg_pool2d if x.dim() == 4 else torch.nn.functional.avg_pool3d
        return pool(x, k, stride=1, padding=k // 2, count_include_pad=False)
    raise ValueError(
        f"baseline must be one of {', '.join(BASELINES)}, a number or a tensor; got {baseline!r}."
    )


class IntegratedGradients(_PixelAttribution):
    """Integrated Gradients (Sundararajan et al., ICML 2017) with the trapezoid rule on ``steps`` intervals.

    IG_i(x) = (x_i - x'_i) * integral_0^1 dy/dx_i (x' + a (x - x')) da
            ~ (x_i - x'_i) * sum_{s=0..m} w_s dy/dx_i (x' + (s/m) (x - x')),  w_0 = w_m = 1/(2m), else 1/m.

    Completeness: sum_i IG_i = y(x) - y(x') up to the quadrature error (checked at 64 steps). The m + 1
    path points of all N images go through the model in batches of ``batch_size`` inputs; the targets
    are those of x (its top-1 unless given), fixed along the path.
    """

    name = "integrated-gradients"

    def __init__(
        self,
        model: nn.Module,
        *,
        steps: int = 32,
        baseline: Union[str, float, torch.Tensor] = "black",
        reduce: str = "abs-max",
        eval_mode: bool = True,
        batch_size: Optional[int] = None,
        **kw: Any,
    ):
        super().__init__(model, reduce=reduce, eval_mode=eval_mode, batch_size=batch_size, **kw)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(
                f"steps must be a positive int (trapezoid intervals; 32-64 is typical); got {steps!r}."
            )
        if isinstance(baseline, str) and baseline not in BASELINES:
            raise ValueError(
                f"baseline must be one of {', '.join(BASELINES)}, a number or a tensor; got {baseline!r}."
            )
        self.steps = steps
        self.baseline = baseline

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        self._images_only(x)
        counterfactual, forward_kwargs = opts.counterfactual, opts.forward_kwargs or None
        x = x.detach()
        cap = self._clean(x, target, top_k, counterfactual, forward_kwargs, input_gradient=False)
        base = baseline_for(x, self.baseline)
        m, n = self.steps, x.shape[0]
        alphas = torch.linspace(0, 1, m + 1, dtype=x.dtype, device=x.device)
        path = base.unsqueeze(0) + alphas.reshape(-1, *([1] * x.dim())) * (x - base).unsqueeze(0)
        g = self._gradients(
            path.reshape(-1, *x.shape[1:]), n, self._fixed_target(cap, target), counterfactual, forward_kwargs
        )
        w = torch.full((m + 1,), 1.0 / m, dtype=x.dtype, device=x.device)
        w[0] = w[-1] = 0.5 / m
        avg = torch.einsum("s,snk...->nk...", w, g.reshape(m + 1, n, *g.shape[1:]))
        pixels = avg * (x - base).unsqueeze(1)
        return pixel_explanation(pixels, cap, self.name, self.reduce, counterfactual)


class SmoothGrad(_PixelAttribution):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over noisy copies of the input.

    pixels = (1/n) sum_j dy/dx (x + e_j),  e_j ~ N(0, sigma^2),  sigma = noise * (max x - min x) per image.
    ``noise=0`` gives the plain gradient exactly. The noise comes from a generator seeded with ``seed``
    (the same call gives the same result); the targets are those of the clean x.
    """

    name = "smoothgrad"

    def __init__(
        self,
        model: nn.Module,
        *,
        samples: int = 25,
        noise: float = 0.15,
        seed: int = 0,
        reduce: str = "abs-max",
        eval_mode: bool = True,
        batch_size: Optional[int] = None,
        **kw: Any,
    ):
        super().__init__(model, reduce=reduce, eval_mode=eval_mode, batch_size=batch_size, **kw)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive int (noisy copies per image); got {samples!r}.")
        if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
            raise ValueError(
                f"noise must be a number >= 0 (sigma as a fraction of the input's range); got {noise!r}."
            )
        self.samples = samples
        self.noise = float(noise)
        self.seed = int(seed)

    def _noisy_gradients(
        self,
        x: torch.Tensor,
        cap: engine.Capture,
        target: Target,
        counterfactual: bool,
        forward_kwargs: Optional[dict],
    ) -> torch.Tensor:
        """dy/dx at every noisy copy, (S, N, K, C, H, W); one clean copy when ``noise`` is 0 (the plain gradient)."""
        n = x.shape[0]
        if self.noise == 0:
            return self._gradients(
                x, n, self._fixed_target(cap, target), counterfactual, forward_kwargs
            ).unsqueeze(0)
        span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).reshape(n, *([1] * (x.dim() - 1)))
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        # drawn image by image (all of image 0's samples first), so image i of a batch gets the draws that a
        # batch starting with it would: a batch of one draws what row 0 of a larger batch draws
        eps = torch.randn((n, self.samples, *x.shape[1:]), generator=gen, dtype=x.dtype, device=x.device)
        eps = eps.transpose(0, 1)
        noisy = x.unsqueeze(0) + eps * (self.noise * span).unsqueeze(0)
        g = self._gradients(
            noisy.reshape(-1, *x.shape[1:]),
            n,
            self._fixed_target(cap, target),
            counterfactual,
            forward_kwargs,
        )
        return g.reshape(self.samples, n, *g.shape[1:])

    def _combine(self, g: torch.Tensor) -> torch.Tensor:
        return g.mean(0)

    def _run(
        self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions
    ) -> PixelExplanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        self._images_only(x)
        counterfactual, forward_kwargs = opts.counterfactual, opts.forward_kwargs or None
        x = x.detach()
        cap = self._clean(x, target, top_k, counterfactual, forward_kwargs, input_gradient=False)
        g = self._noisy_gradients(x, cap, target, counterfactual, forward_kwargs)
        return pixel_explanation(self._combine(g), cap, self.name, self.reduce, counterfactual)


class VarGrad(SmoothGrad):
    """VarGrad (Adebayo et al. 2018): the variance of the gradient over noisy copies of the input.

    pixels = (1/n) sum_j (g_j - mean_j g_j)^2 with g_j = dy/dx (x + e_j) as in :class:`SmoothGrad`
    (the population variance, as Captum's NoiseTunnel ``vargrad``). Always >= 0.
    """

    name = "vargrad"

    def _combine(self, g: torch.Tensor) -> torch.Tensor:
        return g.var(0, correction=0)
