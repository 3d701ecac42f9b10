"""Export pieces: ONNX parity, FLOPs counted from the graph, margin from the impulse response."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from nnip.core.models import Registry, TensorSpec  # noqa: E402
from nnip.train.arch import SRNet, conv_macs_per_pixel  # noqa: E402
from nnip.train.export import (  # noqa: E402
    METADATA_KEY,
    check_parity,
    export_model,
    onnx_gflop_per_mp,
    onnx_margin,
    rewrite_installed,
    split_prelu,
    to_onnx,
)
from nnip.train.tasks import ExportSpec  # noqa: E402

RGB = dict(channels=3, layout="rgb", transfer="srgb")


def _spec(scale: int, channels_in: int = 3, channels_out: int = 3) -> ExportSpec:
    return ExportSpec(
        task="upscale",
        inputs=(TensorSpec(name="image", channels=channels_in, layout="rgb"),),
        outputs=(TensorSpec(name="output", channels=channels_out, layout="rgb"),),
        scale=scale,
    )


class _Stack(nn.Module):
    """Known receptive field: 3x3 (radius 1) + 5x5 (radius 2) + 3x3 dilated 2 (radius 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
            nn.Conv2d(4, 4, 5, padding=2), nn.PReLU(4),
            nn.Conv2d(4, 3, 3, padding=2, dilation=2),
        )

    def forward(self, x):
        return self.body(x)


def test_margin_of_a_known_stack():
    torch.manual_seed(0)
    raw = to_onnx(_Stack().eval(), _spec(scale=1))
    assert onnx_margin(raw, _spec(scale=1)) == 1 + 2 + 2


def test_margin_of_srnet_counts_input_pixels_not_output_pixels():
    torch.manual_seed(0)
    net = SRNet(channels=8, blocks=2)
    with torch.no_grad():  # a non-trivial tail so the impulse reaches the output
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    plain = net.plain()
    raw = to_onnx(plain, _spec(scale=2))
    assert onnx_margin(raw, _spec(scale=2)) == 4  # four 3x3 convs at input resolution


def test_parity_and_flops_from_graph():
    torch.manual_seed(0)
    plain = SRNet(channels=16, blocks=3).plain()
    raw = to_onnx(plain, _spec(scale=2))
    assert check_parity(plain, raw, _spec(scale=2)) <= 1e-4
    expected = 2 * conv_macs_per_pixel(plain) / 1e3
    assert onnx_gflop_per_mp(raw) == pytest.approx(expected, rel=1e-9)


def test_parity_failure_is_reported():
    from nnip.train.export import ExportError

    plain = SRNet(channels=4, blocks=1).plain()
    raw = to_onnx(plain, _spec(scale=2))
    with torch.no_grad():
        plain.convs[0].bias.add_(1.0)  # torch side no longer matches the exported graph
    with pytest.raises(ExportError, match="differs from torch"):
        check_parity(plain, raw, _spec(scale=2))


def test_export_model_writes_manifest_entry_and_metadata(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format_version": 1,
        "models": [{"name": "other", "task": "upscale", "file": "other.onnx", "sha256": "0" * 64,
                    "inputs": [{"name": "image", "channels": 3, "layout": "rgb"}],
                    "outputs": [{"name": "output", "channels": 3, "layout": "rgb"}]}],
    }))
    net = SRNet(channels=8, blocks=1)
    spec = ExportSpec(task="upscale", inputs=(TensorSpec(name="image", **RGB),),
                      outputs=(TensorSpec(name="output", **RGB),), scale=2)
    first = export_model(net, spec, "upscale-test", tmp_path, metrics={"val_psnr_db": 30.0})
    assert "tiles" not in json.loads((tmp_path / "manifest.json").read_text())["models"][1]
    # Exporting again under the same name replaces the entry, other entries stay; a task's
    # preferred tiles (ExportSpec.tiles) reach the manifest.
    spec = dataclasses.replace(spec, tiles={"cpu": 64})
    second = export_model(net, spec, "upscale-test", tmp_path, version="2")
    registry = Registry(tmp_path)
    assert sorted(registry.names()) == ["other", "upscale-test"]
    loaded = registry.get("upscale-test")
    assert loaded.version == "2" and loaded.sha256 == second.sha256
    assert loaded.tiles == {"cpu": 64}
    assert first.metrics["val_psnr_db"] == 30.0
    assert loaded.scale == 2 and loaded.margin == 3
    assert loaded.gflop_per_mp == pytest.approx(2 * conv_macs_per_pixel(net.plain()) / 1e3, rel=1e-3)
    for name in ("upscale-test.onnx", "manifest.json"):  # readable by others, like any file
        assert (tmp_path / name).stat().st_mode & 0o044 == 0o044
    model = onnx.load(str(tmp_path / "upscale-test.onnx"))
    assert model.opset_import[0].version >= 17
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta["name"] == "upscale-test" and meta["margin"] == 3 and "sha256" not in meta
    # Dynamic height/width: the file runs on a size it was not exported with.
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "upscale-test.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"image": np.random.rand(1, 3, 19, 23).astype(np.float32)})[0]
    assert out.shape == (1, 3, 38, 46)


def _ops(path_or_bytes) -> set[str]:
    model = onnx.load_from_string(path_or_bytes) if isinstance(path_or_bytes, bytes) \
        else onnx.load(str(path_or_bytes))
    return {node.op_type for node in model.graph.node}


def test_split_prelu_computes_the_same_function_without_prelu():
    import onnxruntime as ort

    net = _Stack().eval()
    with torch.no_grad():
        net.body[3].weight.copy_(torch.tensor([-0.5, 0.1, 0.25, 2.0]))  # any slope, any sign
    raw = to_onnx(net, _spec(1))
    split = split_prelu(raw)
    assert "PRelu" in _ops(raw) and "PRelu" not in _ops(split)
    x = np.random.default_rng(1).standard_normal((1, 3, 21, 17)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(split, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


class _Residual(nn.Module):
    """A PReLU whose output is also added back: its steep slopes cannot be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.PReLU(3)

    def forward(self, x):
        return self.act(self.conv(x)) + x


def _run(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]


def _expected(net: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def test_split_prelu_folds_steep_slopes_into_the_convs_and_runs_three_passes():
    net = _Stack().eval()
    with torch.no_grad():
        net.body[3].weight.copy_(torch.tensor([-0.5, 0.1, 1.0, 2.0]))
    raw = to_onnx(net, _spec(1))
    split = onnx.load_from_string(split_prelu(raw))
    ops = [n.op_type for n in split.graph.node]
    assert ops.count("Mul") == 1 and ops.count("Relu") == 2 and "PRelu" not in ops
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in split.graph.initializer}
    below = next(v for k, v in inits.items() if k.endswith("slope_minus_one")).ravel()
    np.testing.assert_allclose(below, [-1.5, -0.9, 0.0, -0.5], atol=1e-6)  # 1/2 - 1 for 2.0
    conv_before = net.body[2].weight.detach().numpy()
    folded = next(v for v in inits.values() if v.shape == conv_before.shape)
    np.testing.assert_allclose(folded[3], -conv_before[3], atol=1e-7)  # its row negated
    np.testing.assert_allclose(folded[:3], conv_before[:3], atol=1e-7)
    x = np.random.default_rng(3).standard_normal((1, 3, 21, 17)).astype(np.float32)
    np.testing.assert_allclose(_run(split.SerializeToString(), x), _expected(net, x),
                               rtol=0, atol=1e-5)


def test_split_prelu_keeps_four_passes_where_a_steep_slope_cannot_be_folded():
    net = _Residual().eval()
    with torch.no_grad():
        net.act.weight.copy_(torch.tensor([0.2, 1.5, -0.3]))
    split = split_prelu(to_onnx(net, _spec(1)))
    assert any(i.name.endswith("one_minus_slope") for i in onnx.load_from_string(split).graph.initializer)
    x = np.random.default_rng(4).standard_normal((1, 3, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(_run(split, x), _expected(net, x), rtol=0, atol=1e-5)
    with torch.no_grad():  # gentle slopes only: three passes even here
        net.act.weight.copy_(torch.tensor([0.2, 0.9, -0.3]))
    split = split_prelu(to_onnx(net, _spec(1)))
    assert not any(i.name.endswith("one_minus_slope")
                   for i in onnx.load_from_string(split).graph.initializer)
    np.testing.assert_allclose(_run(split, x), _expected(net, x), rtol=0, atol=1e-5)


def test_split_prelu_rewrites_the_four_pass_form_of_older_exports():
    net = _Stack().eval()
    with torch.no_grad():
        net.body[3].weight.copy_(torch.tensor([0.3, 1.2, -0.2, 0.7]))
    model = onnx.load_from_string(to_onnx(net, _spec(1)))
    prelu = next(n for n in model.graph.node if n.op_type == "PRelu")
    slope = next(onnx.numpy_helper.to_array(i) for i in model.graph.initializer
                 if i.name == prelu.input[1]).astype(np.float32)
    from nnip.train.export import _four_pass_prelu

    nodes = []
    for node in model.graph.node:  # what an export before the 3-pass form wrote
        nodes += _four_pass_prelu(model.graph, node, slope, "act") if node is prelu else [node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    old = model.SerializeToString()
    new = onnx.load_from_string(split_prelu(old))
    assert [n.op_type for n in new.graph.node].count("Mul") == 1
    x = np.random.default_rng(5).standard_normal((1, 3, 13, 12)).astype(np.float32)
    np.testing.assert_allclose(_run(new.SerializeToString(), x), _run(old, x), rtol=0, atol=1e-5)


def test_split_prelu_makes_a_single_slope_a_leaky_relu_with_nothing_left_dangling():
    import onnxruntime as ort

    net = SRNet(channels=4, blocks=1, slopes="layer").plain().eval()
    with torch.no_grad():
        for act, slope in zip(net.acts, (-0.3, 1.4)):
            act.weight.fill_(slope)  # any sign, also above 1
    split = split_prelu(to_onnx(net, _spec(2)))
    model = onnx.load_from_string(split)
    leaky = [n for n in model.graph.node if n.op_type == "LeakyRelu"]
    assert len(leaky) == 2 and not {"PRelu", "Relu", "Mul", "Identity"} & _ops(split)
    assert [round(a.f, 5) for n in leaky for a in n.attribute] == [-0.3, 1.4]
    used = {name for n in model.graph.node for name in n.input}
    assert all(init.name in used for init in model.graph.initializer)
    x = np.random.default_rng(2).standard_normal((1, 3, 15, 13)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(split, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_rewrite_installed_replaces_the_file_and_its_sha(tmp_path):
    spec = ExportSpec(task="upscale", inputs=(TensorSpec(name="image", **RGB),),
                      outputs=(TensorSpec(name="output", **RGB),), scale=2)
    net = SRNet(channels=8, blocks=1)
    export_model(net, spec, "up", tmp_path)
    assert "PRelu" not in _ops(tmp_path / "up.onnx")  # export already splits
    # A file from before the rewrite: put the PRelu graph back, then rewrite it.
    path = tmp_path / "up.onnx"
    path.write_bytes(to_onnx(net.plain().eval(), spec))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    from nnip.core.models import sha256_of

    manifest["models"][0]["sha256"] = sha256_of(path)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    rewritten = rewrite_installed("up", tmp_path)
    assert "PRelu" not in _ops(path) and rewritten.sha256 == sha256_of(path)
    Registry(tmp_path).load(Registry(tmp_path).get("up"))  # verifies the new sha256
