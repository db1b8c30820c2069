"""Perturbation members of the CAM family: Score-CAM, Ablation-CAM and RISE.

All three score many perturbed copies of each image without gradients, in chunks of ``batch_size``
(memory is bounded by ``batch_size``; the perturbed copies are built chunk by chunk into reusable
buffers, never all at once). Ablation-CAM re-runs only the part of the network after the layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .. import engine
from ..explanation import Explanation, normalize
from ..layers import LayerRef
from ..targets import Target, resolve_targets
from .base import LayerMethod
from .contract import OPTIONS, CallOptions, Method
from .scoring import base_scores, check_batch_size, class_scores

#: The options of a CAM method that scores perturbed copies: no gradients (no counterfactual), and the
#: extra forward passes call the model on the input alone (no forward_kwargs).
_PERTURBATION_OPTIONS = frozenset(OPTIONS) - {"counterfactual", "forward_kwargs"}

_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
#: Ablation-CAM's largest ablated batch, in activation values (bounds its memory whatever ``batch_size``).
MAX_VALUES = 2**25


def _resize(maps: torch.Tensor, size) -> torch.Tensor:
    """(B, *spatial) -> (B, 1, *size), (bi/tri)linear, align_corners=False."""
    m = maps.unsqueeze(1)
    if tuple(m.shape[2:]) == tuple(size):
        return m
    return F.interpolate(m, size=tuple(size), mode=_MODES[len(size)], align_corners=False)


#: Score-CAM's default forward size: masked inputs per forward x their pixels (about 5 inputs at 224 x 224).
SCORE_PIXEL_BUDGET = 2**18


def auto_batch_size(spatial: Sequence[int], budget: int = SCORE_PIXEL_BUDGET) -> int:
    """Inputs of ``spatial`` size per forward within ``budget`` pixels (voxels): max(1, budget // prod(spatial))."""
    return max(1, budget // max(1, math.prod(int(s) for s in spatial)))


class ScoredLayerMethod(LayerMethod):
    """A CAM whose channel weights come from scoring perturbed inputs, not from gradients (Score-CAM, SS-CAM,
    IS-CAM): one capture without a backward, then ``_score(x, cap, i, target)`` gives the weights of layer
    ``i`` (N, K, C); the extra forwards go ``batch_size`` inputs at a time (``None``: a pixel budget)."""

    needs_gradients = False
    supports = _PERTURBATION_OPTIONS
    supports_differentiable = False

    def __init__(self, model: nn.Module, layer="auto", *, batch_size: Optional[int] = None, **kw):
        super().__init__(model, layer, **kw)
        self.batch_size = None if batch_size is None else check_batch_size(batch_size)

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        cap = super()._capture(x, target, top_k, False, **kw)
        cap.perturbation_weights = [self._score(x, cap, i, target) for i in range(len(cap.layers))]
        return cap

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return cap.perturbation_weights[i]

    def _score(self, x: torch.Tensor, cap: engine.Capture, i: int, target: Target) -> torch.Tensor:
        raise NotImplementedError


class ScoreCAM(ScoredLayerMethod):
    """Score-CAM (Wang et al., CVPR-W 2020).

    M^c = normalise(Up(A^c)) (min-max to [0, 1], a flat channel gives an all-zero mask);
    w^c = softmax(f(x * M^c))_k, the class-k probability of the masked input;  L = ReLU( sum_c w^c A^c ).
    One forward per (image, channel), ``batch_size`` masked inputs per forward, all K targets of an image
    read from the same forwards. A callable target's own values are used instead of a probability.
    ``batch_size=None`` (default): as many masked inputs as fit :data:`SCORE_PIXEL_BUDGET` pixels (e.g. 5 at
    224 x 224, 2 at 384 x 256), which keeps the peak memory near a Grad-CAM call's; the result does not depend
    on it. A channel that is zero everywhere (a dead ReLU unit: a third to half of EfficientNet-Lite0's 1280
    at ``_head_act`` on a photo) masks the input to the zero image: that image is scored once per image, not
    once per such channel.
    """

    name = "scorecam"

    def _score(self, x: torch.Tensor, cap: engine.Capture, i: int, target: Target) -> torch.Tensor:
        a = cap.activations[i]
        n, c = a.shape[:2]
        ids = cap.targets
        x = x.detach()
        channels = a.reshape(n * c, *a.shape[2:])
        zero = channels.flatten(1).abs().amax(1) == 0  # its mask is all zeros (normalize: flat -> 0)
        todo = torch.arange(n * c, device=x.device)[~zero]
        out = torch.zeros(n * c, ids.shape[1], dtype=x.dtype, device=x.device)
        with engine.frozen(self.model, self.eval_mode) as model, torch.no_grad():
            if bool(zero.any()):
                blank = class_scores(
                    engine.run_forward(model, torch.zeros_like(x)), target, ids, n, softmax=True
                )
                out[zero] = blank.to(x.dtype).repeat_interleave(c, 0)[zero]
            bs = min(self.batch_size or auto_batch_size(x.shape[2:]), max(1, todo.numel()))
            buf = torch.empty(bs, *x.shape[1:], dtype=x.dtype, device=x.device)
            for start in range(0, todo.numel(), bs):
                f = todo[start : start + bs]
                b = f.shape[0]
                img = f // c
                masks = normalize(_resize(channels[f], x.shape[2:]).to(x.dtype))
                xb = torch.index_select(x, 0, img, out=buf[:b])
                xb.mul_(masks)
                scores = class_scores(engine.run_forward(model, xb), target, ids[img], b, softmax=True)
                out[f] = scores.to(x.dtype)
        return out.reshape(n, c, -1).transpose(1, 2).to(a.dtype)


class _Replay:
    """Re-run only what comes after one layer, for a batch of replacement outputs of that layer.

    ``record`` runs the model once with every module watched, remembering the call tree. Every module
    call that finished before the layer started and returned a tensor of batch N is kept, the outermost
    ones only (a kept call's own sub-calls are dropped). ``run`` then calls the model with those calls
    answered from the record (the image's row expanded to the batch: no computation) and the layer's
    call answered with the replacement: only the operations after the layer compute. The record keeps
    copies (the model may write into an output in place later), handed out as fresh expanded copies of
    one row, so the record itself is never written to; ``run`` returns
    ``None`` when the model cannot work on them (an in-place write into an expanded tensor), and the
    caller falls back to full forward passes with only the layer's output replaced.
    """

    def __init__(self, model: nn.Module, ref: LayerRef):
        self.model = model
        self.ref = ref
        self.cache: Dict[Tuple[nn.Module, int], torch.Tensor] = {}
        self.parent: Dict[Tuple[nn.Module, int], Optional[Tuple[nn.Module, int]]] = {}
        self.calls: Dict[nn.Module, int] = {}
        self.layer_key = (ref.module, ref.call or 0)
        self.activation: Optional[torch.Tensor] = None

    def record(self, x: torch.Tensor):
        """One forward (no gradients): the model's output; the layer's output is in ``self.activation``."""
        n = x.shape[0]
        started = [False]
        stack: List[Tuple[nn.Module, int]] = []
        inside: Dict[Optional[Tuple[nn.Module, int]], List[Tuple[nn.Module, int]]] = {}
        calls, parent, cache = self.calls, self.parent, self.cache

        def pre(m, inputs):
            j = calls.get(m, 0)
            calls[m] = j + 1
            key = (m, j)
            parent[key] = stack[-1] if stack else None
            stack.append(key)
            if key == self.layer_key:
                started[0] = True

        def post(m, inputs, out):
            key = stack.pop()
            nested = inside.pop(key, [])
            if key == self.layer_key:
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"Layer '{self.ref.spec}' returns {type(out).__name__}, not a tensor.")
                self.activation = out
                return out.clone()  # what follows may write into it (``out += identity``)
            up = inside.setdefault(parent[key], [])
            if (
                started[0]
                or m is self.model
                or not isinstance(out, torch.Tensor)
                or out.dim() == 0
                or out.shape[0] != n
            ):
                up.extend(nested)
                return None
            for k in nested:
                cache.pop(k, None)
            # A copy: what follows may write into the output in place (``x = bn(x); relu_(x)``).
            cache[key] = out.clone()
            up.append(key)
            return None

        handles = []
        try:
            for m in dict.fromkeys(self.model.modules()):
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
            output = self.model(x)
        finally:
            for h in handles:
                h.remove()
        if self.activation is None:
            raise ValueError(
                f"Layer '{self.ref.spec}' was never reached by the forward pass; pick a layer the model uses."
            )
        return output

    def plan(self, fast: bool) -> Dict[nn.Module, Dict[int, Optional[torch.Tensor]]]:
        """For every module with answered calls: replay call number -> recorded output (``None``: the layer).

        Calls nested inside an answered call do not happen in the replay, so the replay's k-th call of a
        module is its k-th recorded call that is not nested in an answered one.
        """
        answered: Dict[Tuple[nn.Module, int], Optional[torch.Tensor]] = dict(self.cache) if fast else {}
        answered[self.layer_key] = None

        def skipped(key) -> bool:
            p = self.parent.get(key)
            while p is not None:
                if p in answered:
                    return True
                p = self.parent.get(p)
            return False

        plan: Dict[nn.Module, Dict[int, Optional[torch.Tensor]]] = {}
        for m in {k[0] for k in answered}:
            live = [j for j in range(self.calls[m]) if not skipped((m, j))]
            plan[m] = {k: answered[(m, j)] for k, j in enumerate(live) if (m, j) in answered}
        return plan

    def run(self, x: torch.Tensor, img: torch.Tensor, replacement: torch.Tensor, plan, fast: bool):
        """The model's output for images ``x[img]`` with the layer's output replaced by ``replacement``."""
        b = img.shape[0]
        single = fast and bool((img == img[0]).all())
        saved = {}
        counters: Dict[nn.Module, int] = {}

        def wrap(m, answers):
            orig = m.forward

            def forward(*args, **kwargs):
                k = counters.get(m, 0)
                counters[m] = k + 1
                if k in answers:
                    t = answers[k]
                    if t is None:
                        return replacement
                    return t[img[:1]].expand(b, *t.shape[1:]) if single else t.index_select(0, img)
                return orig(*args, **kwargs)

            return forward

        try:
            for m, answers in plan.items():
                saved[m] = m.__dict__.get("forward")
                m.forward = wrap(m, answers)
            xin = x[img[:1]].expand(b, *x.shape[1:]) if single else x.index_select(0, img)
            try:
                out = self.model(xin)
            except RuntimeError:
                if not fast:
                    raise
                return None  # e.g. an in-place write into an expanded recorded output: use full forwards
        finally:
            for m, old in saved.items():
                if old is None:
                    del m.forward
                else:
                    m.forward = old
        return out


def _version(t: torch.Tensor) -> Optional[int]:
    """``t``'s in-place write counter (shared with its views), ``None`` where there is none."""
    try:
        return t._version
    except RuntimeError:  # inference-mode tensors have no version counter
        return None


class AblationCAM(LayerMethod):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020), the paper's definition.

    w^c = (y - y_c) / y, with y the target's score (the logit, before softmax) and y_c the score when
    channel c of the layer's output is set to zero (w^c = 0 where y = 0);  L = ReLU( sum_c w^c A^c ).

    Ablating a channel changes only what comes after the layer, so only that part is recomputed: one
    recorded forward pass, then all N x C ablated copies of the layer's output go, ``batch_size`` at a
    time, through the rest of the network (the layer's own computation and everything before it are
    answered from the record). Models that write into earlier outputs in place fall back to full
    forward passes with the layer's output replaced (same result, slower). ``batch_size`` ablated copies
    per pass (default 256), and at most ``MAX_VALUES`` (2^25: 128 MB in float32) activation values. A channel
    that is zero everywhere (a dead ReLU unit) is not run: its ablation changes nothing, so w^c = 0 exactly.
    """

    name = "ablationcam"
    needs_gradients = False
    supports = _PERTURBATION_OPTIONS
    supports_differentiable = False
    supports_precision = False  # the replay answers the layer's inputs from one recorded fp32 forward
    refusals = {
        "precision": "its replayed forward passes reuse one recorded forward's exact tensors. Use "
        "precision='fp32', or Score-CAM / Grad-CAM for mixed precision"
    }

    def __init__(self, model: nn.Module, layer="auto", *, batch_size: int = 256, **kw):
        super().__init__(model, layer, **kw)
        if self.reshape is not None:
            raise ValueError(
                "AblationCAM ablates channels of a spatial layer; reshape= (token layers) is not supported."
            )
        self.batch_size = check_batch_size(batch_size)

    def _capture(self, x, target, top_k, counterfactual, **kw) -> engine.Capture:
        engine.check_input(self.model, x)
        layers = self.layers_for(x)
        x = x.detach()
        # A private view of the model (every module its own copy): the replay's hooks and per-call answers
        # are set on the view's modules, never on the user's model, so other threads are unaffected.
        with engine.private_model(self.model, self.eval_mode) as view, torch.no_grad():
            model = view.model
            acts, weights = [], []
            for ref in layers:
                replay = _Replay(model, dataclasses.replace(ref, module=view.module(ref.module)))
                output = replay.record(x)
                scores, ids = resolve_targets(output, target, top_k, x.shape[0])
                a = replay.activation
                if a is None:
                    raise ValueError(
                        f"The forward pass never reached layer '{ref.spec}'; pick a layer the model calls."
                    )
                if a.dim() < 3:
                    raise ValueError(
                        f"Layer '{ref.spec}' outputs shape {tuple(a.shape)}, not a spatial map (N, C, h, w); "
                        "pick a convolutional layer."
                    )
                acts.append(a)
                weights.append(self._ablate(replay, x, a, scores, ids, target))
        return engine.Capture(
            output=output,
            scores=scores,
            targets=ids,
            layers=list(layers),
            activations=acts,
            gradients=[None] * len(acts),
            perturbation_weights=weights,
        )

    def _ablate(self, replay: _Replay, x, a, scores, ids, target) -> torch.Tensor:
        n, c = a.shape[:2]
        # A channel that is zero everywhere is unchanged by its ablation: y_c = y, w^c = 0, no pass needed.
        todo = torch.arange(n * c, device=a.device)[a.reshape(n * c, -1).abs().amax(1) != 0]
        total = todo.numel()
        bs = min(self.batch_size, max(1, total), max(1, MAX_VALUES // a[0].numel()))
        buf = torch.empty(bs, *a.shape[1:], dtype=a.dtype, device=a.device)
        for fast in (True, False):
            plan = replay.plan(fast)
            out = []
            last = None  # (images, zeroed channels, buf's version) of the previous chunk
            for start in range(0, total, bs):
                f = todo[start : start + bs]
                b = f.shape[0]
                img, ch = f // c, f % c
                rows = torch.arange(b, device=a.device)
                ablated = buf[:b]
                if (
                    last is not None
                    and last[2] is not None
                    and _version(buf) == last[2]
                    and torch.equal(last[0][:b], img)
                ):
                    # The buffer still holds these images, untouched by the model (same version): put
                    # back only the channels the previous chunk zeroed, not every copy.
                    p_rows = torch.arange(last[0].shape[0], device=a.device)
                    buf[p_rows, last[1]] = a[last[0], last[1]]
                elif bool((img == img[0]).all()):
                    ablated.copy_(a[img[:1]].expand_as(ablated))  # one image: a broadcast copy
                else:
                    torch.index_select(a, 0, img, out=ablated)
                ablated[rows, ch] = 0
                last = (img, ch, _version(buf))
                o = replay.run(x, img, ablated, plan, fast)
                if o is None:
                    break
                out.append(class_scores(o, target, ids[img], b, softmax=False))
            else:
                break
        y_k = scores.repeat_interleave(c, 0)  # (N * C, K): y, the score of an unchanged model
        if out:
            y_k = y_k.index_copy(0, todo, torch.cat(out).to(y_k.dtype))
        y_k = y_k.reshape(n, c, -1).transpose(1, 2)  # (N, K, C)
        y = scores.unsqueeze(-1)
        ok = y != 0
        return torch.where(ok, (y - y_k) / torch.where(ok, y, torch.ones_like(y)), torch.zeros_like(y_k)).to(
            a.dtype
        )

    def _weights(self, cap: engine.Capture, i: int) -> torch.Tensor:
        return cap.perturbation_weights[i]


class RISE(Method):
    """RISE (Petsiuk et al., BMVC 2018): S_k = 1 / (p * n_masks) * sum_i f_k(x * M_i) M_i.

    M_i: a ``grid`` x ``grid`` Bernoulli(``p``) grid, upsampled bilinearly to (grid + 1) cells of
    ceil(H / grid) x ceil(W / grid) pixels and cropped to H x W at a random shift in [0, cell); f_k the
    softmax probability of class k (a callable target's own values for callable targets). The masks are
    drawn from ``seed`` (the same masks for every image and every call), built ``batch_size`` at a time.
    ``raw`` is S at the input's resolution; ``maps`` is S min-max normalised.
    """

    name = "rise"
    needs_gradients = False
    supports = frozenset()

    def __init__(
        self,
        model: nn.Module,
        layer=None,
        *,
        n_masks: int = 2000,
        grid: int = 7,
        p: float = 0.5,
        seed: int = 0,
        batch_size: int = 64,
        eval_mode: bool = True,
        aug_smooth: bool = False,
        eigen_smooth: bool = False,
        precision: Optional[str] = None,
    ):
        super().__init__(model, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth, precision=precision)
        if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
            raise ValueError(f"n_masks must be a positive int; got {n_masks!r}.")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(
                f"grid must be a positive int (cells per side of the random masks); got {grid!r}."
            )
        if not 0 < p <= 1:
            raise ValueError(f"p (the probability that a cell is kept) must be in (0, 1]; got {p!r}.")
        self.n_masks, self.grid, self.p, self.seed = n_masks, grid, float(p), seed
        self.batch_size = check_batch_size(batch_size)
        self.eval_mode = eval_mode

    def _draw(self, device) -> Tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        cells = (torch.rand(self.n_masks, self.grid, self.grid, generator=gen) < self.p).float()
        shifts = torch.rand(self.n_masks, 2, generator=gen)
        return cells.to(device), shifts.to(device)

    def masks(self, idx: torch.Tensor, size, cells: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """Masks ``idx`` (B, H, W) in [0, 1] (see the class docstring)."""
        h, w = size
        ch, cw = -(-h // self.grid), -(-w // self.grid)
        big = F.interpolate(
            cells[idx].unsqueeze(1),
            size=((self.grid + 1) * ch, (self.grid + 1) * cw),
            mode="bilinear",
            align_corners=False,
        ).squeeze(1)
        sy = (shifts[idx, 0] * ch).long()
        sx = (shifts[idx, 1] * cw).long()
        rows = sy.unsqueeze(1) + torch.arange(h, device=big.device)
        cols = sx.unsqueeze(1) + torch.arange(w, device=big.device)
        b = torch.arange(idx.shape[0], device=big.device)
        return big[b[:, None, None], rows[:, :, None], cols[:, None, :]]

    def _run(self, x: torch.Tensor, target: Target, top_k: Optional[int], opts: CallOptions) -> Explanation:
        """Explain ``x`` (N, C, H, W) for ``target`` (see :mod:`gradcam.targets`)."""
        self._images_only(x)
        engine.check_input(self.model, x)
        n = x.shape[0]
        size = x.shape[-2:]
        x = x.detach()
        cells, shifts = self._draw(x.device)
        total = n * self.n_masks
        bs = min(self.batch_size, total)
        buf = torch.empty(bs, *x.shape[1:], dtype=x.dtype, device=x.device)
        with engine.frozen(self.model, self.eval_mode) as model, torch.no_grad():
            output = engine.run_forward(model, x)
            base, ids = base_scores(output, target, top_k, n)
            sal = torch.zeros(n, ids.shape[1], *size, dtype=x.dtype, device=x.device)
            for start in range(0, total, bs):
                f = torch.arange(start, min(start + bs, total), device=x.device)
                b = f.shape[0]
                # mask-major order: a chunk builds each of its masks once, for all images
                mi, img = f // n, f % n
                m = self.masks(
                    torch.arange(int(mi[0]), int(mi[-1]) + 1, device=x.device), size, cells, shifts
                )
                m = m.to(x.dtype)[mi - mi[0]]
                xb = torch.index_select(x, 0, img, out=buf[:b])
                xb.mul_(m.unsqueeze(1))
                s = class_scores(engine.run_forward(model, xb), target, ids[img], b, softmax=True).to(x.dtype)
                sal.index_add_(0, img, s[:, :, None, None] * m.unsqueeze(1))
        sal = sal / (self.p * self.n_masks)
        return Explanation(
            maps=normalize(sal),
            raw=sal,
            weights=None,
            targets=ids,
            scores=base.detach(),
            layer="input",
            method=self.name,
            interpolation="nearest",
            output=output,
        )
