import os

import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Small test models run fastest (and steadiest on a loaded machine) on one thread.
torch.set_num_threads(1)

# tests/compat runs real torchvision/timm architectures in its own environment (CI's second stage):
# collected only when asked for with GRADCAM_COMPAT=1.
collect_ignore = [] if os.environ.get("GRADCAM_COMPAT") else ["compat"]
