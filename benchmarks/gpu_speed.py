"""GPU timings: a 24 MP develop and a 24 MP upscale on CUDA, fp32 and fp16, against the CPU.

Needs onnxruntime-gpu with a working CUDA execution provider (on the project's lent GPU
machine: ``tools/gpu_ort.sh``, see checkpoints/README.md "On a lent GPU"). Every run is the
real command in a fresh process, as a user types it (``run_measured``: wall seconds and
peak RSS; models, inputs and outputs as in develop_speed.py and upscale_speed.py)::

    nnip develop big.dng -o OUT --format tiff --bits 16 --demosaic nn --denoise auto \\
        --lens deblur --device DEVICE --models-dir DIR --overwrite --quiet
    nnups upscale big.jpg -o OUT --model NAME --device DEVICE --models-dir DIR --overwrite --quiet

``DIR`` is the installed models (fp32 rows, ``--precision fp32``) or ``--fp16-dir`` (the
same plus each model's fp16 variant from ``python -m nnip.train.fp16``; fp16 rows,
``--precision fp16``).
A "batch of 3" run takes three copies of the input in one command: the per-file cost once
the process, the CUDA context and cuDNN's algorithm search are paid. fp16 against fp32:
PSNR between the two commands' 16-bit outputs (develop: TIFF; upscale: a TIFF run each),
and, where ``../shared`` benchmarks are present, sr_quality.py / demosaic_quality.py run
with ``--device cuda`` on the fp16 variants.

    python benchmarks/gpu_speed.py --fp16-dir /tmp/m16 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from common import REPO, Section, markdown_table, publish, run_measured, shared_path
from develop_end_to_end import nnip_command
from develop_speed import VARIANTS, make_big_dng
from upscale_speed import make_test_jpeg, nnups_command

__all__ = ["main"]

WORK = REPO / "benchmarks" / "_work" / "gpu_speed"


def _gpu_name() -> str:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        return done.stdout.strip() or "no GPU seen by nvidia-smi"
    except (OSError, subprocess.SubprocessError):
        return "nvidia-smi not found"


def _psnr_16bit(a: Path, b: Path) -> str:
    """PSNR (dB, peak 65535) between two 16-bit TIFFs, or why not."""
    import tifffile  # noqa: PLC0415

    try:
        x = tifffile.imread(a).astype(np.float64)
        y = tifffile.imread(b).astype(np.float64)
    except (OSError, ValueError) as exc:
        return f"n/a ({exc})"
    if x.shape != y.shape:
        return f"n/a (shapes {x.shape} / {y.shape})"
    mse = float(np.mean((x - y) ** 2))
    return "identical" if mse == 0 else f"{10 * np.log10(65535.0 ** 2 / mse):.1f}"


class Runner:
    """Runs commands, keeps the table rows, and writes the section after every run."""

    def __init__(self, args: argparse.Namespace, header: str) -> None:
        self.args, self.header, self.rows, self.notes = args, header, [], []

    def run(self, label: str, command: list[str], output: Path | None, files: int = 1) -> bool:
        print(f"{label} ...", file=sys.stderr, flush=True)
        try:
            result = run_measured(command)
        except subprocess.SubprocessError as exc:
            self.rows.append([label, "-", "-", "-", f"FAIL ({exc})"])
            return False
        ok = result.returncode == 0 and (output is None or output.exists())
        per_file = result.seconds / files
        self.rows.append([label, f"{result.seconds:.1f}", f"{per_file:.1f}",
                          f"{result.peak_rss_mb:.0f}",
                          "ok" if ok else f"FAIL rc {result.returncode}: "
                          f"{result.stderr.strip()[-200:]}".replace("|", "/").replace("\n", " ")])
        self.write()
        return ok

    def write(self) -> None:
        body = "\n".join([
            self.header, "",
            markdown_table(["run", "wall s", "s per file", "peak RSS MiB", "result"], self.rows),
            "", *self.notes])
        publish(Section("gpu_speed", "GPU: 24 MP develop and upscale on CUDA (fp32, fp16) "
                        "against the CPU", body, (), self.args.argv), self.args.results)


def _develop(prefix: list[str], inputs: list[Path], out: Path, device: str, models: Path,
             precision: str = "fp32", extra: Sequence[str] = ()) -> list[str]:
    return [*prefix, "develop", *map(str, inputs), "-o", str(out), "--format", "tiff", "--bits",
            "16", *VARIANTS["all"][0], "--device", device, "--models-dir", str(models),
            "--precision", precision,
            "--overwrite", "--quiet", *extra]


def _upscale(prefix: list[str], inputs: list[Path], out: Path, model: str, device: str,
             models: Path, precision: str = "fp32", extra: Sequence[str] = ()) -> list[str]:
    return [*prefix, "upscale", *map(str, inputs), "-o", str(out), "--model", model,
            "--device", device, "--models-dir", str(models), "--overwrite", "--quiet",
            "--precision", precision,
            *extra]


def _copies(path: Path, count: int) -> list[Path]:
    copies = [path]
    for i in range(1, count):
        copy = path.with_name(f"{path.stem}_{i}{path.suffix}")
        if not copy.exists():
            shutil.copy2(path, copy)
        copies.append(copy)
    return copies


def _quality(args: argparse.Namespace, runner: Runner) -> None:
    """The benchmark figures of the fp16 variants on CUDA, where ../shared is present."""
    jobs = []
    if shared_path("data", "bench", "Set5"):
        jobs.append(["sr_quality.py", "--models",
                     "upscale-fast,upscale-fast-fp16,upscale-quality,upscale-quality-fp16"])
    if shared_path("data", "bench", "McMaster"):
        jobs.append(["demosaic_quality.py", "--models", "demosaic,demosaic-fp16", "--sets",
                     "McMaster", "--methods", "none"])
    for script, *rest in jobs:
        command = [sys.executable, str(REPO / "benchmarks" / script), *rest, "--device", args.device,
                   "--models-dir", str(args.fp16_dir)]
        print(" ".join(command), file=sys.stderr, flush=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.quality_timeout)
            table = [line for line in done.stdout.splitlines() if line.startswith("|")]
            runner.notes += ["", f"`{script} {' '.join(rest)} --device {args.device}` (rc {done.returncode}):",
                             "", *table]
            if done.returncode != 0:
                runner.notes.append(done.stderr.strip()[-400:])
        except subprocess.TimeoutExpired:
            runner.notes.append(f"`{script}`: stopped after {args.quality_timeout} s")
        runner.write()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp16-dir", type=Path, required=True,
                        help="models directory with the fp16 variants (python -m nnip.train.fp16)")
    parser.add_argument("--models-dir", type=Path, default=REPO / "onnx_models",
                        help="the fp32 models (default: onnx_models/)")
    parser.add_argument("--device", default="cuda", help="the GPU device (cpu: a smoke test)")
    parser.add_argument("--size", default="6000x4000", metavar="WxH")
    parser.add_argument("--cpu", action="store_true", help="also time the CPU (the GPU machine's)")
    parser.add_argument("--work", type=Path, default=WORK, help=f"inputs and outputs (default {WORK})")
    parser.add_argument("--inputs-only", action="store_true", help="make the inputs and stop")
    parser.add_argument("--quality-timeout", type=int, default=240)
    parser.add_argument("--results", type=Path, default=None, metavar="RESULTS.md")
    args = parser.parse_args(argv)
    args.argv = argv
    import onnxruntime  # noqa: PLC0415

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    width, height = (int(v) for v in args.size.split("x"))
    dng = work / f"big_{width}x{height}.dng"
    dng_source = make_big_dng(dng, width, height)
    jpeg = work / "big.jpg"
    if not jpeg.exists():
        make_test_jpeg(jpeg, width, height)
    jpeg_source = "../shared photos" if shared_path("data", "train", "photos") else "scikit-image coffee"
    print(f"inputs made in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    if args.inputs_only:
        return 0
    header = (f"GPU: {_gpu_name()}; onnxruntime {onnxruntime.__version__}, providers "
              f"{', '.join(onnxruntime.get_available_providers())}; {os.cpu_count()} CPU cores. "
              f"Inputs: a {args.size} DNG from {dng_source}; a {args.size} JPEG (q92) from "
              f"{jpeg_source}. Develop: all three stages (`{' '.join(VARIANTS['all'][0])}`) to a "
              "16-bit TIFF; upscale: JPEG out unless said. Each row is one command in a fresh "
              "process (start-up, CUDA context, cuDNN algorithm search, decode, network, encode).")
    runner = Runner(args, header)
    nnip, nnups = nnip_command(), nnups_command()
    out = work / "out"
    fp32, fp16 = args.models_dir, args.fp16_dir
    tif = {name: out / name / f"{dng.stem}.tif" for name in ("fp32", "fp16", "cpu")}
    runner.run(f"develop, {args.device}, fp32", _develop(nnip, [dng], out / "fp32", args.device, fp32), tif["fp32"])
    runner.run(f"develop, {args.device}, fp16", _develop(nnip, [dng], out / "fp16", args.device, fp16, "fp16"), tif["fp16"])
    runner.run(f"develop, {args.device}, fp16, batch of 3",
               _develop(nnip, _copies(dng, 3), out / "batch", args.device, fp16, "fp16"), None, files=3)
    for model in ("fast", "quality"):
        for precision, models in (("fp32", fp32), ("fp16", fp16)):
            runner.run(f"upscale {model}, {args.device}, {precision}",
                       _upscale(nnups, [jpeg], out / f"up-{model}-{precision}", model, args.device,
                                models, precision), out / f"up-{model}-{precision}" / "big_x2.jpg")
    runner.run(f"upscale fast, {args.device}, fp16, batch of 3",
               _upscale(nnups, _copies(jpeg, 3), out / "up-batch", "fast", args.device, fp16, "fp16"), None, 3)
    for precision, models in (("fp32", fp32), ("fp16", fp16)):
        runner.run(f"upscale quality, {args.device}, {precision}, 16-bit TIFF out",
                   _upscale(nnups, [jpeg], out / f"tif-{precision}", "quality", args.device, models,
                            precision, ["--format", "tiff", "--bits", "16"]),
                   out / f"tif-{precision}" / "big_x2.tif")
    runner.notes += [
        f"fp16 against fp32 on CUDA, PSNR of the 16-bit outputs (dB): develop "
        f"{_psnr_16bit(tif['fp32'], tif['fp16'])}; upscale quality "
        f"{_psnr_16bit(out / 'tif-fp32' / 'big_x2.tif', out / 'tif-fp16' / 'big_x2.tif')}."]
    runner.write()
    _quality(args, runner)
    if args.cpu:
        runner.run("develop, cpu, fp32", _develop(nnip, [dng], out / "cpu", "cpu", fp32), tif["cpu"])
        runner.run("upscale fast, cpu, fp32",
                   _upscale(nnups, [jpeg], out / "up-cpu", "fast", "cpu", fp32),
                   out / "up-cpu" / "big_x2.jpg")
        runner.notes.append(f"CUDA fp32 against the CPU, develop: "
                            f"{_psnr_16bit(tif['cpu'], tif['fp32'])} dB.")
        runner.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
