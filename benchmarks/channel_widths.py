"""Convolution width against time on this CPU: what a layer of C channels really costs.

onnxruntime's CPU convolutions work in the NCHWc layout, channels in blocks of the vector
width (16 float32 with AVX-512, 8 with AVX2), so a width that is not a multiple of the block
is padded up to one: its time is that of the next multiple, whatever its FLOP count says.
This times, in turns, random networks of the shipped demosaicker's shape (packed 4-channel
input, a 3x3 head to C channels, ``--blocks`` 3x3 C -> C layers, a 3x3 tail to 12, a pixel
shuffle; per-channel PReLU written as the export writes it: ``x + relu((a - 1) x)``) for
several widths C, and reports seconds, nominal GFLOP/s and the time per block layer
against C^2 (flat = no padding waste). Only onnx and onnxruntime are needed.

    python benchmarks/channel_widths.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from common import Section, best_in_turns, markdown_table, publish

WIDTHS = (32, 48, 56, 64, 80, 96)


def conv_stack(width: int, blocks: int, seed: int = 0) -> bytes:
    """The ONNX bytes of a random demosaicker-shaped network of ``width`` channels."""
    from onnx import TensorProto, helper, numpy_helper  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    nodes, weights = [], []

    def conv(name: str, source: str, cin: int, cout: int) -> str:
        w = (rng.standard_normal((cout, cin, 3, 3)) * (1.0 / np.sqrt(9 * cin))).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"{name}.w"))
        weights.append(numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}.b"))
        nodes.append(helper.make_node("Conv", [source, f"{name}.w", f"{name}.b"], [name],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        return name

    def prelu(name: str, source: str, channels: int) -> str:
        slope = (rng.uniform(0.0, 0.3, (channels, 1, 1)) - 1.0).astype(np.float32)
        weights.append(numpy_helper.from_array(slope, f"{name}.a"))
        nodes.append(helper.make_node("Mul", [source, f"{name}.a"], [f"{name}.s"]))
        nodes.append(helper.make_node("Relu", [f"{name}.s"], [f"{name}.r"]))
        nodes.append(helper.make_node("Add", [source, f"{name}.r"], [name]))
        return name

    x = prelu("act0", conv("head", "mosaic", 4, width), width)
    for k in range(blocks):
        x = prelu(f"act{k + 1}", conv(f"block{k}", x, width, width), width)
    nodes.append(helper.make_node("DepthToSpace", [conv("tail", x, width, 12)], ["rgb"], blocksize=2))
    graph = helper.make_graph(
        nodes, f"width{width}",
        [helper.make_tensor_value_info("mosaic", TensorProto.FLOAT, [1, 4, None, None])],
        [helper.make_tensor_value_info("rgb", TensorProto.FLOAT, [1, 3, None, None])],
        weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def nominal_gflop(width: int, blocks: int, side: int) -> float:
    macs = 9 * (4 * width + blocks * width * width + width * 12)
    return 2.0 * macs * side * side / 1e9


def vector_block() -> int:
    """Floats per NCHWc block onnxruntime's CPU kernels use here (16 with AVX-512F)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8").split()
    except OSError:
        return 8
    return 16 if "avx512f" in flags else 8


def main(argv: Sequence[str] | None = None) -> int:
    import onnxruntime as ort  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)))
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--side", type=int, default=768, help="packed input side (a CPU tile)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    widths = [int(w) for w in args.widths.split(",")]
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    feed = {"mosaic": np.random.default_rng(1).random((1, 4, args.side, args.side), dtype=np.float32)}
    runs = [(ort.InferenceSession(conv_stack(w, args.blocks), options,
                                  providers=["CPUExecutionProvider"]), feed) for w in widths]
    seconds = best_in_turns(runs, args.repeats)
    block = vector_block()
    reference = seconds[widths.index(64)] / 64 ** 2 if 64 in widths else None
    rows = []
    for width, s in zip(widths, seconds):
        padded = -(-width // block) * block
        rows.append([width, padded, f"{s:.3f}", f"{nominal_gflop(width, args.blocks, args.side) / s:.0f}",
                     "-" if reference is None else f"{s / width ** 2 / reference:.2f}"])
        print(" | ".join(map(str, rows[-1])), flush=True)
    body = (
        f"Random networks of the demosaicker's shape ({args.blocks} blocks), {args.side}x{args.side} "
        f"packed input, CPUExecutionProvider, {args.threads} threads, best of {args.repeats} in turns. "
        f"NCHWc block on this CPU: {block} floats. Nominal GFLOP/s counts the width's own FLOPs; "
        "'time per C^2' is seconds / C^2 against width 64's (above 1: the width pays for "
        "channels it does not have).\n\n"
        + markdown_table(["width C", "padded to", "seconds", "nominal GFLOP/s", "time per C^2 vs 64"], rows)
    )
    publish(Section("channel_widths", "Convolution width against time (NCHWc padding)", body), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
