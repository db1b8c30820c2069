"""`gradcam explain --neurons FILE`: the top/bottom channels behind a decision, named from a file."""

import json

import torch

import gradcam
from gradcam.cli import main


def test_explain_neurons_prints_named_top_and_bottom_channels(tmp_path, capsys):
    names = {str(c): f"concept-{c}" for c in range(1280)}
    (tmp_path / "names.json").write_text(json.dumps(names))
    code = main(
        ["explain", "--demo", "--out", str(tmp_path / "out"), "--neurons", str(tmp_path / "names.json")]
    )
    assert code == 0
    out = capsys.readouterr().out
    # the same decision computed through the library: the channel with the largest alpha comes first
    from PIL import Image
    from skimage import data

    loaded = gradcam.load_model("efficientnet-lite0")
    x = loaded.preprocess(Image.fromarray(data.chelsea()))[None]
    res = gradcam.GradCAM(loaded.model, layer=loaded.layer)(x)
    order = res.weights[0, 0].argsort(descending=True)
    top, bottom = int(order[0]), int(order[-1])
    lines = out.splitlines()
    head = lines.index("    Channels of layer '_head_act' that raise 'Egyptian cat' most (alpha > 0 helps):")
    assert lines[head + 1].split()[-1] == f"concept-{top}"
    low = lines.index("    Channels that lower 'Egyptian cat' most:")
    assert lines[low + 1].split()[-1] == f"concept-{bottom}"
    assert low - head == 6  # five channels each way


def test_explain_neurons_bad_file_is_a_clear_error(tmp_path, capsys):
    code = main(["explain", "--demo", "--out", str(tmp_path), "--neurons", str(tmp_path / "missing.json")])
    assert code == 2
    assert "Channel-name file" in capsys.readouterr().err


def test_image_result_keeps_channel_weights():
    from PIL import Image
    from skimage import data

    r = gradcam.explain(Image.fromarray(data.chelsea()), top_k=2)
    assert r.weights is not None and r.weights.shape == (2, 1280)
    assert torch.isfinite(r.weights).all()
