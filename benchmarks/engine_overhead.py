"""What tiling costs: Engine.run (tiled, end to end) against one whole-image session.run.

An ~76k-parameter network of 3x3 convolutions (3 -> 32, 8 x 32 -> 32, -> 3, ReLU between;
receptive-field radius 10) runs on a 2048 x 2048 image, with the same thread count both
ways, best of ``--repeats``. The bar: tiled throughput >= 85 % of whole-image throughput,
and the tiled output equal to the whole-image output (max abs diff <= 1e-4).

    python benchmarks/engine_overhead.py                 # the figure for RESULTS.md
    python benchmarks/engine_overhead.py --tiles 256,384,512,768 --size 1024   # tune

Prints a Markdown snippet with the machine, date, onnxruntime version and the command.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from common import Section, markdown_table, publish

from nnip.core.engine import Engine
from nnip.core.models import Registry, sha256_of
from nnip.core.tiling import measure_margin

BAR = 0.85
TOL = 1e-4


def build_network(width: int = 32, middle: int = 8, seed: int = 0) -> tuple[onnx.ModelProto, int]:
    """3 -> width, ``middle`` x width -> width, width -> 3, all 3x3 'same' convs, ReLU between.

    Returns the model and its parameter count.
    """
    rng = np.random.default_rng(seed)
    channels = [3] + [width] * (middle + 1) + [3]
    nodes, inits, src, params = [], [], "image", 0
    for i, (cin, cout) in enumerate(zip(channels[:-1], channels[1:])):
        w = rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(cin * 9)
        b = 0.05 * rng.standard_normal(cout)
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(b.astype(np.float32), f"b{i}")]
        params += w.size + b.size
        dst = f"conv{i}"
        nodes.append(helper.make_node("Conv", [src, f"w{i}", f"b{i}"], [dst],
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        src = dst
        if i < len(channels) - 2:
            nodes.append(helper.make_node("Relu", [src], [f"{dst}_relu"]))
            src = f"{dst}_relu"
    nodes.append(helper.make_node("Identity", [src], ["output"]))
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(nodes, "overhead", [io("image")], [io("output")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model, params


def install(directory: Path, model: onnx.ModelProto, params: int, margin: int) -> Registry:
    path = directory / "overhead.onnx"
    path.write_bytes(model.SerializeToString())
    tensor = {"name": "image", "channels": 3, "layout": "rgb"}
    entry = {"name": "upscale-overhead", "task": "upscale", "file": path.name,
             "sha256": sha256_of(path), "inputs": [tensor],
             "outputs": [dict(tensor, name="output")], "margin": margin, "params": params}
    (directory / "manifest.json").write_text(json.dumps({"format_version": 1, "models": [entry]}))
    return Registry(directory)


def best_of(repeats: int, fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


EQUALITY_CASES = ((1, 1), (7, 13), (1001, 777), (6000, 4000))


def equality_rows(threads: int) -> list[tuple[str, int, int, str]]:
    """Tiled vs whole-image max abs difference for the issue's image sizes and tile sizes."""
    model, params = build_network(width=8, middle=2, seed=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        probe = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        margin = measure_margin(lambda x: probe.run(None, {"image": x})[0], 3)
        registry = install(Path(tmp), model, params, margin)
        engine = Engine("cpu", threads=threads, registry=registry)
        spec = registry.get("upscale-overhead")
        rng = np.random.default_rng(0)
        for height, width in EQUALITY_CASES:
            image = rng.random((3, height, width), dtype=np.float32)
            whole = engine.run_whole(spec, [image])
            small = height * width <= 1_000_000
            tiles = [2 * margin + 1, 2 * margin + 2, 64, 257] if small else [64, 257, 768]
            for tile in tiles:
                diff = float(np.abs(engine.run(spec, [image], tile=tile) - whole).max())
                rows.append((f"{width}x{height}", margin, tile, f"{diff:.1e}"))
            print(f"{width}x{height}: done", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image edge in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiles", default="", help="comma-separated tile sizes (default: the engine's)")
    parser.add_argument("--results", type=Path, default=None,
                        help="also write the sections into this RESULTS.md")
    parser.add_argument("--no-equality", action="store_true", help="skip the tiling-equality table")
    args = parser.parse_args(argv)

    model, params = build_network()
    print(f"network: 3x3 convs 3->32, 8 x 32->32, 32->3; {params} parameters", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        probe = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        margin = measure_margin(lambda x: probe.run(None, {"image": x})[0], 3)
        registry = install(Path(tmp), model, params, margin)
        engine = Engine("cpu", threads=args.threads, registry=registry)
        spec = registry.get("upscale-overhead")
        image = np.random.default_rng(0).random((3, args.size, args.size), dtype=np.float32)
        session = engine.session(spec)
        pad = margin
        padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")[None]

        def whole_run() -> np.ndarray:
            return session.run(None, {"image": padded})[0][0, :, pad:-pad, pad:-pad]

        t_whole, whole = best_of(args.repeats, whole_run)
        tiles = [int(t) for t in args.tiles.split(",") if t] or [engine.default_tile]
        rows = []
        for tile in tiles:
            t_tiled, tiled = best_of(args.repeats, lambda: engine.run(spec, [image], tile=tile))
            diff = float(np.abs(tiled - whole).max())
            rows.append((tile, t_tiled, t_whole / t_tiled, diff))
            print(f"tile {tile}: {t_tiled:.3f} s, ratio {t_whole / t_tiled:.1%}, max diff {diff:.2e}", flush=True)

    megapixels = args.size * args.size / 1e6
    table = [("whole-image session.run", "-", f"{t_whole:.3f}", f"{megapixels / t_whole:.3f}", "100%", "-")]
    for tile, t_tiled, ratio, diff in rows:
        verdict = "pass" if ratio >= BAR and diff <= TOL else "FAIL"
        table.append(("Engine.run tiled", tile, f"{t_tiled:.3f}", f"{megapixels / t_tiled:.3f}",
                      f"{ratio:.1%} ({verdict}, bar {BAR:.0%})", f"{diff:.1e}"))
    body = (
        f"Network: 3x3 convs 3->32, 8 x 32->32, 32->3, ReLU; {params} parameters, margin {margin} "
        f"(measured); image {args.size}x{args.size}; CPUExecutionProvider, {args.threads} threads; "
        f"best of {args.repeats}.\n\n"
        + markdown_table(("run", "tile", "seconds", "MP/s", "throughput vs whole", "max abs diff"), table)
    )
    publish(Section("engine_overhead", "Engine overhead: tiled end to end vs one whole-image run",
                    body, argv=argv), args.results)
    ok = all(r[2] >= BAR and r[3] <= TOL for r in rows)
    if not args.no_equality:
        eq = equality_rows(args.threads)
        worst = max(float(r[3]) for r in eq)
        verdict = "pass" if worst <= TOL else "FAIL"
        body = (
            "Engine.run (tiled) against Engine.run_whole (one session.run on the reflect-padded "
            "image) with a random-weight 3x3-conv network (3->8, 2 x 8->8, 8->3), including the "
            f"minimum tile 2 x margin + 1. Worst max abs difference {worst:.1e}: {verdict} "
            f"(bar {TOL:g}). The test suite checks the same on more graphs (scale 2, conditioning "
            "input, align 2): tests/core/test_tiling.py, tests/core/test_engine.py.\n\n"
            + markdown_table(("image (WxH)", "margin", "tile", "max abs diff"), eq)
        )
        publish(Section("tiling_equality", "Tiling equality: tiled == whole-image inference",
                        body, argv=argv), args.results)
        ok = ok and worst <= TOL
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
