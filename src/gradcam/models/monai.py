"""``monai:NAME(key=value, ...)``: a network of MONAI's ``monai.networks.nets`` with random or given weights.

``load_monai("monai:DenseNet121(spatial_dims=3,in_channels=1,out_channels=2)", weights="w.pt")``: the
arguments are Python literals (numbers, strings, tuples, lists, True/False/None), read with
``ast.literal_eval`` (nothing is executed). Without ``weights`` the network keeps MONAI's random
initialisation (a warning says so), useful for trying the pipeline, never for reading a map.
"""

from __future__ import annotations

import ast
import warnings
from typing import Optional, Tuple

from .loaded import LoadedModel, load_state_dict_file


def parse_call(spec: str) -> Tuple[str, tuple, dict]:
    """``"NAME(a, k=v)"`` -> (NAME, (a,), {k: v}) with literal arguments; a bare ``"NAME"`` -> (NAME, (), {})."""
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        node = None
    if isinstance(node, ast.Name):
        return node.id, (), {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(
            f"monai model {spec!r} is not NAME or NAME(key=value, ...), e.g. "
            "monai:DenseNet121(spatial_dims=3,in_channels=1,out_channels=2)."
        )
    try:
        args = tuple(ast.literal_eval(a) for a in node.args)
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    except ValueError:
        raise ValueError(
            f"monai model {spec!r}: arguments must be literals (numbers, strings, tuples)."
        ) from None
    return node.func.id, args, kwargs


def load_monai(name: str, weights: Optional[str] = None) -> LoadedModel:
    """Build ``monai.networks.nets.<NAME>(...)`` from ``name`` = ``"monai:NAME(...)"``; load ``weights`` strictly."""
    spec = name.split(":", 1)[1]
    arch, args, kwargs = parse_call(spec)
    try:
        from monai.networks import nets
    except ImportError as e:
        raise ImportError(
            f"monai: models need MONAI ({e}); install it with: pip install 'gradcam[medical]'"
        ) from None
    cls = getattr(nets, arch, None)
    if cls is None or not callable(cls):
        raise ValueError(f"monai.networks.nets has no network {arch!r}; e.g. DenseNet121, SEResNet50, UNet.")
    try:
        model = cls(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"monai:{spec}: {e}") from None
    if weights is not None:
        load_state_dict_file(model, weights)
    else:
        warnings.warn(
            f"monai:{arch} has random weights (no --weights FILE given).", UserWarning, stacklevel=2
        )
    n = kwargs.get("out_channels", kwargs.get("num_classes"))
    labels = [f"class {i}" for i in range(int(n))] if isinstance(n, int) else []
    return LoadedModel(model=model.eval(), labels=labels, layer="auto", name=f"monai:{spec}", size=None)
