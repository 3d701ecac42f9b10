"""Very large images: a 100 MP JPEG upscaled to 400 MP as a streamed tiled BigTIFF, peak RSS.

The input (default 12248 x 8166, 100 MP, JPEG quality 92) is a real photo mirrored edge to
edge until it fills the size (the largest ``../shared`` training photo, else
``examples/coffee.jpg``): photo content at every scale, unlike a smooth resize. The run is
the real command, as a user types it::

    nnups upscale big.jpg -o OUT --model upscale-fast --tiled-tiff --overwrite --quiet

in a fresh wrapper process whose only child is the command, so the peak RSS
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``) is that run's alone. Wall seconds include
start-up, decoding, the network, the fidelity step and the streamed encoding.

The output is then checked without loading it whole: a BigTIFF, tiled, 2x the input per
side; and two crops (the centre and the bottom-right corner, where the last tiles are
partial) read tile by tile, area-downscaled by 2, match the input's pixels within 0.5
levels of 8 bits (the output's rounding; the fidelity step makes the float means exact).

Bar (issue 8): peak RSS < 4 GB (3815 MiB) for 100 MP in, 400 MP out. The load average
before the run is printed: wall time is only as good as the machine is idle.

    python benchmarks/upscale_large.py --results benchmarks/RESULTS.md
    python benchmarks/upscale_large.py --megapixels 2 --results /tmp/scratch.md   # a quick check
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from common import (
    REPO, Measured, Section, add_common_options, describe_model, load_models, markdown_table,
    publish, run_measured, shared_path,
)
from upscale_speed import _engine_args, nnups_command

__all__ = ["input_size", "make_large_jpeg", "read_tiff_crop", "main"]

RSS_BAR_MIB = 4e9 / 2**20  # 4 GB
#: Input pixels per side of each fidelity crop (it must fit the image).
CROP = 256
#: Largest mean error of a 2 x 2 output block against its input pixel, in 8-bit levels:
#: each of the four values is rounded by at most half a level.
FIDELITY_LEVELS = 0.5 + 1e-3


def input_size(megapixels: float, aspect: float = 1.5) -> tuple[int, int]:
    """(width, height) of at least ``megapixels`` at ``aspect`` (3:2): 100 -> 12248 x 8166."""
    width = math.ceil(math.sqrt(megapixels * 1e6 * aspect))
    return width, math.ceil(width / aspect)


def make_large_jpeg(path: Path, width: int, height: int) -> str:
    """Write a ``width x height`` JPEG (quality 92) of a real photo mirrored to fill it (cut
    when larger); say which."""
    from PIL import Image as PILImage  # noqa: PLC0415

    photos = shared_path("data", "train", "photos")
    candidates = sorted(photos.glob("*.jpg"), key=lambda p: p.stat().st_size) if photos else []
    source = candidates[-1] if candidates else REPO / "examples" / "coffee.jpg"
    with PILImage.open(source) as picture:
        tile = np.asarray(picture.convert("RGB"))
    # Mirrored copies meet without seams; np.pad repeats the reflection as often as needed.
    pixels = np.pad(tile, ((0, max(height - tile.shape[0], 0)), (0, max(width - tile.shape[1], 0)),
                           (0, 0)), mode="symmetric")[:height, :width]
    PILImage.fromarray(np.ascontiguousarray(pixels)).save(path, quality=92)
    where = "../shared photos" if candidates else "examples"
    size = f"{tile.shape[1]}x{tile.shape[0]}"
    return f"{source.name} ({where}, {size}) mirrored or cut to {width}x{height}"


def read_tiff_crop(path: Path, top: int, left: int, rows: int, cols: int) -> np.ndarray:
    """Pixels ``[top:top+rows, left:left+cols]`` (rows, cols, S) of a tiled TIFF, decoding
    only the tiles they touch (a 400 MP output is never loaded)."""
    import tifffile  # noqa: PLC0415

    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        tile_h, tile_w = int(page.tilelength), int(page.tilewidth)
        across = -(-int(page.imagewidth) // tile_w)
        out = None
        for ty in range(top // tile_h, (top + rows - 1) // tile_h + 1):
            for tx in range(left // tile_w, (left + cols - 1) // tile_w + 1):
                index = ty * across + tx
                tif.filehandle.seek(page.dataoffsets[index])
                data = tif.filehandle.read(page.databytecounts[index])
                tile = page.decode(data, index)[0].reshape(tile_h, tile_w, -1)
                if out is None:
                    out = np.empty((rows, cols, tile.shape[2]), tile.dtype)
                y0, y1 = max(top, ty * tile_h), min(top + rows, (ty + 1) * tile_h)
                x0, x1 = max(left, tx * tile_w), min(left + cols, (tx + 1) * tile_w)
                out[y0 - top : y1 - top, x0 - left : x1 - left] = (
                    tile[y0 - ty * tile_h : y1 - ty * tile_h, x0 - tx * tile_w : x1 - tx * tile_w])
    assert out is not None
    return out


def check_output(path: Path, jpeg: Path, width: int, height: int) -> tuple[list[str], float]:
    """Problems found in the output (empty: none) and the largest fidelity error in levels."""
    import tifffile  # noqa: PLC0415
    from PIL import Image as PILImage  # noqa: PLC0415

    from nnups.fidelity import area_downscale  # noqa: PLC0415

    if not path.exists():
        return ["no output file"], float("nan")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        found = (bool(tif.is_bigtiff), bool(page.is_tiled), tuple(page.shape), str(page.dtype))
    expected = (True, True, (2 * height, 2 * width, 3), "uint8")
    problems = [] if found == expected else [f"output is (bigtiff, tiled, shape, dtype) {found}, "
                                             f"expected {expected}"]
    if problems:
        return problems, float("nan")
    with warnings.catch_warnings():  # 100 MP is no decompression bomb here
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        with PILImage.open(jpeg) as picture:
            source = np.asarray(picture.convert("RGB"))  # decoded as nnups decodes it
    crop = min(CROP, width, height)
    worst = 0.0
    for top, left in (((height - crop) // 2, (width - crop) // 2), (height - crop, width - crop)):
        out = read_tiff_crop(path, 2 * top, 2 * left, 2 * crop, 2 * crop).astype(np.float32)
        reference = source[top : top + crop, left : left + crop].astype(np.float32)
        worst = max(worst, float(np.abs(area_downscale(out) - reference).max()))
    if worst > FIDELITY_LEVELS:
        problems.append(f"2x2 block means differ from the input by up to {worst:.3f} levels")
    return problems, worst


def _command_prefix() -> list[str]:
    prefix = nnups_command()
    done = subprocess.run([*prefix, "upscale", "--help"], capture_output=True, text=True)
    if "--tiled-tiff" not in done.stdout:
        raise RuntimeError("`nnups upscale --help` has no --tiled-tiff: reinstall the package")
    return prefix


def run(args: argparse.Namespace, model: str, work: Path) -> tuple[list[object], bool, str]:
    """Make the input, run the command, check the output: (table row, verdict, source)."""
    width, height = input_size(args.megapixels)
    jpeg = work / "big.jpg"
    print(f"making a {width}x{height} JPEG ...", file=sys.stderr, flush=True)
    source = make_large_jpeg(jpeg, width, height)
    out_dir = work / "out"
    command = [*_command_prefix(), "upscale", str(jpeg), "-o", str(out_dir), "--model", model,
               "--tiled-tiff", "--overwrite", "--quiet", *_engine_args(args)]
    print(f"running {model} on {width * height / 1e6:.0f} MP ...", file=sys.stderr, flush=True)
    result: Measured = run_measured(command)
    output = out_dir / "big_x2.tif"
    if result.returncode == 0:
        problems, worst = check_output(output, jpeg, width, height)
    else:
        problems, worst = [f"rc {result.returncode}: {result.stderr.strip()[-300:]}"], float("nan")
    for problem in problems:
        print(f"  problem: {problem}", file=sys.stderr)
    ok = not problems and result.peak_rss_mb < RSS_BAR_MIB
    row = [model, f"{width}x{height}", f"{2 * width}x{2 * height}",
           f"{jpeg.stat().st_size / 2**20:.1f}",
           f"{output.stat().st_size / 2**20:.1f}" if output.exists() else "-",
           f"{result.seconds:.1f}", f"{width * height / 1e6 / result.seconds:.2f}",
           f"{result.peak_rss_mb:.0f}", f"{worst:.3f}",
           "pass" if ok else "FAIL" + (f" ({problems[0]})" if problems else "")]
    return row, ok, source


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser, models="upscale-fast")
    parser.add_argument("--megapixels", type=float, default=100.0,
                        help="input size in megapixels, 3:2 (default 100: 12248x8166)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the input and output go (default: a temporary folder; "
                        "100 MP needs ~1.5 GB free)")
    args = parser.parse_args(argv)
    _, specs = load_models(args)  # which models exist; the run loads it in its own process
    if not specs:
        print("no model installed: nothing to measure", file=sys.stderr)
        return 1
    spec = specs[0]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nnups_large_", dir=args.workdir) as tmp:
        row, ok, source = run(args, spec.name, Path(tmp))
    table = markdown_table(
        ["model", "input", "output", "JPEG MiB", "TIFF MiB", "wall s", "input MP/s",
         "peak RSS MiB", "fidelity err (levels)", "verdict"], [row])
    lines = [
        f"Input: JPEG q92, {source}. Command: `nnups upscale big.jpg -o OUT --model "
        f"{spec.name} --tiled-tiff --overwrite --quiet` in a fresh wrapper process; the "
        "output is checked to be a tiled BigTIFF of 2x the size whose 2x2 block means, on a "
        f"centre and a corner crop of {CROP} input pixels, are the input's within "
        f"{FIDELITY_LEVELS - 1e-3} levels. Bar: peak RSS < 4 GB ({RSS_BAR_MIB:.0f} MiB) "
        f"at 100 MP. Load average before the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.",
        "", table, "",
    ]
    title = f"nnups upscale of a very large image: {args.megapixels:g} MP in, tiled BigTIFF out"
    section = Section("upscale_large", title, "\n".join(lines), [describe_model(spec)], argv)
    publish(section, args.results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
