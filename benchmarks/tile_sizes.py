"""Engine tile size per model on the CPU: throughput and memory of ``Engine.run`` against the
tile edge, on each model's input at a 24 MP develop's or an 8 MP upscale's size.

A tile overlaps its neighbours by the model's ``margin`` on every side, so the share of
pixels computed twice is about ``(tile / (tile - 2 * margin))**2 - 1``: ~5 % for the
demosaic (margin 10) at 768, but ~19 % for the denoiser (32) and ~25 % for the lens
network (40). Larger tiles cut that, but cost memory (onnxruntime's arena holds one tile's
activations) and cache: whether they pay is what this measures, for the engine's CPU
default (``DEFAULT_TILE``, marked). Each (model, tile) runs in a fresh process, so its peak
RSS is its own: one warm-up run, then the best of ``--repeats`` (wall seconds; GFLOP/s
from the manifest's cost per input megapixel).

    python benchmarks/tile_sizes.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from common import Section, describe_model, markdown_table, publish

#: (model, input height, width): a 24 MP develop's stage inputs (the raw stages work on the
#: packed half-resolution grid), and an 8 MP upscale's 768-row band.
CASES = (
    ("denoise", 2000, 3000),
    ("demosaic", 2000, 3000),
    ("lens", 4000, 6000),
    ("upscale-fast", 768, 3464),
)
TILES = (768, 1024, 1536, 2048)

_CHILD = """
import json, resource, sys, time
import numpy as np
from nnip.core.engine import Engine
from nnip.core.models import Registry
name, height, width, tile, repeats = sys.argv[1], *map(int, sys.argv[2:]),
registry = Registry()
spec = registry.get(name)
engine = Engine("cpu", threads=2, registry=registry)
tile = int(tile)
rng = np.random.default_rng(0)
arrays = [rng.random((t.channels, height, width), dtype=np.float32) for t in spec.inputs]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
engine.run(spec, arrays, tile=tile, release=False)
best = float("inf")
for _ in range(repeats):
    start = time.perf_counter()
    engine.run(spec, arrays, tile=tile, release=False)
    best = min(best, time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"tile": tile, "seconds": best, "peak_mib": peak / 1024,
                  "inputs_mib": before / 1024}))
"""


def measure(name: str, height: int, width: int, tile: int, repeats: int) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, name, str(height), str(width), str(tile),
                           str(repeats)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    from nnip.core.engine import DEFAULT_TILE  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)

    registry = Registry()
    rows, models, verdicts = [], [], []
    for name, height, width in CASES:
        spec = registry.get(name)
        models.append(describe_model(spec))
        gflop = spec.gflop_per_mp * height * width / 1e6
        results = [measure(name, height, width, t, args.repeats) for t in TILES]
        fastest = min(r["seconds"] for r in results)
        for t, r in zip(TILES, results):
            marks = [m for m, hit in (("default", t == DEFAULT_TILE["cpu"]),
                                      ("model's own", t == spec.tiles.get("cpu"))) if hit]
            label = f"{t} ({', '.join(marks)})" if marks else str(t)
            overlap = (r["tile"] / (r["tile"] - 2 * spec.margin)) ** 2 - 1
            rows.append([name, f"{width}x{height}", spec.margin, label, f"{overlap:.0%}",
                         f"{r['seconds']:.2f}", f"{gflop / r['seconds']:.0f}",
                         f"{r['seconds'] / fastest:.2f}", f"{r['peak_mib'] - r['inputs_mib']:.0f}"])
            print(" | ".join(map(str, rows[-1])), flush=True)
        default = results[TILES.index(DEFAULT_TILE["cpu"])]
        best_tile, best = min(zip(TILES, results), key=lambda pair: pair[1]["seconds"])
        verdicts.append(
            f"- {name}: fastest tile {best_tile}, {default['seconds'] / best['seconds']:.2f}x the "
            f"default's speed for {best['peak_mib'] - best['inputs_mib']:.0f} MiB against "
            f"{default['peak_mib'] - default['inputs_mib']:.0f}"
            + (f"; the model's own CPU tile (manifest `tiles`, what runs by default): "
               f"{spec.tiles['cpu']}" if "cpu" in spec.tiles else ""))
    body = (
        "Engine.run on random inputs of each stage's size, CPUExecutionProvider, 2 threads, "
        f"best of {args.repeats} after a warm-up, each (model, tile) in a fresh process. "
        "Overlap: the share of pixels a tile computes twice, (tile / (tile - 2 margin))^2 - 1. "
        "Memory: peak RSS above the process with its inputs made (onnxruntime's arena, the "
        "tiles and the output).\n\n"
        + markdown_table(["model", "input", "margin", "tile", "overlap", "seconds", "GFLOP/s",
                          "x fastest", "MiB above inputs"], rows)
        + "\n\n" + "\n".join(verdicts)
    )
    publish(Section("tile_sizes", "Engine tile size per model (CPU)", body, models=models),
            args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
