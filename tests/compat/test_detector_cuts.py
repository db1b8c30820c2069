"""torchvision's Faster R-CNN: the backward differentiates only the proposals the explained detection comes from
(gradcam.cuts on MultiScaleRoIAlign), with the maps of the dense backward."""

import pytest
import torch
from zoo import SPECS, build, target_for

import gradcam
from gradcam import cuts

pytest.importorskip("torchvision")


def test_faster_rcnn_backward_through_the_explained_proposals_only(monkeypatch):
    spec = next(s for s in SPECS if s.name == "fasterrcnn_mobilenet_v3_large_fpn")
    model = build(spec)
    torch.manual_seed(1)
    x = torch.randn(2, 3, *spec.size)
    target = target_for(spec, model, x)[0]
    seen = []
    rerun = cuts.Cut.rerun
    monkeypatch.setattr(cuts.Cut, "rerun", lambda self, rows: seen.append(len(rows)) or rerun(self, rows))
    got = gradcam.GradCAM(model, layer=spec.layer)(x, target=target)
    assert len(seen) == 1 and 1 <= seen[0] <= 2  # one proposal per image's top detection, of about 2 x 1000
    assert not any(m._forward_hooks for m in model.modules())
    monkeypatch.setattr(cuts, "ROW_WISE", frozenset())
    monkeypatch.setattr(cuts, "_KNOWN", {})
    ref = gradcam.GradCAM(model, layer=spec.layer)(x, target=target)
    assert len(seen) == 1
    torch.testing.assert_close(got.weights, ref.weights, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.maps, ref.maps, rtol=1e-5, atol=1e-5)
