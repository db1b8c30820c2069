"""Several methods on the same photos: one shared capture (``gradcam.photos.explain_batch_many``, what
``gradcam explain --method gradcam,gradcam++,layercam,eigencam`` runs per batch) against each method on its own
(``explain_batch`` once per method, what it ran before), with the CLI's default model (EfficientNet-Lite0, embedded
weights).

Usage: ``PYTHONPATH=src python benchmarks/bench_explain_many.py [ROUNDS]``. Both ways run in one process,
alternating, on (a) the demo photo alone and (b) a folder's worth of photos (the demo photo and scikit-image's
photos, one batch per preprocessed size, as the folder job batches them); times are the process's CPU time
(``time.process_time``, 1 torch thread), medians over ``ROUNDS`` (default 7), so that other jobs on a shared
machine count as little as possible. Prints one JSON line per case with the ratio shared / separate.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

METHODS = ("gradcam", "gradcam++", "layercam", "eigencam")


def _photos() -> list:
    import numpy as np
    import skimage.data
    from PIL import Image

    import gradcam

    photos = [Image.open(gradcam.demo_photo()).convert("RGB")]
    for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "cat"):
        photos.append(Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB"))
    return photos


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main() -> None:
    from gradcam import photos as ph
    from gradcam.methods import registry
    from gradcam.models import prepare_model

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    torch.set_num_threads(1)
    loaded, _ = prepare_model(None)
    methods = [registry.get(n)(loaded.model, layer=loaded.layer) for n in METHODS]
    images = _photos()
    for case, imgs in (("demo photo", images[:1]), (f"{len(images)} photos", images)):
        xs = [
            loaded.preprocess(im) for im in imgs
        ]  # preprocessed once for both ways: only the explain step differs
        ph.explain_batch_many(imgs, loaded, methods, inputs=xs)  # warm-up
        shared, separate = [], []
        for _ in range(rounds):
            shared.append(
                _cpu(lambda imgs=imgs, xs=xs: ph.explain_batch_many(imgs, loaded, methods, inputs=xs))
            )
            separate.append(
                _cpu(lambda imgs=imgs, xs=xs: [ph.explain_batch(imgs, loaded, m, inputs=xs) for m in methods])
            )
        a, b = statistics.median(shared), statistics.median(separate)
        row = dict(case=case, methods=",".join(METHODS), shared_s=round(a, 4), separate_s=round(b, 4))
        row["ratio"] = round(a / b, 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
