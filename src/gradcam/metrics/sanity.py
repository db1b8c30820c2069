"""Sanity check by cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

The layers of a copy of the model are re-initialised one by one from the top (the classifier) down;
after each step the explanation is recomputed and compared with the trained model's by Spearman rank
correlation. A method that depends on what the model learned must lose its correlation as layers are
randomised; a method that behaves like an edge detector keeps it. The user's model is never touched:
the randomisation happens on a deep copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Optional, cast

import torch
from torch import nn

from .faithfulness import spearman


@dataclass
class SanityResult:
    """``layers[i]``: the module randomised at step i + 1 (step 0 is the trained model);
    ``correlation`` (S + 1,): mean Spearman rho with the trained model's maps after each step (1 at step 0);
    ``per_image`` (S + 1, N): the same per image."""

    layers: List[str]
    correlation: torch.Tensor
    per_image: torch.Tensor


def _randomise(module: nn.Module, gen_seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(gen_seed)
        if hasattr(module, "reset_parameters"):
            cast(Callable[[], None], module.reset_parameters)()
        else:
            for p in module.parameters(recurse=False):
                nn.init.normal_(p, std=0.02)


def parametrised_layers(model: nn.Module) -> List[str]:
    """Names of the modules that own parameters, in the order they are registered (input to output)."""
    return [
        name for name, m in model.named_modules() if name and any(True for _ in m.parameters(recurse=False))
    ]


def cascading_randomization(
    model: nn.Module,
    explainer: Callable[[nn.Module], Callable],
    x: torch.Tensor,
    target,
    *,
    layers: Optional[List[str]] = None,
    seed: int = 0,
) -> SanityResult:
    """Spearman rho between the maps of the trained model and of the model randomised from the top
    layer down (cumulatively), one step per layer.

    ``explainer(net)`` builds a method for a network (e.g. ``lambda net: GradCAM(net, layer="features.8")``;
    name layers by string so that they resolve on the copy) that is called as ``m(x, target=target)``.
    ``layers`` (default: every module owning parameters, last first) is the randomisation order.
    Maps are compared for the first target of each image.
    """
    reference = explainer(model)(x, target=target).maps[:, 0]
    net = copy.deepcopy(model)
    order = list(layers) if layers is not None else parametrised_layers(net)[::-1]
    modules = dict(net.named_modules())
    missing = [name for name in order if name not in modules]
    if missing:
        raise ValueError(f"Unknown layer(s) {missing} to randomise; names come from model.named_modules().")
    corr = [torch.ones(x.shape[0])]
    for i, name in enumerate(order):
        _randomise(modules[name], seed * 1000 + i)
        maps = explainer(net)(x, target=target).maps[:, 0]
        corr.append(spearman(maps, reference))
    per_image = torch.stack(corr)
    return SanityResult(order, per_image.mean(1), per_image)
