"""Real torchvision / timm / Hugging Face architectures (random weights): layer="auto" chooses the expected
layer, agrees with a float64 reference of Grad-CAM at that layer, and leaves the model unchanged.

Collected only with GRADCAM_COMPAT=1, in an environment with torchvision and timm (CI's second stage)."""

import pytest
from zoo import SPECS, check

TOL = 1e-5


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_model(spec):
    pytest.importorskip({"hf": "transformers"}.get(spec.lib, spec.lib))
    row = check(spec, reps=0)  # timing lives in benchmarks/compat_table.py
    assert row["layer"] == spec.layer
    assert row["unchanged"]
    assert row["max_err"] <= TOL, row
