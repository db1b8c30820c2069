"""Hugging Face transformers models built from small configs with random weights (nothing downloaded)."""

import pytest
import torch
from models_zoo import assert_unchanged, reference_gradcam, snapshot

import gradcam
from gradcam.targets import segmentation

transformers = pytest.importorskip("transformers")
TOL = 1e-5


def _vit():
    cfg = transformers.ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=5,
    )
    return transformers.ViTForImageClassification(cfg)


def _swin():
    cfg = transformers.SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=4,
        num_labels=5,
    )
    return transformers.SwinForImageClassification(cfg)


def _convnext():
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, num_labels=5)
    return transformers.ConvNextForImageClassification(cfg)


def _resnet():
    cfg = transformers.ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=5
    )
    return transformers.ResNetForImageClassification(cfg)


# (builder, the layer auto must choose, the test's own reading of that layer's output)
CASES = {
    "vit": (_vit, "vit.layers.1.layernorm_before", ("tokens", 1, (4, 4))),  # inside the last block
    "swin": (_swin, "swin.layernorm", ("tokens", 0, (4, 4))),  # tokens, no class token; pooled by mean
    "convnext": (_convnext, "convnext.encoder.stages.1", ("map", 0, None)),
    "resnet": (_resnet, "resnet.encoder.stages.1", ("map", 0, None)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hf_classifier_auto_layer_matches_float64_reference(name):
    build, layer, (layout, skip, grid) = CASES[name]
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(x)  # transformers installs its own output-recording hooks on the first call
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=3)
    assert_unchanged(model, before)
    assert res.layer == layer
    ref = reference_gradcam(model, x, layer, lambda out: out.logits[:, 3], layout, skip, grid)
    assert (res.maps[:, 0].double() - ref).abs().max() < TOL


def test_hf_segformer_segmentation_target_at_reduced_resolution():
    torch.manual_seed(0)
    cfg = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        decoder_hidden_size=16,
        num_labels=4,
        patch_sizes=[7, 3],
        strides=[4, 2],
    )
    model = transformers.SegformerForSemanticSegmentation(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    mask = torch.zeros(32, 32)
    mask[4:20, 8:30] = 1  # at the input's resolution; the logits are 8 x 8
    with torch.no_grad():
        logits = model(x).logits  # (also: transformers installs its own hooks on the first call)
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=segmentation(2, mask))
    assert_unchanged(model, before)
    # The logits map itself is skipped: the last feature map before the classifier is chosen.
    assert res.layer == "decode_head.activation"
    weights = mask.reshape(8, 4, 8, 4).mean(dim=(1, 3))  # the fraction of each logit cell the mask covers
    assert torch.allclose(res.scores[:, 0], (logits[:, 2] * weights).sum(dim=(1, 2)), rtol=1e-5, atol=1e-5)

    def score(out):
        return (out.logits[:, 2] * weights.double()).sum(dim=(1, 2))

    ref = reference_gradcam(model, x, "decode_head.activation", score)
    assert (res.maps[:, 0].double() - ref).abs().max() < TOL
