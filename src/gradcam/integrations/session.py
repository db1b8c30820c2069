"""One model served to many requests: its spatial layers, its methods, and ``explain`` -> a JSON-ready dict.

Used by the ``gradcam serve`` web app (:mod:`gradcam.integrations.app`), but free of any web framework.
Thread-safe: the method objects are (each call runs on a private view of the model), the method cache is
filled under a lock, and nothing else is shared between calls.
"""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

from PIL import Image

from ..api import BOX_THRESHOLD, explain_batch
from ..image import MAX_PIXELS, load_image, overlay
from ..models import LoadedModel

DEMO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
DEMO_PHOTOS = {"chelsea": "chelsea.png"}  # name -> file in gradcam/data (CC0, see chelsea.LICENSE.txt)
OVERLAY_SIDE = 512  # default long side of the returned overlays (0: the photo's own size)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    return host in LOOPBACK or host.startswith("127.")


def png_data(img: Image.Image) -> str:
    """``img`` as a ``data:image/png;base64,...`` URL."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class ServedModel:
    """A :class:`LoadedModel` with what the app needs: layers (the auto choice marked), methods, ``explain``."""

    def __init__(
        self,
        loaded: LoadedModel,
        max_pixels: Optional[int] = MAX_PIXELS,
        box_threshold: Optional[float] = None,
    ):
        from ..methods import registry

        registry.get("gradcam")  # loads the optional methods so that METHODS lists them all
        self.loaded = loaded
        self.max_pixels = max_pixels
        # the model's (or its preset's) measured threshold, as `gradcam explain` and gradcam.explain use
        if box_threshold is None:
            box_threshold = BOX_THRESHOLD if loaded.box_threshold is None else loaded.box_threshold
        self.box_threshold = box_threshold
        self.methods: List[str] = sorted(registry.METHODS)
        self._registry = registry
        self._cache: Dict[Tuple[str, Optional[str]], object] = {}
        self._lock = threading.Lock()
        self.layers, self.auto_layer = self._find_layers()

    def _find_layers(self) -> Tuple[List[str], str]:
        """The model's spatial layers for the demo photo (latest first) and the default ("auto") one."""
        from ..layers import auto_candidates

        x = self.loaded.preprocess(self.demo_photo("chelsea")).unsqueeze(0)
        x = x.to(next(self.loaded.model.parameters(), x).device)
        names = [ref.spec for ref in auto_candidates(self.loaded.model, x)]
        if self.loaded.layer and self.loaded.layer != "auto":
            auto = self.loaded.layer
        else:
            auto = self.method("gradcam", None).layers_for(x)[0].spec
        if auto not in names:
            names.insert(0, auto)
        return names, auto

    def demo_photo(self, name: str) -> Image.Image:
        """A photo bundled with gradcam, by name (see :data:`DEMO_PHOTOS`)."""
        if name not in DEMO_PHOTOS:
            raise ValueError(f"Unknown demo photo {name!r}; choose one of: {', '.join(DEMO_PHOTOS)}.")
        return load_image(os.path.join(DEMO_DIR, DEMO_PHOTOS[name]))

    def info(self) -> dict:
        """What the page shows in its menus: model, classes, methods, layers (auto marked), demo photos."""
        return {
            "model": self.loaded.name,
            "classes": len(self.loaded.labels),
            "methods": self.methods,
            "layers": [{"name": n, "auto": n == self.auto_layer} for n in self.layers],
            "auto_layer": self.auto_layer,
            "demo": sorted(DEMO_PHOTOS),
            "max_pixels": self.max_pixels,
        }

    def method(self, name: str, layer: Optional[str]):
        """The method object ``name`` at ``layer`` (``None``: the auto layer), made once and shared."""
        factory = self._registry.get(name)
        key = (name, layer)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = factory(self.loaded.model, layer=layer or self.loaded.layer)
            return self._cache[key]

    def load(self, path: str) -> Image.Image:
        """An uploaded file as RGB, refused before decoding when its header declares over ``max_pixels``."""
        return load_image(path, max_pixels=self.max_pixels)

    def explain(
        self,
        image: Image.Image,
        method: str = "gradcam",
        layer: Optional[str] = None,
        target: Optional[str] = None,
        top_k: int = 5,
        alpha: float = 0.5,
        overlay_side: int = OVERLAY_SIDE,
    ) -> dict:
        """Explain ``image``: the top-5 predictions and, per explained class (``target``, else the top
        ``top_k``), its score, probability, peak (x, y), box (x0, y0, x1, y1) in photo pixels, and the
        overlay (1 - alpha) * photo + alpha * cmap(map) as PNG data, its long side ``overlay_side`` (0: full).
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
            raise ValueError(f"top_k must be an int in 1..20; got {top_k!r}.")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}.")
        if overlay_side < 0:
            raise ValueError(
                f"overlay_side must be a number of pixels (0: the photo's own size); got {overlay_side}."
            )
        top_k = min(top_k, len(self.loaded.labels) or top_k)
        if layer is not None and layer not in self.layers:
            raise ValueError(f"Unknown layer {layer!r}; GET /api/info lists the model's spatial layers.")
        t0 = time.perf_counter()
        target_id = None if target in (None, "") else self.loaded.class_id(target)
        m = self.method(method, None if layer == self.auto_layer else layer)
        res = explain_batch([image], self.loaded, m, target_id, top_k, box_threshold=self.box_threshold)[0]
        shown = image
        if overlay_side and max(image.size) > overlay_side:
            scale = overlay_side / max(image.size)
            shown = image.resize(
                (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))),
                Image.Resampling.BILINEAR,
            )
        out = res.to_dict()
        out.pop("file", None)
        for k, rec in enumerate(out["explanations"]):
            rec["overlay"] = png_data(overlay(shown, res.input_maps[k], alpha=alpha))
        out["alpha"] = alpha
        out["seconds"] = round(time.perf_counter() - t0, 4)
        return out
