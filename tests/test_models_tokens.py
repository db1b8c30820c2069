"""layer="auto" and explicit layers on token, channels-last, sequence-first and 3-D models (issue 12)."""

import pytest
import torch
from models_zoo import (
    SeqFirstTransformer,
    Tiny3DCNN,
    TinySwinLike,
    TinyViT,
    assert_unchanged,
    reference_gradcam,
    snapshot,
)

import gradcam
from gradcam.layers import infer_grid, infer_layout

TOL = 1e-5


def logit(c):
    return lambda out: out[:, c]


def test_infer_grid_drops_prefix_tokens_and_handles_non_square():
    assert infer_grid(197, (224, 224)) == (1, 14, 14)  # ViT-B/16: class token
    assert infer_grid(198, (224, 224)) == (2, 14, 14)  # DeiT distilled: class + distillation
    assert infer_grid(201, (224, 224)) == (5, 14, 14)  # class + 4 registers
    assert infer_grid(49, (224, 224)) == (0, 7, 7)  # Swin last stage: no class token
    assert infer_grid(1 + 14 * 10, (224, 160)) == (1, 14, 10)  # non-square input
    assert infer_grid(7 * 5, (224, 160)) == (0, 7, 5)  # Swin-like, non-square
    assert infer_grid(8, (100, 60)) == (
        2,
        3,
        2,
    )  # ambiguous: the grid closest to one stride wins (4 x 2 is farther)
    assert infer_grid(768, (224, 224)) is None  # a pooled (N, 768, 1) output is not a grid


def test_infer_layout_readings():
    assert infer_layout((2, 8, 7, 7), (2, 3, 224, 224)) == (None, False)
    cl, seq = infer_layout((2, 7, 7, 768), (2, 3, 224, 224))
    t = torch.arange(2 * 7 * 7 * 768.0).reshape(2, 7, 7, 768)
    assert not seq and torch.equal(cl(t), t.permute(0, 3, 1, 2))
    r, seq = infer_layout((50, 2, 16), (2, 3, 28, 28))
    assert seq
    tok = torch.randn(2, 50, 16)
    assert torch.equal(r(tok), tok[:, 1:].reshape(2, 7, 7, 16).permute(0, 3, 1, 2))
    assert infer_layout((2, 16), (2, 3, 28, 28)) is None


@pytest.mark.parametrize("prefix,size", [(1, (16, 16)), (3, (16, 24))])
def test_vit_auto_picks_inside_last_block(prefix, size):
    model = TinyViT(prefix=prefix)
    x = torch.randn(2, 3, *size)
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=2)
    assert_unchanged(model, before)
    # The final norm and everything after the last attention gets no patch gradient; norm1 of the last
    # block does (its patch tokens feed the class token's attention). Never the patch embedding.
    assert res.layer == "blocks.1.norm1"
    h, w = size[0] // 4, size[1] // 4
    assert res.raw.shape == (2, 1, h, w) and res.maps.shape == (2, 1, *size)
    ref = reference_gradcam(model, x, "blocks.1.norm1", logit(2), "tokens", prefix, (h, w))
    assert (res.maps[:, 0].double() - ref).abs().max() < TOL
    # The same layer named explicitly, without reshape=: the grid is inferred the same way.
    named = gradcam.GradCAM(model, layer="blocks.1.norm1")(x, target=2)
    assert torch.equal(named.maps, res.maps)


def test_vit_final_norm_warns_with_the_fix():
    model = TinyViT()
    x = torch.randn(2, 3, 16, 16)
    with pytest.warns(
        RuntimeWarning,
        match=r"no gradient of the target reaches any position of layer 'norm'.*inside the last block",
    ):
        res = gradcam.GradCAM(model, layer="norm")(x, target=0)
    assert torch.equal(res.maps, torch.zeros_like(res.maps))


def test_channels_last_map_recognised():
    model = TinySwinLike()
    x = torch.randn(2, 3, 64, 48)
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=1)
    assert_unchanged(model, before)
    assert res.layer == "out_norm" and res.raw.shape == (2, 1, 16, 12)
    ref = reference_gradcam(model, x, "out_norm", logit(1), "channels_last")
    assert (res.maps[:, 0].double() - ref).abs().max() < TOL


def test_sequence_first_transformer_handled():
    model = SeqFirstTransformer()
    x = torch.randn(3, 3, 16, 16)
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, target=[0, 1, 2])
    assert_unchanged(model, before)
    # The last layer's norms act per token after its attention: the class token alone reaches the head,
    # so the last map whose patch tokens get the gradient is the input of that attention (layer 0's output).
    assert res.layer == "encoder.layers.0"
    for i, c in enumerate([0, 1, 2]):
        ref = reference_gradcam(model, x[i : i + 1], "encoder.layers.0", logit(c), "seq_first", 1, (4, 4))
        assert (res.maps[i, 0].double() - ref[0]).abs().max() < TOL
    # Named explicitly, (T, N, C) is recognised too.
    named = gradcam.GradCAM(model, layer="encoder.layers.0")(x, target=[0, 1, 2])
    assert torch.allclose(named.maps, res.maps, atol=1e-6)


def test_volume_gradcam_trilinear():
    model = Tiny3DCNN()
    x = torch.randn(2, 1, 8, 12, 10)
    before = snapshot(model)
    res = gradcam.GradCAM(model)(x, top_k=2)
    assert_unchanged(model, before)
    assert (
        res.layer == "features" and res.raw.shape == (2, 2, 4, 6, 5) and res.maps.shape == (2, 2, 8, 12, 10)
    )
    for i in range(2):
        for k in range(2):
            c = int(res.targets[i, k])
            ref = reference_gradcam(model, x[i : i + 1], "features", logit(c))
            assert (res.maps[i, k].double() - ref[0]).abs().max() < TOL
    with pytest.raises(ValueError, match="no 3-D form"):
        gradcam.GradCAM(model, interpolation="bicubic")(x)
