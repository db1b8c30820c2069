"""Target helpers for structured outputs (caption words, answers, dict/tuple outputs), on tiny models."""

import pytest
import torch

from gradcam import GradCAM
from gradcam.targets import answer, caption_word, output_scalar
from gradcam.vl.captions import teacher_inputs
from gradcam.vl.models import BoundCaption, BoundQuestion, CaptionModel, VQAModel
from gradcam.vl.vocab import ANSWERS, CAPTION_VOCAB


def _seeded(factory, seed=0):
    torch.manual_seed(seed)
    return factory().eval()


@pytest.fixture(scope="module")
def captioner():
    return _seeded(lambda: CaptionModel(width=4, channels=8, hidden=16, embed=8))


@pytest.fixture(scope="module")
def vqa():
    return _seeded(lambda: VQAModel(width=4, channels=8, dim=16, embed=8))


def test_caption_word_is_the_log_probability_of_the_word():
    logits = torch.randn(2, 4, 7, requires_grad=True)
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 2]])
    y = caption_word(ids, 2)(logits)
    ref = torch.log_softmax(logits[:, 2], -1)[torch.arange(2), ids[:, 2]]
    assert y.shape == (2,)
    assert torch.allclose(y, ref)
    yk = caption_word(ids, [0, 3])(logits)
    assert yk.shape == (2, 2)
    assert torch.allclose(yk[:, 1], torch.log_softmax(logits[:, 3], -1)[torch.arange(2), ids[:, 3]])
    # one caption for every image, and dict outputs
    y1 = caption_word(ids[0], 1)({"logits": logits})
    assert torch.allclose(y1, torch.log_softmax(logits[:, 1], -1)[:, ids[0, 1]])


def test_caption_word_past_the_end_raises():
    ids = torch.tensor([3, 6, 11, 2])
    with pytest.raises(
        ValueError,
        match=r"Word index 4 is past the end of the caption: it has 4 words \(valid positions 0..3\)",
    ):
        caption_word(ids, 4)
    with pytest.raises(ValueError, match="past the end of the caption"):
        caption_word(ids, [1, -1])
    padded = torch.tensor([[3, 6, 11, 2, 0], [3, 7, 12, 4, 2]])
    with pytest.raises(
        ValueError, match="Word index 4 is past the end of caption 0: that position is padding"
    ):
        caption_word(padded, 4, pad_id=0)
    with pytest.raises(ValueError, match=r"shape \(N, T, vocab\)"):
        caption_word(ids, 1)(torch.randn(2, 5))


def test_answer_target_by_id_and_by_name():
    logits = torch.randn(3, len(ANSWERS))
    assert torch.equal(answer(4)(logits), logits[:, 4])
    assert torch.equal(answer("red", vocab=ANSWERS)(logits), logits[:, ANSWERS.id("red")])
    per = answer(["2", "blue", 0], vocab=ANSWERS)(logits)
    assert torch.equal(
        per, torch.stack([logits[0, ANSWERS.id("2")], logits[1, ANSWERS.id("blue")], logits[2, 0]])
    )


def test_unknown_answer_raises():
    with pytest.raises(ValueError, match="Unknown answer 'purple'; the model's answers are: red, green"):
        answer("purple", vocab=ANSWERS)
    with pytest.raises(
        ValueError, match=r"Answer id 15 is out of range for a model with 15 answers \(0..14\)"
    ):
        answer(15)(torch.randn(2, 15))
    with pytest.raises(TypeError, match="pass vocab="):
        answer("red")


def test_output_scalar_from_dict_and_tuple():
    a, b = torch.randn(2, 3), torch.randn(2, 4, 5)
    assert torch.equal(output_scalar("score")({"score": a[:, 0]}), a[:, 0])
    assert torch.equal(output_scalar("b", (1, 2))({"a": a, "b": b}), b[:, 1, 2])
    assert torch.equal(output_scalar(0, 2)((a, b)), a[:, 2])
    with pytest.raises(ValueError, match="The model output has no key 'c'; its keys are: 'a', 'b'"):
        output_scalar("c", 0)({"a": a, "b": b})
    with pytest.raises(ValueError, match="not one value per image"):
        output_scalar("b", 1)({"b": b})
    with pytest.raises(ValueError, match="index 7 is out of range for dimension 1 of size 3"):
        output_scalar(0, 7)((a,))


def test_gradcam_of_a_caption_word_matches_a_manual_computation(captioner):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32)
    tokens = torch.tensor([CAPTION_VOCAB.encode("a red circle left of a blue square <eos>")] * 2)
    res = GradCAM(BoundCaption(captioner, tokens), layer="model.encoder")(
        x, target=caption_word(tokens, [2, 7])
    )
    assert res.maps.shape == (2, 2, 32, 32)
    assert (res.targets == -1).all()
    # manual Grad-CAM: alpha = mean_ij d y / d A, map = ReLU(sum_k alpha_k A_k)
    for k, t in enumerate([2, 7]):
        a = captioner.encoder(x).detach().requires_grad_(True)
        logits = captioner.decode(a, teacher_inputs(tokens))
        y = torch.log_softmax(logits[:, t], -1)[torch.arange(2), tokens[:, t]]
        (g,) = torch.autograd.grad(y.sum(), a)
        raw = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
        assert torch.allclose(res.raw[:, k], raw.detach(), atol=1e-6)
        assert torch.allclose(res.scores[:, k], y.detach(), atol=1e-6)
    # the model is left as it was
    assert all(p.requires_grad for p in captioner.parameters())
    assert not captioner.training


def test_gradcam_of_an_answer_matches_a_manual_computation(vqa):
    torch.manual_seed(2)
    x = torch.rand(3, 3, 32, 32)
    q = torch.randint(1, 10, (3, 5))
    res = GradCAM(BoundQuestion(vqa, q), layer="model.encoder")(
        x, target=answer(["red", "3", "square"], vocab=ANSWERS)
    )
    a = vqa.encoder(x).detach().requires_grad_(True)
    logits = vqa.fuse(vqa.image(a), vqa.encode_question(q))
    y = logits[torch.arange(3), torch.tensor([ANSWERS.id("red"), ANSWERS.id("3"), ANSWERS.id("square")])]
    (g,) = torch.autograd.grad(y.sum(), a)
    raw = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    assert torch.allclose(res.raw[:, 0], raw.detach(), atol=1e-6)


def test_bound_model_batch_mismatch_raises(vqa):
    bound = BoundQuestion(vqa, torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="The bound question has 2 rows but the batch has 3 images"):
        bound(torch.rand(3, 3, 32, 32))


def test_unknown_word_raises():
    with pytest.raises(ValueError, match="Unknown word 'purple'; the vocabulary is: <pad>"):
        CAPTION_VOCAB.encode("a purple circle")
