"""Lens correction side by side: a corner of a real photo, uncorrected, Richardson-Lucy, ours.

A real photo (scikit-image's ``coffee``, CC0; not a benchmark image) is rendered through
the lens benchmark's simulator (:func:`lens_quality.render_dngs`: Canon EOS 5D Mark III
colour, sony-a7rm2 noise, 4 um pixels) for two of its lenses: ``f/2`` (peripheral
aberration and lateral CA) at ISO 400, and ``f/16`` (diffraction) at ISO 3200. Each DNG is
developed with the network demosaic and denoise off (as in the benchmark), then shown as:
uncorrected; Richardson-Lucy with the TRUE point-spread functions (the iteration count the
benchmark's oracle picks most often for that lens and ISO); ours (what ``--lens deblur``
does: lateral CA measured on the mosaic, then the ``lens`` network); and the clean
rendering (no lens, no noise). One row per lens: the top-left corner, where the
aberration is strongest, at twice the size, nearest-neighbour.

    python benchmarks/lens_picture.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image as PILImage

from common import (REPO, Section, add_common_options, describe_model, figure_line, load_models,
                    markdown_table, publish)
from lens_quality import (
    Context,
    Developer,
    lens_params,
    ours,
    psnr,
    render_dngs,
    richardson_lucy,
    true_psfs,
    zone_scores,
)
from upscale_picture import compose

__all__ = ["ROWS", "main"]

#: (lens, ISO, Richardson-Lucy iterations) per row.
ROWS = (("f/2", 400, 15), ("f/16", 3200, 15))
CROP = (4, 4, 120)  # (x, y, size): the top-left corner
DEFAULT_OUT = REPO / "benchmarks" / "figures" / "lens_crops.png"


def load_photo() -> np.ndarray:
    """scikit-image's ``coffee`` as float32 (H, W, 3) sRGB in [0, 1], even size."""
    from skimage import data  # noqa: PLC0415

    rgb = data.coffee().astype(np.float32) / 255.0
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def _row(developer: Developer, method, scene: np.ndarray, name: str, iso: int,
         iterations: int, folder: Path) -> tuple[dict[str, np.ndarray], list[list[object]]]:
    lens = lens_params(name)
    noisy, clean, _ = render_dngs(scene, lens, iso, folder, 5, name.replace("/", ""))
    clean_work = developer.camera(clean)
    reference = developer.finish(clean_work, clean_work.pixels)
    work = developer.camera(noisy)
    ctx = Context(lens, true_psfs(lens, *scene.shape[:2]), iso,
                  developer.camera(noisy, "deblur").pixels)
    panels = {
        "uncorrected": developer.finish(work, work.pixels),
        f"Richardson-Lucy ({iterations} it, true PSF)":
            developer.finish(work, richardson_lucy(iterations)(work.pixels, ctx)),
        "ours (--lens deblur)": developer.finish(work, method(work.pixels, ctx)),
        "clean rendering": reference,
    }
    rows = [[f"{name}, ISO {iso}", label, f"{psnr(pixels, reference):.2f}",
             f"{zone_scores(pixels, reference)['corners'][0]:.2f}"]
            for label, pixels in panels.items() if label != "clean rendering"]
    return panels, rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.set_defaults(models="lens")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    args = parser.parse_args(argv)
    from lens_quality import _demosaic_choice  # noqa: PLC0415

    developer, demosaic_line = _demosaic_choice(args)
    engine, specs = load_models(args, task="lens")
    if not specs:
        print("no lens model installed: nothing to show", file=sys.stderr)
        return 1
    method = ours(engine, specs[0])
    scene = load_photo()
    pictures, table = [], []
    with tempfile.TemporaryDirectory() as folder:
        for name, iso, iterations in ROWS:
            panels, rows = _row(developer, method, scene, name, iso, iterations, Path(folder))
            pictures.append(compose(panels, [CROP]))
            table += rows
    width = max(p.width for p in pictures)
    canvas = PILImage.new("RGB", (width, sum(p.height for p in pictures)), "white")
    top = 0
    for picture in pictures:
        canvas.paste(picture, (0, top))
        top += picture.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out, optimize=True)

    alt = "lens correction crops: uncorrected, RL, ours, clean"
    lines = [figure_line(alt, args.out, args.results), "",
             f"scikit-image `coffee` (CC0), {scene.shape[1]}x{scene.shape[0]}, rendered through "
             f"the lens benchmark's f/2 lens at ISO 400 (top row) and its f/16 lens at ISO 3200 "
             f"(bottom row); demosaic: {demosaic_line}, denoise off; crop (x, y, size) {CROP} "
             "shown at 2x, nearest-neighbour.", "",
             markdown_table(["capture", "method", "PSNR whole (dB)", "PSNR corners (dB)"], table)]
    section = Section("lens_picture", "Lens correction crops side by side (issue 7)",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
