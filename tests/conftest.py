import os

import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Small test models run fastest (and steadiest on a loaded machine) on one thread.
torch.set_num_threads(1)
