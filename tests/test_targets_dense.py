"""gradcam.targets.segmentation / detection / similarity, and forward_kwargs (issue 12)."""

import pytest
import torch
import torch.nn.functional as F
from models_zoo import assert_unchanged, reference_gradcam, snapshot
from torch import nn

import gradcam
from gradcam.targets import box_iou, detection, segmentation, similarity

TOL = 1e-5


class TinySeg(nn.Module):
    """Class scores at half resolution, as a tensor or torchvision's {"out": ...}."""

    def __init__(self, classes=3, as_dict=False):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.classifier = nn.Conv2d(8, classes, 1)
        self.as_dict = as_dict

    def forward(self, x):
        s = self.classifier(self.backbone(x))
        return {"out": s} if self.as_dict else s


@pytest.mark.parametrize("as_dict", [False, True])
def test_segmentation_mask_and_default_predicted_region(as_dict):
    model = TinySeg(as_dict=as_dict)
    x = torch.randn(2, 3, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[2:9, 5:16] = True
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=segmentation(1, mask))
    assert_unchanged(model, before)
    assert res.layer == "backbone"  # the 3-channel score map (the model's output) is skipped
    with torch.no_grad():
        s = model(x)
        s = s["out"] if as_dict else s
    cover = F.avg_pool2d(mask.float()[None, None], 2)[0, 0]  # fraction of each 2x2 cell inside the mask
    assert torch.allclose(res.scores[:, 0], (s[:, 1] * cover).sum(dim=(1, 2)), atol=1e-5)

    def score(out):
        out = out["out"] if as_dict else out
        return (out[:, 1] * cover.double()).sum(dim=(1, 2))

    assert (res.maps[:, 0].double() - reference_gradcam(model, x, "backbone", score)).abs().max() < TOL
    # No mask: the cells where class 1 is the argmax.
    auto = gradcam.GradCAM(model)(x, target=segmentation(1))
    assert torch.allclose(auto.scores[:, 0], (s[:, 1] * (s.argmax(1) == 1)).sum(dim=(1, 2)), atol=1e-5)


def test_segmentation_errors():
    model = TinySeg()
    with pytest.raises(
        ValueError, match=r"class_id 7 is out of range for a segmenter with 3 classes \(0..2\)"
    ):
        gradcam.GradCAM(model)(torch.randn(1, 3, 8, 8), target=segmentation(7))
    with pytest.raises(TypeError, match="segmentation needs per-pixel class scores"):
        segmentation(0)([torch.zeros(1)])


def test_box_iou_exclusive_ends():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [4 / 16, 4 / 16, 0.0]])
    assert torch.allclose(box_iou(a, b), expected)


class TinyDETR(nn.Module):
    """DETR-style output: pred_logits (N, Q, classes + 1) and pred_boxes (N, Q, 4) as normalised cx, cy, w, h."""

    def __init__(self, queries=4, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.cls = nn.Linear(8, queries * (classes + 1))
        self.q, self.c = queries, classes
        self.register_buffer(
            "boxes",
            torch.tensor(
                [[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.2, 0.8, 0.2, 0.2]]
            ),
        )

    def forward(self, x):
        f = self.features(x).mean(dim=(2, 3))
        return {
            "pred_logits": self.cls(f).reshape(-1, self.q, self.c + 1),
            "pred_boxes": self.boxes.expand(x.shape[0], -1, -1),
        }


def test_detection_detr_style_picks_best_matching_box():
    model = TinyDETR()
    x = torch.randn(2, 3, 16, 16)
    given = torch.tensor([[0.0, 0.0, 8.0, 8.0], [6.0, 6.0, 15.0, 16.0], [0.0, 0.0, 1.0, 1.0]])  # pixels
    before = snapshot(model)
    res = gradcam.GradCAM(model, layer="features")(x, target=detection(given, iou=0.5, image_size=(16, 16)))
    assert_unchanged(model, before)
    with torch.no_grad():
        probs = model(x)["pred_logits"].softmax(-1)[..., :-1].max(-1).values
    # Box 0 is query 0 exactly (IoU 1), box 1 best matches query 1 (IoU 56/98), box 2 matches nothing.
    assert torch.allclose(res.scores, torch.stack([probs[:, 0], probs[:, 1], torch.zeros(2)], 1), atol=1e-6)
    assert torch.equal(res.maps[:, 2], torch.zeros(2, 16, 16))  # no match: a flat map

    def score(out):
        return out["pred_logits"].softmax(-1)[..., :-1].max(-1).values[:, 1]

    assert (res.maps[:, 1].double() - reference_gradcam(model, x, "features", score)).abs().max() < TOL
    # A label filter: query 0's predicted label only.
    label0 = int(model(x[:1])["pred_logits"].softmax(-1)[0, 0, :-1].argmax())
    other = (label0 + 1) % 3
    y = detection(given[:1], labels=[other], image_size=(16, 16))(model(x[:1]))
    assert float(y.abs().sum()) == 0.0


def test_detection_torchvision_style_list_of_dicts():
    class ListDetector(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
            self.score = nn.Linear(4, 2)

        def forward(self, x):
            s = self.score(self.features(x).mean(dim=(2, 3))).sigmoid()
            boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [4.0, 4.0, 16.0, 16.0]])
            return [
                {"boxes": boxes, "labels": torch.tensor([1, 2]), "scores": s[i]} for i in range(x.shape[0])
            ]

    model = ListDetector()
    x = torch.randn(3, 3, 16, 16)
    res = gradcam.GradCAM(model)(x, target=detection([[5.0, 5.0, 16.0, 16.0], [0.0, 0.0, 9.0, 10.0]]))
    with torch.no_grad():
        s = torch.stack([o["scores"] for o in model(x)])
    assert torch.allclose(res.scores, s[:, [1, 0]], atol=1e-6)
    with pytest.raises(ValueError, match="Every box needs x1 > x0"):
        detection([[3.0, 0.0, 3.0, 4.0]])


def test_similarity_cosine_to_concepts():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5)
    )
    x = torch.randn(2, 3, 12, 12)
    concepts = torch.randn(2, 5)
    res = gradcam.GradCAM(model)(x, target=similarity(concepts))
    with torch.no_grad():
        f = model(x)
    expected = (f / f.norm(dim=1, keepdim=True)) @ (concepts / concepts.norm(dim=1, keepdim=True)).T
    assert torch.allclose(res.scores, expected, atol=1e-6)

    def score(out):
        return F.cosine_similarity(out, concepts[1].double()[None], dim=1)

    assert (res.maps[:, 1].double() - reference_gradcam(model, x, "1", score)).abs().max() < TOL
    with pytest.raises(ValueError, match="The model's embedding has 5 dimensions, the concept 4"):
        gradcam.GradCAM(model)(x, target=similarity(torch.ones(4)))


def test_forward_kwargs_reach_the_model():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
            self.fc = nn.Linear(6 + 2, 4)

        def forward(self, x, meta, scale=1.0):
            return self.fc(torch.cat([self.conv(x).mean(dim=(2, 3)) * scale, meta], 1))

    model = TwoInputs()
    x, meta = torch.randn(3, 3, 10, 10), torch.randn(3, 2)
    res = gradcam.GradCAM(model)(x, target=1, forward_kwargs={"meta": meta, "scale": 2.0})
    assert res.layer == "conv"
    with torch.no_grad():
        assert torch.allclose(res.scores[:, 0], model(x, meta, scale=2.0)[:, 1])
    ref = reference_gradcam(
        model, x, "conv", lambda out: out[:, 1], forward_kwargs={"meta": meta, "scale": 2.0}
    )
    assert (res.maps[:, 0].double() - ref).abs().max() < TOL
