"""Issue 10, point 2: any number of threads may explain one model at once, also while another thread trains it.

Each test counts what went wrong (exceptions, results that differ from the sequential ones, changed flags,
training steps that differ from a run without explainers) and asserts the counts are zero, so a failure
message says how many of how many went wrong.
"""

import copy
import random
import threading
import warnings

import pytest
import torch
from nets import gap_net
from torch import nn

import gradcam

THREADS = 6
ROUNDS = 3


def _inputs():
    g = torch.Generator().manual_seed(5)
    return [torch.randn(2, 3, 16, 16, generator=g) for _ in range(3)]


def _methods(model):
    """Fresh explainers (the auto-layer cache starts empty) and how to read a comparable result from each."""
    return {
        "gradcam": (gradcam.GradCAM(model, layer="4"), {}, "maps"),
        "gradcam-auto": (gradcam.GradCAM(model), {}, "maps"),
        "gradcam-top3": (gradcam.GradCAM(model, layer="4"), {"top_k": 3}, "maps"),
        "counterfactual": (gradcam.GradCAM(model, layer="2"), {"target": 4, "counterfactual": True}, "maps"),
        "cam": (gradcam.CAM(model, layer="4"), {"top_k": 2}, "maps"),
        "guided-backprop": (gradcam.GuidedBackprop(model), {"top_k": 2}, "pixels"),
        "guided-gradcam": (gradcam.GuidedGradCAM(model, layer="4"), {}, "pixels"),
        "gradient": (gradcam.Gradient(model), {"target": 1}, "pixels"),
        # Methods of gradient-free forward passes: they too run on a private eval-mode view of the model.
        "occlusion": (gradcam.Occlusion(model, window=8, stride=4), {}, "maps"),
        "scorecam": (gradcam.ScoreCAM(model, layer="4", batch_size=8), {}, "maps"),
        "ablationcam": (gradcam.AblationCAM(model, layer="4", batch_size=8), {}, "maps"),
        "rise": (gradcam.RISE(model, n_masks=16, batch_size=8), {}, "maps"),
    }


def _flags(model):
    return (
        [(n, m.training) for n, m in model.named_modules()],
        [(n, p.requires_grad) for n, p in model.named_parameters()],
    )


def _hooks(model):
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def _explain_concurrently(model, threads=THREADS, rounds=ROUNDS):
    """(calls, exceptions, mismatches, explainers): every thread runs every method on every input ``rounds`` times
    in its own order; each result is compared with the one computed sequentially beforehand."""
    xs = _inputs()
    ref = {}
    for name, (method, kw, field) in _methods(model).items():
        for i, x in enumerate(xs):
            ref[name, i] = getattr(method(x, **kw), field)
    shared = _methods(model)  # fresh objects: their auto-layer cache is filled while the threads run
    jobs = [(name, i) for name in shared for i in range(len(xs))] * rounds
    barrier = threading.Barrier(threads)
    errors, mismatches, calls = [], [], [0] * threads
    filters = list(warnings.filters)  # after the sequential calls: lazy imports inside torch add their own

    def work(t):
        order = list(jobs)
        random.Random(t).shuffle(order)
        barrier.wait()
        for name, i in order:
            method, kw, field = shared[name]
            try:
                res = method(xs[i], **kw)
            except Exception as e:  # noqa: BLE001 - counted and reported below
                errors.append(f"{name}: {type(e).__name__}: {e}")
                continue
            calls[t] += 1
            if not torch.equal(getattr(res, field), ref[name, i]):
                mismatches.append(name)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=60)
    if warnings.filters != filters:
        errors.append("the process-wide warning filters were changed")
    return len(jobs) * threads, errors, mismatches, shared


def test_threads_give_the_sequential_results_and_leave_the_model_as_it_was():
    model = gap_net()
    model.train()  # eval mode is needed: the calls must not switch the shared model
    model[0].bias.requires_grad_(False)  # a mixed state must stay exactly as it is
    before = _flags(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    total, errors, mismatches, shared = _explain_concurrently(model)
    assert total == THREADS * ROUNDS * 12 * 3
    assert errors == [], (
        f"{len(errors)} problems in {total} calls (failed calls, changed filters): {errors[:3]}"
    )
    assert mismatches == [], (
        f"{len(mismatches)} of {total} results differ from sequential ones: {set(mismatches)}"
    )
    assert _flags(model) == before and _hooks(model) == 0
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BN statistics untouched
    assert all(p.grad is None for p in model.parameters())
    # The auto-layer cache holds what a sequential call finds: the last spatial layer first.
    cache = shared["gradcam-auto"][0]._auto_cache
    assert list(cache) == [(3, 16, 16)]
    assert [r.spec for r in cache[(3, 16, 16)]][:3] == ["4", "3", "2"]
    assert cache[(3, 16, 16)][0].module is model[4]


def test_locked_path_for_a_model_that_cannot_be_viewed():
    # A forward set on the instance (as accelerate-style wrappers do) cannot be run on a private view:
    # such calls take the per-model lock and switch the model's own flags, restored afterwards.
    model = gap_net()
    model.forward = model.forward
    model.train()
    before = _flags(model)
    total, errors, mismatches, _ = _explain_concurrently(model, threads=3, rounds=1)
    assert errors == [] and mismatches == [], (errors[:3], set(mismatches))
    assert _flags(model) == before and _hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    seen = []

    def look_then_fail(out):  # inside the call: the locked path has switched the model's own flags
        seen.append(_flags(model))
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        gradcam.GradCAM(model, layer="4")(_inputs()[0], target=look_then_fail)
    assert not any(flag for _, flag in seen[0][0]) and not any(flag for _, flag in seen[0][1])
    assert _flags(model) == before and _hooks(model) == 0  # restored after the exception too


def _train(model, batches, explain_with=None):
    """SGD with momentum on ``batches``; with ``explain_with``, explainer threads call those methods on the
    same model for as long as the training runs. Returns (losses (None for a step that raised), flag
    changes seen by the trainer, the trainer's exceptions, explainer calls, explainer exceptions)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses, flag_changes, failures = [], [0], []
    done = threading.Event()

    def trainer():
        for x, y in batches:
            if not model.training or not all(p.requires_grad for p in model.parameters()):
                flag_changes[0] += 1
            try:
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            except Exception as e:  # noqa: BLE001 - counted by the test
                failures.append(f"{type(e).__name__}: {e}")
                losses.append(None)
        done.set()

    calls, errors = [0], []

    def explainer(method, x):
        while not done.is_set():
            try:
                method(x, top_k=2)
                calls[0] += 1
            except Exception as e:  # noqa: BLE001 - reported by the test
                errors.append(f"{type(method).__name__}: {type(e).__name__}: {e}")

    g = torch.Generator().manual_seed(9)
    pool = [threading.Thread(target=trainer)]
    for make in explain_with or []:
        pool.append(
            threading.Thread(target=explainer, args=(make(model), torch.randn(2, 3, 16, 16, generator=g)))
        )
    for th in pool[1:]:
        th.start()
    pool[0].start()
    for th in pool:
        th.join(timeout=60)
    return losses, flag_changes[0], failures, calls[0], errors


def test_a_training_loop_in_another_thread_is_not_affected():
    g = torch.Generator().manual_seed(7)
    batches = [
        (torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(40)
    ]
    base = gap_net()
    base.train()
    reference = copy.deepcopy(base)
    ref_losses, _, ref_failures, _, _ = _train(reference, batches)
    assert ref_failures == [] and None not in ref_losses
    model = copy.deepcopy(base)
    methods = [
        gradcam.GuidedBackprop,
        lambda m: gradcam.GradCAM(m, layer="4"),
        lambda m: gradcam.GuidedGradCAM(m, layer="2"),
        gradcam.Gradient,
        gradcam.GradCAM,  # layer="auto": its forward runs while the trainer's does
        lambda m: gradcam.AblationCAM(m, layer="4", batch_size=8),  # answers module calls of its own view
        lambda m: gradcam.Occlusion(m, window=8, stride=4),
        lambda m: gradcam.ScoreCAM(m, layer="4", batch_size=8),
    ]
    losses, flag_changes, failures, calls, errors = _train(model, batches, methods)
    same = sum(a is not None and torch.equal(a, b) for a, b in zip(losses, ref_losses))
    assert same == len(batches), (
        f"{same} of {len(batches)} training steps equal the run without explainers; "
        f"{len(failures)} raised, e.g. {failures[:2]}"
    )
    assert errors == [], f"{len(errors)} explainer calls failed, e.g. {errors[:3]}"
    assert calls >= len(methods)  # the explainers really ran beside the trainer
    assert flag_changes == 0, f"the trainer saw changed flags in {flag_changes} of {len(batches)} steps"
    ref_state = reference.state_dict()
    assert all(
        torch.equal(v, ref_state[k]) for k, v in model.state_dict().items()
    )  # weights and BN statistics
    assert _hooks(model) == 0


def test_guided_mode_is_scoped_to_the_calling_thread():
    # While one thread is inside a guided call (held open by a target callable that waits), a plain
    # gradient computed in another thread keeps ordinary ReLU gradients (negative ones pass).
    model = gap_net().eval()
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    inside, release = threading.Event(), threading.Event()

    def waiting_target(out):
        inside.set()
        release.wait(10)
        return out[:, 1]

    th = threading.Thread(target=lambda: gradcam.GuidedBackprop(model)(x, target=waiting_target))
    th.start()
    assert inside.wait(10)
    try:
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xr)[:, 1].sum(), xr)
    finally:
        release.set()
        th.join(10)
    xr = x.clone().requires_grad_(True)
    (expect,) = torch.autograd.grad(model(xr)[:, 1].sum(), xr)
    assert torch.equal(g, expect)


def test_a_failed_call_leaves_no_wrong_auto_layer_cache():
    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = gap_net()

        def forward(self, x):
            if bool((x > 100).any()):
                raise RuntimeError("pixel values out of range")
            return self.net(x)

    model = Picky()
    cam = gradcam.GradCAM(model)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with pytest.raises(RuntimeError, match="^pixel values out of range$"):
        cam(x + 1000)
    assert cam._auto_cache == {}  # the failed search cached nothing
    # A target that fails on every candidate after the search: the candidate list stays whole, untrimmed.
    with pytest.raises(ValueError, match="found no spatial layer on which the target depends"):
        cam(x, target=lambda out: out[:, 3].detach())
    assert [r.spec for r in cam._auto_cache[(3, 16, 16)]][:2] == ["net.4", "net.3"]
    assert cam(x).layer == "net.4"
