"""Command line: clean image -> simulated RAW as DNG (+ the ground truth).

Usage::

    python -m nnip.simulate.make_dng CLEAN_IMAGE OUT.dng [--iso N] [--fnumber F]
        [--lens-blur PX] [--pattern RGGB] [--seed S] [--truth TRUTH.tiff] [...]

A thin shell over :func:`nnip.simulate.pairs.simulate_dng`; see it for what each option
does. Exit status 0 on success, 1 when the input or output is unusable, 2 for bad options
(argparse) or option values out of range; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from nnip.simulate.sensor import PATTERNS, SENSORS

    parser = argparse.ArgumentParser(
        prog="python -m nnip.simulate.make_dng",
        description="Simulate a camera RAW of a clean image and write it as a DNG.",
    )
    parser.add_argument("clean", help="clean sRGB image (JPEG, PNG or TIFF)")
    parser.add_argument("out", help="DNG file to write")
    parser.add_argument("--iso", type=float, default=100.0, help="ISO setting (default 100)")
    parser.add_argument("--fnumber", type=float, default=5.6,
                        help="f-number: diffraction and EXIF (default 5.6)")
    parser.add_argument("--lens-blur", type=float, default=0.0, metavar="PX",
                        help="aberration blur at the frame corner, px (default 0)")
    parser.add_argument("--no-optics", action="store_true",
                        help="no lens at all (no diffraction, no blur)")
    parser.add_argument("--no-noise", action="store_true",
                        help="no sensor noise (only quantisation): a noise-free capture")
    parser.add_argument("--olpf", type=float, default=0.0, metavar="PX",
                        help="OLPF spot separation, px (default 0)")
    parser.add_argument("--pattern", default="RGGB", type=str.upper, choices=PATTERNS,
                        help="Bayer phase (default RGGB)")
    parser.add_argument("--sensor", default="sony-a7rm2", choices=sorted(SENSORS),
                        help="noise model (default sony-a7rm2)")
    parser.add_argument("--exposure", type=float, default=0.0, metavar="EV",
                        help="exposure in stops; 0 puts diffuse white at the white level (default 0)")
    parser.add_argument("--bits", type=int, default=14, choices=(12, 14), help="raw depth (default 14)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("--truth", metavar="TRUTH.tiff", help="also write the ground truth as a float32 TIFF")
    parser.add_argument("--truth-space", choices=("srgb", "linear"), default="srgb",
                        help="ground truth sRGB-encoded or linear (default srgb)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nnip.core.errors import NnipError, OutputError
    from nnip.core.imageio import read_image
    from nnip.simulate.pairs import simulate_dng

    try:
        pixels = read_image(args.clean).pixels
        simulate_dng(
            pixels, args.out, iso=args.iso, fnumber=args.fnumber, lens_blur_px=args.lens_blur,
            pattern=args.pattern, seed=args.seed, sensor=args.sensor, exposure_ev=args.exposure,
            optics=not args.no_optics, olpf_px=args.olpf, bits=args.bits,
            truth_path=args.truth, truth_space=args.truth_space, noise=not args.no_noise,
        )
    except NnipError as exc:
        print(f"{args.out if isinstance(exc, OutputError) else args.clean}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # out-of-range option values the library rejects
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
