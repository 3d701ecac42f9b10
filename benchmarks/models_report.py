"""The shipped models as their manifest records them: training run, validation figure, costs.

Every figure here was measured at export (``python -m nnip.train.export``): validation PSNR on
images held out from the TRAINING folders (never a benchmark image), onnxruntime-vs-torch
parity, the receptive-field margin from the impulse response, and GFLOP per input megapixel
counted from the ONNX graph. The task benchmarks (sr_quality.py, demosaic_quality.py, ...)
measure the same files on the public protocols.

    python benchmarks/models_report.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import Section, markdown_table, publish

from nnip.core.models import Registry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=None, help="models directory (default: installed)")
    parser.add_argument("--results", type=Path, default=None, help="also write into this RESULTS.md")
    args = parser.parse_args(argv)

    registry = Registry(args.models_dir)
    rows = []
    for spec in registry:
        prov = dict(spec.provenance)
        metrics = dict(spec.metrics)
        rows.append((
            spec.name,
            spec.task,
            spec.version,
            prov.get("checkpoint_step", "?"),
            f"{metrics['val_psnr_db']:.2f}" if "val_psnr_db" in metrics else "-",
            f"{metrics.get('onnx_parity_max_abs', float('nan')):.1e}",
            spec.margin,
            f"{spec.gflop_per_mp:g}",
            spec.params,
            spec.sha256[:12],
            f"`{prov.get('command', '?')}`",
        ))
    body = (
        "Validation PSNR: on images held out from the training folders (the task's own "
        "measure: Y PSNR for upscale, RGB PSNR for demosaic), at the exported checkpoint. "
        "GFLOP/MP is per input megapixel of the model (the packed Bayer grid for raw models, "
        "a quarter of the mosaic's pixels).\n\n"
        + markdown_table(
            ("model", "task", "version", "step", "val PSNR dB", "ONNX parity", "margin",
             "GFLOP/MP", "params", "sha256", "training command"),
            rows,
        )
    )
    publish(Section("models_report", "Shipped models: training runs and validation figures",
                    body, argv=argv), args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
