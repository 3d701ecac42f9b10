"""fp16 variants of the shipped models: does each model's benchmark quality hold in half precision?

``--precision auto`` runs a model's fp16 variant (``NAME-fp16``, from ``python -m
nnip.train.fp16 NAME``) in its place on CUDA and TensorRT. A variant ships only where its
quality holds: no benchmark row lower than the fp32 model's by more than 0.05 dB.

This machine has no GPU, so the figures come from onnxruntime's CPU provider, which runs an
fp16 graph by putting casts around each node it has no fp16 kernel for: the weights and
every tensor passed between operators are fp16-rounded, as on the GPU, while each
operator computes in fp32 inside. What this cannot show is the GPU's own arithmetic within
an operator (fp16 products, its accumulation order); ``benchmarks/gpu_speed.py`` measures
the same rows on CUDA when a GPU is lent.

For each model (``--models``), its fp16 variant is written into a scratch copy of the
models directory, then the task's own harness scores the fp32 model and the variant on the
same images:

- upscale: ``sr_quality``'s Set5 and Set14 (Y PSNR), the network alone and with the
  fidelity step as ``nnups upscale`` runs it;
- demosaic: ``demosaic_quality``'s Kodak24 and McMaster (RGB PSNR, GRBG mosaic) and
  ``develop_end_to_end``'s whole ``nnip develop`` on simulated Kodak24 DNGs, run with
  ``--precision fp16``;
- denoise and lens: the task's held-out validation crops (the images its training split
  holds out, simulated at fixed conditions) scored by the task's own metric, as
  ``int8_screen`` does (these tasks' benchmarks take 6-18 minutes a model).

A variant that passes ships by running ``python -m nnip.train.fp16 NAME`` into
``onnx_models/`` (the command is printed); ``tests/test_precision.py`` then keeps it tied
to its fp32 source.

    python benchmarks/fp16_variants.py --results benchmarks/RESULTS.md
    python benchmarks/fp16_variants.py --models upscale-fast --limit 2     # a quick check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from common import Section, describe_model, markdown_table, publish, shared_path

BAR_DB = 0.05
DEFAULT_MODELS = "upscale-fast,upscale-quality,demosaic,denoise,lens"


def held_out_quality(registry: Any, threads: int) -> Callable[..., dict[str, float]]:
    """A harness: the mean of the task's metric over its held-out validation crops, as
    ``int8_screen`` scores them (the crops simulated once per original model)."""
    from int8_screen import _session, _val_score, task_data  # noqa: PLC0415

    crops: dict[str, tuple[Any, list]] = {}

    def measure(_engine: Any, spec: Any, _bench: Path, _limit: int | None,
                _models_dir: Path) -> dict[str, float]:
        source = registry.get(spec.variant_of) if spec.variant_of else spec
        if source.name not in crops:
            task, data = task_data(source)
            crops[source.name] = (task, data.val)
        task, val = crops[source.name]
        score = _val_score(_session(registry.load(spec), threads), task, val)
        return {f"held-out crops ({len(val)})": score}

    return measure


def _harnesses(registry: Any, threads: int) -> dict[str, Callable[..., dict[str, float]]]:
    """task -> (engine, spec, bench, limit, models_dir) -> {benchmark row: dB}."""
    from int8_variants import demosaic_quality, upscale_quality  # noqa: PLC0415

    held_out = held_out_quality(registry, threads)
    return {"upscale": upscale_quality, "demosaic": demosaic_quality,
            "denoise": held_out, "lens": held_out}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="the fp32 models (default: as the commands resolve them)")
    parser.add_argument("--bench", type=Path, default=None, help="default ../shared/data/bench")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N benchmark images of each set (a quick check)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)
    bench = args.bench or shared_path("data", "bench")
    if bench is None:
        print("error: ../shared/data/bench not found (Set5, Set14, Kodak24, McMaster)", file=sys.stderr)
        return 2

    from nnip.core.engine import Engine  # noqa: PLC0415
    from nnip.core.models import Registry  # noqa: PLC0415
    from nnip.train.fp16 import half_model  # noqa: PLC0415

    started = time.perf_counter()
    rows, described, verdicts = [], [], []
    with tempfile.TemporaryDirectory(prefix="nnip-fp16-") as tmp:
        scratch = Path(tmp) / "models"
        source_dir = args.models_dir
        names = [n for n in args.models.split(",") if n]
        for name in names:  # every variant into one scratch directory (a copy of the models)
            half_model(name, source_dir, scratch)
            source_dir = scratch
        registry = Registry(scratch)
        engine = Engine("cpu", threads=args.threads, registry=registry)
        harnesses = _harnesses(registry, args.threads)
        for name in names:
            spec, half = registry.get(name), registry.get(f"{name}-fp16")
            described.append(describe_model(spec))
            measure = harnesses[spec.task]
            base = measure(engine, spec, bench, args.limit, scratch)
            test = measure(engine, half, bench, args.limit, scratch)
            drops = {row: test[row] - base[row] for row in base}
            for row in base:
                rows.append([name, row, f"{base[row]:.3f}", f"{test[row]:.3f}", f"{drops[row]:+.3f}"])
            holds = min(drops.values()) >= -BAR_DB
            verdicts.append(f"- {name}-fp16: worst {min(drops.values()):+.3f} dB: "
                            + ("quality holds (ships: `python -m nnip.train.fp16 " + name + "`)"
                               if holds else "does not ship"))
            print(verdicts[-1], flush=True)
    limit = f"the first {args.limit} images of each set" if args.limit else "every image"
    body = "\n".join([
        "fp16 graphs from `nnip.train.fp16` (onnxconverter-common, inputs and outputs kept "
        "float32), run by onnxruntime's CPU provider: weights and the tensors between "
        "operators fp16-rounded as on a GPU, each operator's arithmetic in fp32 (no GPU "
        f"here). Benchmarks on {limit}; held-out crops: the task's validation split. Bar: "
        f"every row within {BAR_DB} dB of fp32.", "",
        markdown_table(["model", "benchmark row", "fp32 dB", "fp16 dB", "change"], rows), "",
        *verdicts, "", f"Run time {time.perf_counter() - started:.0f} s.",
    ])
    publish(Section("fp16_variants", "fp16 variants: quality in half precision (CPU-emulated)",
                    body, models=described, argv=argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
