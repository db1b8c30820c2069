"""Where users already work: a Lightning callback, TensorBoard logging, and the ``gradcam serve`` web app.

Each submodule imports its framework lazily, so ``import gradcam`` never needs them:

- :mod:`gradcam.integrations.lightning`: ``GradCAMCallback`` (extra ``lightning``);
- :mod:`gradcam.integrations.tensorboard`: ``log_explanations`` for plain training loops (extra ``lightning``
  or just ``tensorboard``);
- :mod:`gradcam.integrations.grid`: the image grid both log (no extra);
- :mod:`gradcam.integrations.app`: the web app behind ``gradcam serve`` (extra ``app``).
"""
