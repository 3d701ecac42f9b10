"""Small real ONNX graphs for tests: convolution stacks of known receptive field.

Every builder returns a :class:`BuiltNet`: the ``onnx.ModelProto`` plus what a manifest
entry needs (margin, align, scale, input and output channels), so a test can check the
tiler and the engine against a network whose true receptive field is known by
construction. Weights are random (seeded) and scaled by ``1 / sqrt(fan_in)`` so values stay
O(1) through many layers.

Shapes are dynamic in N, H and W, static in C, as an exported model's are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nnip.core.models import Registry, sha256_of

__all__ = [
    "OPSET",
    "BuiltNet",
    "conv_net",
    "global_mean_net",
    "write_model",
    "install",
    "session_of",
    "batch_fn",
]

#: Opset every builder uses (well inside what onnxruntime 1.17+ runs).
OPSET = 17


@dataclass
class BuiltNet:
    """A built graph and the facts a manifest entry states about it."""

    model: onnx.ModelProto
    margin: int | None  # receptive-field radius in input pixels; None: unbounded
    scale: int = 1
    align: int = 1
    inputs: list[tuple[str, int]] = field(default_factory=list)  # (name, channels)
    outputs: list[tuple[str, int]] = field(default_factory=list)
    params: int = 0

    def to_bytes(self) -> bytes:
        return self.model.SerializeToString()


def _conv(
    nodes: list, inits: list, rng: np.random.Generator, src: str, dst: str,
    cin: int, cout: int, kernel: int,
) -> int:
    """Append a same-padded ``kernel x kernel`` conv ``src -> dst``; return its parameters."""
    w = (rng.standard_normal((cout, cin, kernel, kernel)) / np.sqrt(cin * kernel * kernel))
    b = 0.1 * rng.standard_normal(cout)
    inits += [
        numpy_helper.from_array(w.astype(np.float32), f"{dst}_w"),
        numpy_helper.from_array(b.astype(np.float32), f"{dst}_b"),
    ]
    pad = kernel // 2
    nodes.append(helper.make_node(
        "Conv", [src, f"{dst}_w", f"{dst}_b"], [dst],
        kernel_shape=[kernel, kernel], pads=[pad, pad, pad, pad],
    ))
    return w.size + b.size


def _value_info(name: str, channels: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, "H", "W"])


def conv_net(
    in_channels: int = 3,
    out_channels: int = 3,
    *,
    layers: int = 2,
    width: int = 8,
    kernel: int = 3,
    scale: int = 1,
    cond_channels: int = 0,
    space_to_depth: int = 1,
    relu: bool = True,
    dynamic_channels: bool = False,
    seed: int = 0,
) -> BuiltNet:
    """A stack of ``layers`` same-padded convolutions with a known receptive field.

    Parameters
    ----------
    in_channels, out_channels : int
        Image input and output channels.
    layers : int
        Convolutions in the stack (>= 1); the receptive-field radius is
        ``layers * (kernel // 2)`` in the stack's own pixels.
    width : int
        Channels between convolutions.
    scale : int
        > 1 ends with a conv to ``out_channels * scale**2`` and DepthToSpace (pixel shuffle,
        CRD order as torch's ``PixelShuffle``).
    cond_channels : int
        > 0 adds a second input ``cond`` (a conditioning map of that many channels at the
        image's size), concatenated to the image before the first conv.
    space_to_depth : int
        ``f`` > 1 wraps the stack in SpaceToDepth(f) ... DepthToSpace(f): the network works
        on f x f blocks, so its output depends on the alignment of the input to f
        (``align = f``) and its margin is ``f * r + f - 1`` for a block-level radius ``r``.
    dynamic_channels : bool
        Leave the channel dimension of inputs and outputs symbolic.
    """
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    inputs = [("image", in_channels)] + ([("cond", cond_channels)] if cond_channels else [])
    src = "image"
    cin = in_channels
    if cond_channels:
        nodes.append(helper.make_node("Concat", ["image", "cond"], ["x_in"], axis=1))
        src, cin = "x_in", in_channels + cond_channels
    f = space_to_depth
    if f > 1:
        nodes.append(helper.make_node("SpaceToDepth", [src], ["x_s2d"], blocksize=f))
        src, cin = "x_s2d", cin * f * f
    final = out_channels * scale * scale * f * f
    params = 0
    for i in range(layers):
        last = i == layers - 1
        cout = final if last else width
        dst = f"conv{i}"
        params += _conv(nodes, inits, rng, src, dst, cin, cout, kernel)
        src, cin = dst, cout
        if relu and not last:
            nodes.append(helper.make_node("Relu", [src], [f"{dst}_relu"]))
            src = f"{dst}_relu"
    for block in (f, scale):
        if block > 1:
            nodes.append(helper.make_node(
                "DepthToSpace", [src], [f"{src}_d2s"], blocksize=block, mode="CRD"
            ))
            src = f"{src}_d2s"
    nodes.append(helper.make_node("Identity", [src], ["output"]))
    radius = layers * (kernel // 2)
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [_value_info(n, "C" + n if dynamic_channels else c) for n, c in inputs],
        [_value_info("output", "Cout" if dynamic_channels else out_channels)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return BuiltNet(
        model=model,
        margin=f * radius + f - 1,
        scale=scale,
        align=f,
        inputs=inputs,
        outputs=[("output", out_channels)],
        params=params,
    )


def global_mean_net(channels: int = 1) -> BuiltNet:
    """``output = image + mean(image)`` over the whole image: an unbounded receptive field.

    Tiling cannot reproduce such a model; :func:`~nnip.core.tiling.measure_margin` must
    say so instead of returning a number.
    """
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["mean"]),
        helper.make_node("Add", ["image", "mean"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "global_mean", [_value_info("image", channels)], [_value_info("output", channels)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return BuiltNet(
        model=model, margin=None, inputs=[("image", channels)], outputs=[("output", channels)]
    )


def write_model(net: BuiltNet, directory: Path, name: str) -> Path:
    """Save ``net`` as ``directory / f"{name}.onnx"`` and return the path."""
    path = Path(directory) / f"{name}.onnx"
    path.write_bytes(net.to_bytes())
    return path


def _entry(name: str, net: BuiltNet, path: Path, task: str, **overrides: object) -> dict:
    def tensor(n: str, c: int) -> dict:
        return {"name": n, "channels": c, "layout": "rgb" if c == 3 else "grey"}

    entry = {
        "name": name,
        "task": task,
        "version": "1",
        "file": path.name,
        "sha256": sha256_of(path),
        "inputs": [tensor(n, c) for n, c in net.inputs],
        "outputs": [tensor(n, c) for n, c in net.outputs],
        "scale": net.scale,
        "margin": net.margin,
        "align": net.align,
        "params": net.params,
    }
    entry.update(overrides)
    return entry


def install(
    directory: Path, nets: dict[str, BuiltNet], *, task: str = "upscale",
    overrides: dict[str, dict] | None = None,
) -> Registry:
    """Write each net and a ``manifest.json`` into ``directory``; return its Registry.

    ``overrides[name]`` replaces fields of that model's manifest entry (to make a spec
    that lies about its graph).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    overrides = overrides or {}
    entries = [
        _entry(name, net, write_model(net, directory, name), task, **overrides.get(name, {}))
        for name, net in nets.items()
    ]
    manifest = {"format_version": 1, "models": entries}
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return Registry(directory)


def session_of(net: BuiltNet, threads: int = 1):
    """An onnxruntime CPU session on ``net`` (from bytes, no file)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(
        net.to_bytes(), options, providers=["CPUExecutionProvider"]
    )


def batch_fn(session) -> Callable[[list[np.ndarray]], np.ndarray]:
    """``run_batch_fn`` for :func:`nnip.core.tiling.run_tiled` over a session's inputs."""
    names = [i.name for i in session.get_inputs()]

    def run(arrays: list[np.ndarray]) -> np.ndarray:
        return session.run(None, dict(zip(names, arrays)))[0]

    return run
