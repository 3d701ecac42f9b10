"""Side-by-side crops after 2x: LR input, bicubic, each model, and the original.

A real photo (scikit-image's ``chelsea`` or ``coffee``, both CC0; not a benchmark image) is
area-downscaled by 2 to make the LR input, which each method upscales back. Two crops
(whiskers and fur; an eye) are shown at twice the output scale, nearest-neighbour, so
single pixels stay visible: the LR input (nearest-neighbour enlarged to the output size),
bicubic (MATLAB cubic), each model through ``nnups.upscale.upscale_image``, and the
original photo. Labels are drawn with Pillow. The PNG goes to
``benchmarks/figures/upscale_crops.png`` by default; PSNR of each method over the whole
image is printed beside it.

    python benchmarks/upscale_picture.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from common import (REPO, Section, add_common_options, describe_model, figure_line, load_models,
                    markdown_table, publish, upscalers)

__all__ = ["CROPS", "compose", "main"]

#: photo -> crops (x, y, size) in output (= original) pixels.
CROPS = {
    "chelsea": ((8, 168, 128), (120, 60, 128)),
    "coffee": ((320, 60, 128), (300, 230, 128)),
}
ZOOM = 2
GAP = 6
LABEL_HEIGHT = 24
DEFAULT_OUT = REPO / "benchmarks" / "figures" / "upscale_crops.png"


def load_photo(name: str) -> np.ndarray:
    """The photo as float32 (H, W, 3) sRGB-encoded in [0, 1], cropped to even size."""
    from skimage import data  # noqa: PLC0415

    rgb = getattr(data, name)().astype(np.float32) / 255.0
    return rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2]


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def compose(panels: dict[str, np.ndarray], crops: Sequence[tuple[int, int, int]]):
    """One labelled PNG-ready picture: a row per crop, a column per panel.

    Parameters
    ----------
    panels : label -> float32 (H, W, 3) in [0, 1], all the output size.
    crops : (x, y, size) in output pixels.

    Returns
    -------
    PIL.Image.Image
        RGB; each crop enlarged ``ZOOM`` times nearest-neighbour.
    """
    from PIL import Image as PILImage, ImageDraw, ImageFont  # noqa: PLC0415

    side = max(size for _, _, size in crops) * ZOOM
    width = len(panels) * (side + GAP) + GAP
    height = LABEL_HEIGHT + len(crops) * (side + GAP) + GAP
    canvas = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font = ImageFont.load_default(size=16)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    for column, (label, pixels) in enumerate(panels.items()):
        left = GAP + column * (side + GAP)
        draw.text((left + 2, 4), label, fill="black", font=font)
        for row, (x, y, size) in enumerate(crops):
            crop = PILImage.fromarray(_to_uint8(pixels[y : y + size, x : x + size]))
            crop = crop.resize((size * ZOOM, size * ZOOM), PILImage.Resampling.NEAREST)
            canvas.paste(crop, (left, LABEL_HEIGHT + GAP + row * (side + GAP)))
    return canvas


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - b) ** 2))
    return 10.0 * np.log10(1.0 / mse)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--photo", choices=sorted(CROPS), default="chelsea")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the PNG to write")
    args = parser.parse_args(argv)
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    original = load_photo(args.photo)
    lr = area_downscale(original, 2)
    engine, specs = load_models(args)
    methods = upscalers(engine, specs)
    methods.pop("Lanczos")  # close to bicubic at this zoom; the tables compare it
    panels = {"LR input (nearest)": np.repeat(np.repeat(lr, 2, axis=0), 2, axis=1)}
    panels.update({name: upscale(lr) for name, upscale in methods.items()})
    panels["original"] = original
    args.out.parent.mkdir(parents=True, exist_ok=True)
    compose(panels, CROPS[args.photo]).save(args.out, optimize=True)

    rows = [[name, f"{_psnr(pixels, original):.2f}"] for name, pixels in panels.items() if name != "original"]
    alt = "2x crops: LR, bicubic, models, original"
    lines = [figure_line(alt, args.out, args.results), "",
             f"scikit-image `{args.photo}` (CC0), {original.shape[1]}x{original.shape[0]}, "
             f"area-downscaled by 2, upscaled back; crops (x, y, size) {list(CROPS[args.photo])} "
             f"shown at {ZOOM}x, nearest-neighbour.", "",
             markdown_table(["method", "PSNR vs original, whole image (dB)"], rows)]
    section = Section("upscale_picture", "2x crops side by side (bicubic vs models)",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
