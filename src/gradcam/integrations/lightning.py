"""A PyTorch Lightning callback that logs Grad-CAM explanations of a fixed batch while a model trains.

``GradCAMCallback(images)`` explains ``images`` at the end of every ``every_n_epochs``-th validation epoch
and logs one grid (the image, then one overlay per explained class, the class and its probability under
each; the caption lists the scores) to each of the trainer's loggers that takes images:

- ``TensorBoardLogger``: ``add_image(tag, grid, global_step)`` and ``add_text(tag + "/caption")``;
- ``CSVLogger``: ``<log_dir>/gradcam/<tag>_epoch=<E>_step=<S>.png`` and a ``.txt`` caption beside it;
- ``WandbLogger``: ``log_image(key=tag, images=[grid], caption=[caption])`` (when wandb is installed);
- ``MLFlowLogger``: ``experiment.log_image(run_id, grid, "<tag>/epoch=<E>_step=<S>.png")``.

Lightning runs validation under ``torch.no_grad()`` (in ``fit``) or ``torch.inference_mode()`` (in
``validate``); the callback leaves both for the explanation
(``torch.inference_mode(False)`` + ``torch.enable_grad()``) and clones the batch there, so the
"element 0 of tensors does not require grad" failure cannot happen. Training is never changed: the method
works on a private view of the model (no parameter, buffer, ``.grad`` or train/eval flag is touched, no
reference to the result is kept), and the torch (CPU and CUDA), NumPy and Python RNG states are saved
before and restored after, so a run with the callback has bit-identical losses, weights and random stream.
With several processes only rank 0 (``trainer.is_global_zero``) explains and logs.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Callable, List, Optional, Sequence, Union

import numpy as np
import torch

try:  # the unified package first, then the standalone one
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef, unused-ignore]
    except ImportError:
        raise ImportError(
            "gradcam.integrations.lightning needs PyTorch Lightning: pip install 'gradcam[lightning]'"
        ) from None

from .grid import caption_text, explanation_grid

log = logging.getLogger("gradcam")

__all__ = ["GradCAMCallback"]


class _RNGState:
    """The torch (CPU and initialised CUDA devices), NumPy and Python random states, to put back after a call."""

    def __init__(self) -> None:
        self.torch = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None
        )
        self.numpy = np.random.get_state()
        self.python = random.getstate()

    def restore(self) -> None:
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


class GradCAMCallback(pl.Callback):
    """Log explanations of a fixed batch to the trainer's loggers at the end of chosen validation epochs.

    - ``images``: the model's input batch (N, C, H, W), already preprocessed as the model expects;
    - ``every_n_epochs``: explain after validation epochs E with (E + 1) % every_n_epochs == 0;
    - ``method``: any name of :mod:`gradcam.methods.registry` (``"gradcam"``: L^c = ReLU(sum_k alpha_k^c A^k),
      alpha_k^c = mean_ij dy^c/dA^k_ij); ``layer``: a layer name or ``"auto"`` (the last spatial map);
    - ``top_k``: classes explained per image (its top predictions), or ``targets``: fixed class ids (N,) or
      (N, K) (e.g. the labels of the batch);
    - ``labels``: class names for the captions; ``mean``/``std``: to un-normalise ``images`` for display
      (default: min-max per image); ``alpha``, ``colormap``: the overlay;
    - ``model``: a function ``pl_module -> nn.Module`` naming the network to explain (default the
      LightningModule itself, whose ``forward`` must return class scores (N, num_classes));
    - ``tag``: the logging name; ``method_kwargs``: passed to the method (e.g. ``reshape`` for tokens);
      ``scale``: enlarge small images in the grid (default: tiles of at least 96 px, see
      :func:`gradcam.integrations.grid.explanation_grid`).
    """

    def __init__(
        self,
        images: torch.Tensor,
        every_n_epochs: int = 1,
        method: str = "gradcam",
        layer: str = "auto",
        top_k: int = 1,
        *,
        targets: Optional[Union[Sequence[int], torch.Tensor]] = None,
        labels: Optional[Sequence[str]] = None,
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        alpha: float = 0.5,
        colormap: str = "jet",
        model: Optional[Callable[[Any], torch.nn.Module]] = None,
        tag: str = "gradcam",
        method_kwargs: Optional[dict] = None,
        scale: Optional[int] = None,
    ):
        super().__init__()
        if not isinstance(images, torch.Tensor) or images.dim() < 3:
            raise TypeError(
                "images must be the model's input batch as a tensor (N, C, H, W); got "
                f"{type(images).__name__}{tuple(images.shape) if isinstance(images, torch.Tensor) else ''}."
            )
        for name, v in (("every_n_epochs", every_n_epochs), ("top_k", top_k)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}.")
        from ..methods import registry

        self._factory = registry.get(method)  # an unknown name fails here, not at the end of epoch 1
        self.images = images.detach().clone()
        self.every_n_epochs = every_n_epochs
        self.method, self.layer, self.top_k = method, layer, top_k
        self.targets = None if targets is None else torch.as_tensor(targets, dtype=torch.long)
        self.labels, self.mean, self.std = labels, mean, std
        self.alpha, self.colormap, self.tag = alpha, colormap, tag
        self.model_fn = model
        self.method_kwargs = dict(method_kwargs or {})
        self.scale = scale
        self._explainer: Any = None  # the method object, built for the model on first use
        self._explained: Optional[torch.nn.Module] = None
        self.logged: List[str] = []  # where each grid went ("tensorboard", "csv:<path>", ...), for inspection

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        """Explain and log when this epoch is chosen, on rank 0 only, outside the sanity check."""
        if getattr(trainer, "sanity_checking", False) or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.loggers:
            return
        state = _RNGState()
        try:
            grid, caption = self._explain(pl_module)
            self._log(trainer, grid, caption)
        finally:
            state.restore()

    def _explain(self, pl_module: Any):
        """The grid (PIL) and caption of ``self.images``, computed with gradients enabled."""
        net = self.model_fn(pl_module) if self.model_fn is not None else pl_module
        if self._explainer is None or self._explained is not net:
            self._explainer = self._factory(net, layer=self.layer, **self.method_kwargs)
            self._explained = net
        device = next(net.parameters(), torch.empty(0)).device
        with torch.inference_mode(False), torch.enable_grad():
            x = self.images.clone().to(device)  # a normal tensor even if the batch was made in inference mode
            if self.targets is not None:
                res = self._explainer(x, target=self.targets.to(device))
            else:
                res = self._explainer(x, top_k=self.top_k)
            grid = explanation_grid(
                x, res, self.labels, self.alpha, self.colormap, self.mean, self.std, scale=self.scale
            )
            caption = caption_text(res, self.labels)
        return grid, caption

    def _log(self, trainer: Any, grid, caption: str) -> None:
        """Send the grid to every logger of ``trainer`` that takes images."""
        epoch, step = trainer.current_epoch, trainer.global_step
        arr = np.asarray(grid)
        for lg in trainer.loggers:
            kind = type(lg).__name__
            try:
                if kind == "TensorBoardLogger":
                    lg.experiment.add_image(self.tag, arr, step, dataformats="HWC")
                    lg.experiment.add_text(f"{self.tag}/caption", caption.replace("\n", "  \n"), step)
                    self.logged.append("tensorboard")
                elif kind == "CSVLogger":
                    folder = os.path.join(lg.log_dir, "gradcam")
                    os.makedirs(folder, exist_ok=True)
                    stem = os.path.join(folder, f"{self.tag}_epoch={epoch}_step={step}")
                    grid.save(stem + ".png")
                    with open(stem + ".txt", "w", encoding="utf-8") as f:
                        f.write(caption + "\n")
                    self.logged.append(f"csv:{stem}.png")
                elif kind == "WandbLogger":
                    lg.log_image(key=self.tag, images=[grid], caption=[caption], step=step)
                    self.logged.append("wandb")
                elif kind == "MLFlowLogger":
                    lg.experiment.log_image(lg.run_id, grid, f"{self.tag}/epoch={epoch}_step={step}.png")
                    self.logged.append("mlflow")
                else:
                    log.debug("GradCAMCallback: logger %s takes no images; skipped", kind)
            except ImportError as e:  # e.g. wandb or mlflow missing: say so once per call, keep training
                log.warning("GradCAMCallback: could not log to %s (%s)", kind, e)
