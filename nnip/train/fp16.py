"""fp16 variants of shipped models, for GPU execution providers.

``python -m nnip.train.fp16 upscale-fast`` writes ``upscale-fast-fp16.onnx``: every float
weight and activation in half precision (onnxconverter-common's converter), the graph's
inputs and outputs kept float32 (``keep_io_types``), so the engine feeds it exactly as the
original. Its manifest entry is ``variant_of: NAME``, ``precision: fp16`` (see
:mod:`nnip.core.models`). Under ``--precision auto`` the engine runs a model's fp16 variant
in its place on CUDA and TensorRT when one is installed, never on the CPU; ``--precision
fp16`` asks for it anywhere (:class:`nnip.core.engine.Engine`).

Whether a variant ships is decided on a GPU, where it runs: ``benchmarks/gpu_speed.py``
measures its agreement with the fp32 model and the benchmark figures with ``--device
cuda``; it ships only where the benchmark quality drops by at most 0.05 dB.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import onnx

from nnip.core.models import ModelSpec, resolve_models_dir
from nnip.train.export import _write_atomic
from nnip.train.quantize import install_variant, variant_source

__all__ = ["PRECISION", "KEPT_FLOAT_OPS", "convert_file", "half_model", "main"]

PRECISION = "fp16"
#: Ops left in float32 besides the converter's own list: Cast (the lens model casts a
#: comparison to float; converted, its declared output type no longer matched). Blocking
#: the shape ops too made the converter run for minutes at 3 GB on upscale-fast.
KEPT_FLOAT_OPS: tuple[str, ...] = ("Cast",)


def convert_file(source: Path, target: Path) -> None:
    """Write the fp16 version of ``source``'s graph to ``target`` (inputs/outputs float32)."""
    from onnxconverter_common import float16  # noqa: PLC0415 (a training-side dependency)

    model = onnx.load(str(source))
    with warnings.catch_warnings():
        # "the float32 number 1e-8 will be truncated": weights below fp16's range become
        # its smallest value; they are far below what changes an 8- or 16-bit output.
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(
            model, keep_io_types=True,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(KEPT_FLOAT_OPS),
        )
    onnx.checker.check_model(half)
    _write_atomic(target, half.SerializeToString())


def half_model(
    name: str, models_dir: Path | None = None, out_dir: Path | None = None, *, command: str = ""
) -> ModelSpec:
    """Write ``NAME-fp16.onnx`` and its manifest entry into ``out_dir`` (default ``models_dir``).

    A different ``out_dir`` first gets a copy of the models, so it is a complete models
    directory to benchmark with ``--models-dir`` before shipping.
    """
    spec, source, out_dir = variant_source(name, models_dir, out_dir)
    variant = f"{name}-{PRECISION}"
    target = out_dir / f"{variant}.onnx"
    entry = {
        **spec.to_dict(),
        "name": variant,
        "file": target.name,
        "variant_of": name,
        "precision": PRECISION,
        "provenance": {**spec.provenance, "fp16_command": command,
                       "fp16": {"converter": "onnxconverter-common keep_io_types",
                                "float32_ops": list(KEPT_FLOAT_OPS),
                                "source_sha256": spec.sha256}},
        "metrics": {},
        "description": f"fp16 (GPU) variant of {name}: {spec.description}",
    }
    with tempfile.TemporaryDirectory(prefix="nnip-fp16-") as tmp:
        staged = Path(tmp) / target.name
        convert_file(source, staged)
        return install_variant(entry, staged, target, out_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nnip.train.fp16",
        description="Write the fp16 (GPU) variant of a shipped model.",
    )
    parser.add_argument("names", nargs="+", help="model names in the manifest, e.g. upscale-fast")
    parser.add_argument("--models-dir", type=Path, help="where the models are (default: the installed onnx_models/)")
    parser.add_argument("--out-dir", type=Path,
                        help="where NAME-fp16.onnx and the manifest go (default: --models-dir); "
                        "another folder gets a copy of the models, to benchmark before shipping")
    args = parser.parse_args(argv)
    command = "python -m nnip.train.fp16 " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    out_dir = args.out_dir or resolve_models_dir(args.models_dir)
    source_dir = args.models_dir
    for name in args.names:
        spec = half_model(name, source_dir, out_dir, command=command)
        source_dir = out_dir  # the next conversion adds to this manifest, not a fresh copy
        print(json.dumps({"name": spec.name, "file": str(spec.path), "sha256": spec.sha256}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
