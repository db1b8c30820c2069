"""Issue 23 item 4: the metrics that run the model give the same values at any ``max_batch``."""

import pytest
import torch
from nets import gap_net

import gradcam
from gradcam import metrics as M
from gradcam.metrics.faithfulness import MAX_BATCH

# float32 logits of the same inputs in batches of different sizes differ by rounding only (the convolution's
# summation order may change with the batch): probabilities agree to ~1e-7; 1e-5 leaves room
TOL = dict(rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def case():
    net = gap_net(num_classes=6).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    ex = gradcam.GradCAM(net, "3")(x, target=[1, 2, 3])
    return net, x, ex.maps[:, 0], torch.tensor([1, 2, 3])


def _explain(net):
    cam = gradcam.GradCAM(net, "3")
    return lambda imgs, t: cam(imgs, target=t).maps[:, 0]


RUNS = {
    "deletion": lambda net, x, m, t, b: M.perturbation_curve(net, x, m, t, "deletion", 5, max_batch=b),
    "insertion": lambda net, x, m, t, b: M.perturbation_curve(net, x, m, t, "insertion", 5, max_batch=b),
    "average_drop": lambda net, x, m, t, b: torch.stack(M.average_drop_increase(net, x, m, t, max_batch=b)),
    "faithfulness_correlation": lambda net, x, m, t, b: M.faithfulness_correlation(
        net, x, m, t, n_runs=9, subset_size=20, max_batch=b
    ),
    "monotonicity": lambda net, x, m, t, b: M.monotonicity(net, x, m, t, steps=6, max_batch=b),
    "irof": lambda net, x, m, t, b: M.irof(net, x, m, t, grid=4, max_batch=b),
    "road": lambda net, x, m, t, b: M.road(
        net, x, m, t, percentages=(20, 50, 80), output="probability", max_batch=b
    ),
    "road_accuracy": lambda net, x, m, t, b: M.road(net, x, m, t, percentages=(20, 50, 80), max_batch=b),
    "sensitivities": lambda net, x, m, t, b: M.sensitivities(
        net, x, m, t, _explain(net), n_samples=3, radius=0.1, max_batch=b
    ),
}


@pytest.mark.parametrize("name", list(RUNS))
def test_same_values_at_any_max_batch(case, name):
    net, x, maps, t = case
    one = RUNS[name](net, x, maps, t, 1)  # the unbatched version: one input per forward pass
    for b in (7, MAX_BATCH):
        torch.testing.assert_close(RUNS[name](net, x, maps, t, b), one, **TOL)


def test_perturbation_curve_matches_a_loop_over_images_and_steps(case):
    net, x, maps, t = case
    curve = M.perturbation_curve(net, x, maps, t, "deletion", 4, max_batch=5)
    rank = M.faithfulness.pixel_order(maps)
    h, w = x.shape[-2:]
    for i in range(3):
        for s in range(5):
            k = -(-s * h * w // 4)
            img = torch.where((rank[i] < k)[None], torch.zeros_like(x[i]), x[i])
            with torch.no_grad():
                p = net(img[None]).softmax(1)[0, t[i]]
            assert abs(float(curve[i, s]) - float(p)) < 1e-5


def test_max_batch_errors_and_the_old_name(case):
    net, x, maps, t = case
    with pytest.raises(
        ValueError, match=r"max_batch must be a positive number of inputs per forward pass; got 0\."
    ):
        M.deletion(net, x, maps, t, max_batch=0)
    with pytest.warns(DeprecationWarning, match="batch_size is renamed max_batch"):
        old = M.irof(net, x, maps, t, grid=4, batch_size=5)
    torch.testing.assert_close(old, M.irof(net, x, maps, t, grid=4), **TOL)


def test_road_matches_a_loop_over_images_and_percentages(case):
    net, x, maps, t = case
    pct = (20, 50, 80)
    got = M.road(net, x, maps, t, percentages=pct, output="probability", noise=0.0, max_batch=4)
    h, w = x.shape[-2:]
    for i in range(3):
        order = torch.sort(maps[i].flatten(), descending=True, stable=True).indices
        for j, p in enumerate(pct):
            keep = torch.ones(h * w, dtype=torch.bool)
            keep[order[: int(p * h * w / 100)]] = False
            img = M.noisy_linear_imputation(x[i : i + 1], keep.view(1, h, w), noise=0.0)
            with torch.no_grad():
                want = net(img).softmax(1)[0, t[i]]
            # the imputation solves to a relative residual of 1e-8 (batch-dependent iterations): far below 1e-5
            assert abs(float(got[i, j]) - float(want)) < 1e-5
