import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Small test models run fastest (and steadiest on a loaded machine) on one thread.
torch.set_num_threads(1)

# tests/compat runs real torchvision/timm architectures in its own environment (CI's second stage):
# collected only when asked for with GRADCAM_COMPAT=1.
collect_ignore = [] if os.environ.get("GRADCAM_COMPAT") else ["compat"]


@pytest.fixture(scope="session")
def ray_two_nodes():
    """A real two-node Ray cluster on this machine (tests/ray_cluster.py: ``ray start --head`` and a second
    ``ray start --address`` node, 1 CPU and a resource of their own each), stopped at the end of the session.
    Skipped only when ``ray`` is not installed (the ``test`` extra installs it); with ``GRADCAM_REQUIRE_RAY=1``
    (CI) a missing ``ray`` is an error instead."""
    if os.environ.get("GRADCAM_REQUIRE_RAY"):  # CI: these tests must run, never skip
        import ray  # noqa: F401
    pytest.importorskip("ray", reason="the two-node Ray tests need ray (the ray or test extra)")
    from ray_cluster import two_node_cluster

    with two_node_cluster() as cluster:
        yield cluster
