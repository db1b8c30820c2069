"""FullGrad (Srinivas & Fleuret, NeurIPS 2019): the input-gradient term plus every bias-gradient term."""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn

from .. import engine
from ..explanation import INTERPOLATIONS, Explanation, normalize, upsample
from ..layers import LayerRef
from ..targets import Target
from .contract import OPTIONS, CallOptions, Method

_BIASED = {2: (nn.Conv2d, nn.BatchNorm2d), 3: (nn.Conv3d, nn.BatchNorm3d)}


def effective_bias(m: nn.Module) -> Optional[torch.Tensor]:
    """The bias b a layer adds to each output channel in eval mode (``None``: none).

    Convolution: its ``bias``. BatchNorm: beta - gamma * mu / sqrt(var + eps) (its running statistics),
    the constant part of gamma (x - mu) / sqrt(var + eps) + beta.
    """
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.running_mean is None or m.running_var is None:
            return None
        scale = m.weight if m.weight is not None else torch.ones_like(m.running_mean)
        beta = m.bias if m.bias is not None else torch.zeros_like(m.running_mean)
        return (beta - scale * m.running_mean / torch.sqrt(m.running_var + m.eps)).detach()
    b = getattr(m, "bias", None)
    return b.detach() if isinstance(b, torch.Tensor) else None


def bias_layers(model: nn.Module, spatial_dims: int = 2) -> List[LayerRef]:
    """Every convolution and BatchNorm of ``model`` with ``spatial_dims`` (2 or 3) that adds a bias, in module order."""
    kinds = _BIASED.get(spatial_dims, ())
    return [
        LayerRef(name, m)
        for name, m in model.named_modules()
        if name and isinstance(m, kinds) and effective_bias(m) is not None
    ]


def _psi(t: torch.Tensor, dims: int) -> torch.Tensor:
    """FullGrad's post-processing before the channel sum: |t|, min-max normalised per channel map."""
    return normalize(t.abs(), dims=dims)


class FullGrad(Method):
    """FullGrad saliency: S(x) = psi(x * dy/dx) + sum_layers sum_c psi(b_c * dy/dz_c), summed over channels,
    upsampled to the input and normalised.

    z_c is a layer's output channel c and b_c the bias it adds (:func:`effective_bias`); psi is |.| then
    min-max normalisation of each channel map, as the paper's sum over channels of psi (pytorch-grad-cam does
    the same; the authors' code normalises each layer's (C, h, w) block at once instead). Since psi rescales
    each channel, a bias only matters through being zero or not. psi is applied at the layer's resolution
    and the channel sum upsampled once (the authors' order: normalise, then upsample; as upsampling is
    linear, this equals upsampling every normalised channel). One forward and one batched backward give
    dy/dx and every dy/dz. The layers are found by the method (``layer`` is not used).
    """

    name = "fullgrad"
    supports = frozenset(OPTIONS) - {"aug_smooth", "eigen_smooth"}
    refusals = {
        "eigen_smooth": "its terms are per layer and channel, each normalised on its own: there is no "
        "channel sum to take a principal component of. Use gradcam with eigen_smooth"
    }

    def __init__(
        self,
        model: nn.Module,
        layer: object = "auto",
        *,
        interpolation: str = "bilinear",
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if layer not in ("auto", None):
            raise ValueError(
                "fullgrad uses every biased layer of the model; leave layer unset (layer='auto')."
            )
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}."
            )
        self.interpolation = interpolation
        self.eval_mode = eval_mode

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        """Explain ``x`` (N, C, H, W), or volumes (N, C, D, H, W), for ``target`` (see :mod:`gradcam.targets`)."""
        counterfactual, forward_kwargs = opts.counterfactual, opts.forward_kwargs or None
        refs = bias_layers(self.model, x.dim() - 2)
        cap = engine.capture(
            self.model,
            x,
            refs,
            target,
            top_k,
            gradients=True,
            input_gradient=True,
            counterfactual=counterfactual,
            reshape=_identity,
            eval_mode=self.eval_mode,
            forward_kwargs=forward_kwargs,
        )
        size = tuple(x.shape[2:])
        dims = len(size)
        total, raw = self._terms(cap, refs, x.detach(), size, dims)
        return Explanation(
            maps=normalize(total, dims=dims),
            raw=raw,
            weights=None,
            targets=cap.targets,
            scores=cap.scores,
            layer="input+" + "+".join(r.spec for r in refs) if refs else "input",
            method=self.name,
            interpolation=self.interpolation,
            counterfactual=counterfactual,
            output=cap.output,
        )

    def _terms(
        self, cap: engine.Capture, refs: List[LayerRef], x: torch.Tensor, size: Tuple[int, ...], dims: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The summed FullGrad map (N, K, *size) and the input term alone (its ``raw``)."""
        assert cap.input_gradient is not None  # asked for with input_gradient=True
        raw = _psi(cap.input_gradient * x.unsqueeze(1), dims).sum(2)
        total = raw.clone()
        for ref, g in zip(refs, cap.gradients):
            if g is None:
                continue
            bias = effective_bias(ref.module)
            if bias is None:
                continue
            b = bias.to(g.dtype).to(g.device)
            term = _psi(g * b.reshape(1, 1, -1, *([1] * dims)), dims).sum(2)
            total = total + upsample(term, size, self.interpolation)
        return total, raw


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t
