"""End-to-end speed and memory of ``nnups upscale`` on a 6000 x 4000 JPEG (24 MP in, 96 MP out).

The test JPEG (quality 92) is made in a temporary folder from a real photo, resized to the
size asked (the largest ``../shared`` photo, else scikit-image's coffee; content matters
little for speed). Each run is the real command, as a user types it::

    nnups upscale big.jpg -o OUT --model NAME --overwrite --quiet              # JPEG out
    nnups upscale big.jpg -o OUT --model NAME --overwrite --quiet --format tiff --bits 16

started from a fresh wrapper process whose only child is the command, so the peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is that run's alone. Wall seconds include
start-up, decoding, the network, the fidelity step and encoding. The output's size is
checked after each run.

Bar: upscale-fast <= 30 s, upscale-quality <= 120 s, peak RSS <= 3 GiB, per run.
The load average before the runs is printed: the numbers are only as good as the machine
is idle.

    python benchmarks/upscale_speed.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence


from common import (
    Section, add_common_options, describe_model, load_models, markdown_table, publish, run_measured,
    shared_path,
)

__all__ = ["nnups_command", "make_test_jpeg", "main"]

SECONDS_BAR = {"upscale-fast": 30.0, "upscale-quality": 120.0}
#: The speed issue's tighter bar for the fast model (any output format).
SPEED_ISSUE_BAR = {"upscale-fast": 20.0}
RSS_BAR_MIB = 3 * 1024
OUTPUTS = {"JPEG q95": ("jpg", []), "TIFF 16-bit": ("tif", ["--format", "tiff", "--bits", "16"])}
NEEDED_OPTIONS = ("--model", "--format", "--bits", "--overwrite", "--output-dir", "--quiet")


def nnups_command() -> list[str]:
    """argv prefix of the installed ``nnups`` (else ``python -m nnups.cli``), checked with --help.

    Raises
    ------
    RuntimeError
        ``nnups upscale --help`` fails or lacks an option this benchmark passes.
    """
    exe = shutil.which("nnups")
    prefix = [exe] if exe else [sys.executable, "-m", "nnups.cli"]
    done = subprocess.run([*prefix, "upscale", "--help"], capture_output=True, text=True)
    missing = [opt for opt in NEEDED_OPTIONS if opt not in done.stdout]
    if done.returncode != 0 or missing:
        raise RuntimeError(f"`nnups upscale --help` failed (rc {done.returncode}) or lacks "
                           f"{', '.join(missing) or '-'}: {done.stderr.strip()[-300:]}")
    return prefix


def make_test_jpeg(path: Path, width: int, height: int) -> str:
    """Write a ``width x height`` JPEG (quality 92) made from a real photo; say which."""
    from PIL import Image as PILImage  # noqa: PLC0415

    photos = shared_path("data", "train", "photos")
    candidates = sorted(photos.glob("*.jpg"), key=lambda p: p.stat().st_size) if photos else []
    if candidates:
        with PILImage.open(candidates[-1]) as picture:
            source = picture.convert("RGB")
        name = f"{candidates[-1].name} (../shared photos)"
    else:
        from skimage import data  # noqa: PLC0415

        source = PILImage.fromarray(data.coffee())
        name = "scikit-image coffee"
    source.resize((width, height), PILImage.Resampling.BICUBIC).save(path, quality=92)
    return f"{name}, resized to {width}x{height}"


def _output_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a written output, or None if missing/unreadable."""
    try:
        if path.suffix == ".tif":
            import tifffile  # noqa: PLC0415

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
            return int(shape[1]), int(shape[0])
        import warnings  # noqa: PLC0415

        from PIL import Image as PILImage  # noqa: PLC0415

        with warnings.catch_warnings():  # a 96 MP output is no decompression bomb here
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as picture:
                return picture.size
    except (OSError, ValueError, IndexError):
        return None


def _engine_args(args: argparse.Namespace) -> list[str]:
    extra = ["--device", args.device]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    if args.models_dir:
        extra += ["--models-dir", str(args.models_dir)]
    return extra


def run_all(args: argparse.Namespace, specs: Sequence, prefix: list[str], work: Path,
            jpeg: Path) -> tuple[list[list[object]], list[bool]]:
    rows, verdicts = [], []
    width, height = args.size
    for spec in specs:
        for label, (ext, extra) in OUTPUTS.items():
            out_dir = work / "out"
            command = [*prefix, "upscale", str(jpeg), "-o", str(out_dir), "--model", spec.name,
                       "--overwrite", "--quiet", *extra, *_engine_args(args)]
            print(f"running {spec.name}, {label} ...", file=sys.stderr, flush=True)
            result = run_measured(command)
            output = out_dir / f"{jpeg.stem}_x2.{ext}"
            size = _output_size(output)
            ok_run = result.returncode == 0 and size == (2 * width, 2 * height)
            if not ok_run:
                print(f"  failed (rc {result.returncode}, output {size}): {result.stderr.strip()[-500:]}",
                      file=sys.stderr)
            # A variant (upscale-fast-int8) is held to its original's bars: it is what
            # --precision auto runs in the original's place.
            base = spec.variant_of or spec.name
            bar = SECONDS_BAR.get(base)
            ok = ok_run and result.peak_rss_mb <= RSS_BAR_MIB and (bar is None or result.seconds <= bar)
            verdicts.append(ok)
            megapixels = width * height / 1e6
            rows.append([spec.name, label, f"{result.seconds:.1f}",
                         f"{megapixels / result.seconds:.2f}", f"{result.peak_rss_mb:.0f}",
                         f"{'-' if bar is None else f'{bar:g} s'}, {RSS_BAR_MIB} MiB",
                         "pass" if ok else ("FAIL" if ok_run else f"FAIL (rc {result.returncode})"),
                         _speed_issue_verdict(base, ok_run, result.seconds)])
            shutil.rmtree(out_dir, ignore_errors=True)
    return rows, verdicts


def _speed_issue_verdict(name: str, ran: bool, seconds: float) -> str:
    bar = SPEED_ISSUE_BAR.get(name)
    if bar is None:
        return "-"
    return f"<= {bar:g} s: {'pass' if ran and seconds <= bar else 'FAIL'}"


def _size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser, models="upscale-fast,upscale-quality")
    parser.add_argument("--size", type=_size, default=(6000, 4000), metavar="WxH",
                        help="input size (default 6000x4000)")
    args = parser.parse_args(argv)
    _, specs = load_models(args)  # which models exist; the runs load them in their own process
    prefix = nnups_command()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nnups_speed_") as tmp:
        work = Path(tmp)
        jpeg = work / "big.jpg"
        source = make_test_jpeg(jpeg, *args.size)
        rows, verdicts = run_all(args, specs, prefix, work, jpeg)
    table = markdown_table(["model", "output", "wall s", "input MP/s", "peak RSS MiB", "bar",
                            "verdict", "speed issue"], rows)
    lines = [f"Input: {args.size[0]}x{args.size[1]} JPEG q92 from {source}. "
             "Command per run: `nnups upscale big.jpg -o OUT --model NAME --overwrite --quiet` "
             "(+ `--format tiff --bits 16`), each in a fresh wrapper process. "
             f"Load average before the runs: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.",
             "", table if rows else "No model measured (none installed).", ""]
    if not specs:
        verdicts = []
    section = Section("upscale_speed", f"nnups upscale end to end: {args.size[0]}x{args.size[1]} JPEG, "
                      "wall time and peak RSS",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
