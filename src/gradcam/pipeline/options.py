"""The typed options of the folder job (:class:`Options`): what ``gradcam explain`` and
:func:`gradcam.distributed.explain_dataset` both build, checked once in :meth:`Options.check`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..storage import is_remote, local_path

MAX_SIDE = 1024  # gradcam.image.MAX_SIDE (not imported: building options needs no torch)
MAX_MEGAPIXELS = 50.0  # gradcam.image.MAX_PIXELS / 1e6
DEFAULT_METHOD = (
    "gradcam"  # outputs of this method keep the plain names (<stem>.png); others carry the method
)
ENGINES = ("local", "ray")
PRECISIONS = (
    "fp32",
    "bf16",
    "fp16",
)  # gradcam.engine.PRECISIONS (not imported: building options needs no torch)


@dataclass
class Options:
    """Everything the folder job needs (see :func:`gradcam.pipeline.run`); no ``argparse`` involved.

    - ``paths``: image files and/or folders (searched recursively); ``demo``: add the bundled photo;
    - ``out``: output folder; ``model``/``weights``: a model name as :func:`gradcam.models.load_model` takes;
    - ``method``: a registered method name, or several separated by commas (``"gradcam,eigencam"``: one pass
      over the photos, each photo decoded once); outputs of a method other than ``gradcam`` carry its name
      (``<stem>.<method>.png``, ``.json``, ``.maps.pt``);
    - ``target`` (class name or id) or ``top`` (the K best classes; default 1); ``layer``;
    - ``quality`` ("fast", "standard", "high": a preset naming model, size and box threshold; ``model`` is then
      the preset's when left at its default), ``box_threshold`` (default: the model's or preset's measured one);
      ``size``/``crop``/``mean``/``std``: the model input (:func:`gradcam.models.inputs.configure_input`);
    - overlays: ``alpha``, ``colormap``, ``colorbar``; outputs: ``json``, ``maps``, ``report`` (implies ``json``);
      ``neurons``: a channel-names file for the printed descriptions;
    - ``force``: redo every photo; ``batch_size``; ``device``; ``precision`` (``"fp32"``, ``"bf16"``,
      ``"fp16"``: the forward passes under ``torch.autocast``, gradients and maps in float32; fp16 needs a
      CUDA or MPS device); ``prefetch``: batches the local engine decodes
      and preprocesses ahead in a background thread while one is explained and another written (default 2;
      0: everything in the calling thread, one batch after the other; outputs are the same);
    - limits: ``max_side`` (long side of the model input, 0 or ``None``: no cap), ``max_megapixels`` (files
      whose header declares more are refused before decoding; 0 or ``None``: no limit of ours);
    - engine: ``engine`` ("local" or "ray"), and for Ray ``address``, ``workers``, ``threads`` (torch threads
      per actor) and ``gpus_per_worker`` (GPUs each actor holds, fractional allowed; default 1);
    - ``storage_options``: fsspec options for inputs and ``out`` given as URLs (``s3://bucket/photos``; for
      S3 s3fs's keyword arguments: ``{"endpoint_url": ..., "key": ..., "secret": ...}``), see
      :mod:`gradcam.storage`; credentials may also come from the store's standard environment;
    - ``method_options``: options of the perturbation methods, ``{"batch_size": N}`` (inputs per forward pass
      of scorecam, ablationcam, rise, occlusion) and ``{"n_masks": N}`` (rise); given only to the methods
      that take them.
    """

    paths: Sequence[str] = ()
    out: str = "gradcam-out"
    model: str = "efficientnet-lite0"
    weights: Optional[str] = None
    method: str = DEFAULT_METHOD
    target: Union[None, int, str] = None
    top: Optional[int] = None
    layer: Optional[str] = None
    quality: Optional[str] = None
    box_threshold: Optional[float] = None
    box_rule: str = "largest"  # which segment(s) the box surrounds: largest, peak, all (gradcam.regions)
    size: Any = None
    crop: Optional[str] = None
    mean: Any = None
    std: Any = None
    alpha: float = 0.5
    colormap: str = "jet"
    colorbar: bool = False
    json: bool = False
    maps: bool = False
    report: bool = False
    neurons: Optional[str] = None
    force: bool = False
    batch_size: int = 4
    device: str = "cpu"
    precision: str = "fp32"
    prefetch: int = 2  # gradcam.pipeline.local.PREFETCH
    max_side: Optional[int] = MAX_SIDE
    max_megapixels: Optional[float] = MAX_MEGAPIXELS
    demo: bool = False
    engine: str = "local"
    address: Optional[str] = None
    workers: Optional[int] = None
    threads: Optional[int] = None
    gpus_per_worker: float = 1.0
    method_options: Dict[str, int] = field(default_factory=dict)
    storage_options: Dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> List[str]:
        """The method names, in the given order (``method`` split at commas, duplicates dropped)."""
        names: List[str] = []
        for m in str(self.method).split(","):
            m = m.strip()
            if m and m not in names:
                names.append(m)
        return names

    @property
    def k(self) -> int:
        """The number of classes explained per photo (``top``, default 1)."""
        return 1 if self.top is None else self.top

    @property
    def max_pixels(self) -> Optional[int]:
        """``max_megapixels`` in pixels (``None``: no limit of ours)."""
        return int(self.max_megapixels * 1e6) if self.max_megapixels else None

    @property
    def writes_json(self) -> bool:
        """JSON records are written with ``json`` or ``report``."""
        return bool(self.json or self.report)

    def localised(self) -> Options:
        """A copy whose ``file://`` URLs (inputs, ``out``) are plain local paths (other URLs unchanged)."""
        import dataclasses

        return dataclasses.replace(
            self, paths=tuple(local_path(p) for p in self.paths), out=local_path(self.out)
        )

    def check(self) -> Options:
        """Raise ``ValueError`` naming the first bad option and its fix; returns ``self``."""
        for problem in _problems(self):
            raise ValueError(problem)
        from .method_options import check_method_options

        check_method_options(self.methods, self.method_options)
        return self


def _problems(o: Options) -> List[str]:
    bad: List[str] = []
    if not o.paths and not o.demo:
        bad.append("Give image files or folders to explain, or --demo for the bundled photo.")
    if o.top is not None and o.target is not None:
        bad.append("Use either --target (one class) or --top K (the K best classes), not both.")
    if o.k < 1:
        bad.append(f"--top must be at least 1; got {o.k}.")
    if not 0.0 <= o.alpha <= 1.0:
        bad.append(f"--alpha must be in [0, 1]; got {o.alpha}.")
    if o.batch_size < 1:
        bad.append(f"--batch-size must be at least 1; got {o.batch_size}.")
    if isinstance(o.prefetch, bool) or not isinstance(o.prefetch, int) or o.prefetch < 0:
        bad.append(
            f"--prefetch is a number of batches decoded ahead (0: no background threads); got {o.prefetch!r}."
        )
    bt = o.box_threshold
    if bt is not None and not 0 < bt <= 1:
        bad.append(
            f"--box-threshold is a fraction of the map's maximum in (0, 1] (the Grad-CAM paper's rule is "
            f"0.15); got {bt}."
        )
    if o.precision not in PRECISIONS:
        bad.append(f"--precision must be one of {', '.join(PRECISIONS)}; got {o.precision!r}.")
    elif o.precision == "fp16" and str(o.device).startswith("cpu"):
        bad.append(
            "--precision fp16 needs a CUDA or MPS device (--device cuda); on a CPU use --precision bf16 or fp32."
        )
    if o.engine not in ENGINES:
        bad.append(f"engine must be one of {', '.join(ENGINES)}; got {o.engine!r}.")
    if o.engine != "ray" and (o.address or o.workers):
        bad.append("--address and --workers are options of the Ray engine; add --engine ray.")
    if o.max_side is not None and o.max_side < 0:
        bad.append(f"--max-side must be a number of pixels (0: no cap); got {o.max_side}.")
    if o.max_megapixels is not None and o.max_megapixels < 0:
        bad.append(f"--max-pixels must be a number of megapixels (0: no limit); got {o.max_megapixels}.")
    if not o.methods:
        bad.append(f"--method names no method; got {o.method!r}.")
    from ..methods import registry  # every method registered on import

    concepts = [m for m in o.methods if registry.explains_concepts(m)]
    if concepts and (o.target is not None or o.top is not None):
        bad.append(
            f"{concepts[0]} explains concepts, not classes: leave --target and --top unset (it writes one figure "
            "per photo: each concept in its colour, with the classes the model's head gives it)."
        )
    if not o.gpus_per_worker > 0:
        bad.append(
            f"--gpus-per-worker must be a positive number of GPUs (0.5: two actors share a GPU); "
            f"got {o.gpus_per_worker}."
        )
    if not isinstance(o.storage_options, dict):
        bad.append(
            f"storage options must be a JSON object of the store's options (e.g. "
            f'{{"endpoint_url": "http://127.0.0.1:9000"}}); got {o.storage_options!r}.'
        )
    if o.report and is_remote(o.out):
        bad.append(
            f"--report writes a local HTML page that links the overlays; --out {o.out} is in object storage. "
            "Give a local --out, or copy the outputs and run 'gradcam report' on the copy."
        )
    if not is_remote(o.out) and os.path.exists(o.out) and not os.path.isdir(o.out):
        bad.append(
            f"--out {o.out} is an existing file, not a folder; give a folder for the outputs "
            "(it is created if needed)."
        )
    return bad[:1]


def split_paths(paths: Union[str, os.PathLike, Sequence[str]]) -> Tuple[str, ...]:
    """One path or a sequence of paths as a tuple of strings."""
    if isinstance(paths, (str, os.PathLike)):
        return (os.fspath(paths),)
    return tuple(os.fspath(p) for p in paths)
