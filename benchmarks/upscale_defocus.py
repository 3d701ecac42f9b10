"""No invented detail: a defocused region stays defocused after 2x (white paper fig. 4-2).

A detailed photo is area-downscaled into a clean HR image (default: a ``../shared`` photo,
else scikit-image's astronaut); its right half is then defocused with a normalised disk PSF
of radius 4 px (``scipy.signal.fftconvolve``, reflected borders). The LR input is the
area-downscale of that HR by 2; each method upscales it by 2.

Scored on two regions of the output, leaving 8 px at the image border and 16 px each side
of the sharp/defocused boundary:

- HF energy: the mean square of the 5-point Laplacian of the BT.601 luma. It weights
  frequencies by |f|^4, so it grows with any detail a method adds. Reported as the ratio
  to the truth's. Also the energy above 0.25 cycles/px (what the LR cannot hold:
  Hann-windowed FFT of the luma, mean removed), as a ratio to the truth's;
- PSNR (dB, RGB in [0, 1], outputs clipped to [0, 1] as a file would be).

Bar, per model: in the defocused region the HF energy is within 10 % of the truth's (no
invented detail); in the sharp region its HF energy is closer to the truth's than bicubic's
and its PSNR higher than bicubic's.

    python benchmarks/upscale_defocus.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common import (
    SHARED, Section, add_common_options, describe_model, load_models, markdown_table, publish, shared_path,
    upscalers,
)

__all__ = ["disk_psf", "make_scene", "laplacian_energy", "hf_energy", "RegionScore", "main"]

RADIUS = 4.0
BORDER = 8
GAP = 16
HF_CUTOFF = 0.25  # cycles per output pixel: the LR's Nyquist frequency
DEFAULT_PHOTO = "lomiri-life_by_Aitzol_Berasategi.jpg"  # detailed all over
HR_WIDTH = 640  # target HR width for a large photo (area factor = width // HR_WIDTH)


def disk_psf(radius: float = RADIUS, supersample: int = 8) -> np.ndarray:
    """A defocus PSF: a uniform disk of ``radius`` pixels, edge pixels by their coverage.

    Returns
    -------
    np.ndarray
        float64 (2R+1, 2R+1) with R = ceil(radius), summing to 1.
    """
    half = int(np.ceil(radius))
    fine = (np.arange((2 * half + 1) * supersample) + 0.5) / supersample - (half + 0.5)
    inside = (fine[:, None] ** 2 + fine[None, :] ** 2) <= radius**2
    size = 2 * half + 1
    kernel = inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return kernel / kernel.sum()


def load_photo(path: Path | None) -> tuple[np.ndarray, str]:
    """A clean HR photo, float32 (H, W, 3) sRGB-encoded in [0, 1], and where it came from.

    A camera JPEG is area-downscaled (by 2 at least) to remove compression and demosaic
    residue; both sides end up multiples of 4.
    """
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    if path is not None:
        from PIL import Image as PILImage  # noqa: PLC0415

        with PILImage.open(path) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
        shared = SHARED.resolve() in path.resolve().parents
        source = path.name + (" (a ../shared training photo: the models may have seen it)" if shared else "")
    else:
        from skimage import data  # noqa: PLC0415

        rgb = data.astronaut().astype(np.float32) / 255.0
        source = "scikit-image astronaut"
    factor = max(2, rgb.shape[1] // HR_WIDTH)
    height, width = (s // (4 * factor) * 4 * factor for s in rgb.shape[:2])
    hr = area_downscale(rgb[:height, :width], factor)
    return hr, f"{source}, area-downscaled by {factor} to {hr.shape[1]}x{hr.shape[0]}"


def make_scene(hr: np.ndarray, radius: float = RADIUS) -> np.ndarray:
    """``hr`` with its right half defocused by :func:`disk_psf` (left half untouched)."""
    from scipy.signal import fftconvolve  # noqa: PLC0415

    kernel = disk_psf(radius)
    pad = kernel.shape[0] // 2
    padded = np.pad(hr.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    blurred = fftconvolve(padded, kernel[..., None], mode="valid", axes=(0, 1))
    scene = hr.copy()
    half = hr.shape[1] // 2
    scene[:, half:] = blurred[:, half:]
    return scene.astype(np.float32)


def _luma(image: np.ndarray) -> np.ndarray:
    from nnip.simulate.resize import rgb_to_y  # noqa: PLC0415

    return rgb_to_y(np.asarray(image, dtype=np.float64))


def laplacian_energy(luma: np.ndarray) -> float:
    """Mean square of the 5-point Laplacian over the interior of ``luma`` (H, W)."""
    lap = (luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:]
           - 4.0 * luma[1:-1, 1:-1])
    return float(np.mean(lap**2))


def hf_energy(luma: np.ndarray, cutoff: float = HF_CUTOFF) -> float:
    """Energy per pixel above ``cutoff`` cycles/px (radial), Hann-windowed, mean removed."""
    height, width = luma.shape
    window = np.hanning(height)[:, None] * np.hanning(width)[None, :]
    spectrum = np.fft.fft2((luma - luma.mean()) * window)
    fy, fx = np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :]
    high = np.hypot(fy, fx) > cutoff
    return float(np.sum(np.abs(spectrum[high]) ** 2) / (height * width) / np.mean(window**2))


def regions(shape: tuple[int, ...]) -> dict[str, tuple[slice, slice]]:
    """The scored ``sharp`` and ``defocused`` windows of an (H, W, ...) output."""
    height, width = shape[:2]
    rows = slice(BORDER, height - BORDER)
    return {"sharp": (rows, slice(BORDER, width // 2 - GAP)),
            "defocused": (rows, slice(width // 2 + GAP, width - BORDER))}


@dataclass(frozen=True)
class RegionScore:
    """A method's scores on one region, energies as ratios to the truth's."""

    laplacian_ratio: float
    hf_ratio: float
    psnr: float


def score(output: np.ndarray, truth: np.ndarray) -> dict[str, RegionScore]:
    out = np.clip(output, 0.0, 1.0).astype(np.float64)
    result = {}
    for name, window in regions(truth.shape).items():
        a, b = out[window], truth[window].astype(np.float64)
        luma_a, luma_b = _luma(a), _luma(b)
        mse = float(np.mean((a - b) ** 2))
        result[name] = RegionScore(
            laplacian_ratio=laplacian_energy(luma_a) / laplacian_energy(luma_b),
            hf_ratio=hf_energy(luma_a) / hf_energy(luma_b),
            psnr=10.0 * np.log10(1.0 / mse) if mse > 0 else float("inf"),
        )
    return result


def verdict(model: dict[str, RegionScore], bicubic: dict[str, RegionScore]) -> tuple[bool, str]:
    """Pass/fail and why, per the bar in the module docstring."""
    defocus = model["defocused"].laplacian_ratio
    sharp, base = model["sharp"], bicubic["sharp"]
    checks = {
        f"defocused HF {defocus:.2f} x truth (bar 0.90-1.10)": abs(defocus - 1.0) <= 0.10,
        "sharp HF closer to truth than bicubic": abs(sharp.laplacian_ratio - 1) < abs(base.laplacian_ratio - 1),
        f"sharp PSNR {sharp.psnr - base.psnr:+.2f} dB over bicubic": sharp.psnr > base.psnr,
    }
    failed = [text for text, ok in checks.items() if not ok]
    return not failed, ("failed: " + "; ".join(failed)) if failed else "; ".join(checks)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--photo", type=Path, default=None,
                        help=f"a detailed photo (default: ../shared photos/{DEFAULT_PHOTO}, "
                             "else scikit-image's astronaut)")
    parser.add_argument("--radius", type=float, default=RADIUS, help="disk PSF radius in HR pixels")
    args = parser.parse_args(argv)
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    photo = args.photo or shared_path("data", "train", "photos", DEFAULT_PHOTO)
    hr, source = load_photo(photo)
    truth = make_scene(hr, args.radius)
    lr = area_downscale(truth, 2)
    engine, specs = load_models(args)

    rows, scores = [], {}
    for name, upscale in upscalers(engine, specs).items():
        scores[name] = score(upscale(lr), truth)
        s, d = scores[name]["sharp"], scores[name]["defocused"]
        rows.append([name, f"{s.psnr:.2f}", f"{s.laplacian_ratio:.3f}", f"{s.hf_ratio:.3f}",
                     f"{d.psnr:.2f}", f"{d.laplacian_ratio:.3f}", f"{d.hf_ratio:.3f}"])
    verdicts, verdict_lines = [], []
    for spec in specs:
        ok, why = verdict(scores[spec.name], scores["bicubic"])
        verdicts.append(ok)
        verdict_lines.append(f"- **{spec.name}: {'PASS' if ok else 'FAIL'}** ({why})")
    table = markdown_table(
        ["method", "sharp PSNR dB", "sharp HF (x truth)", "sharp >0.25 c/px (x truth)",
         "defocused PSNR dB", "defocused HF (x truth)", "defocused >0.25 c/px (x truth)"], rows)
    lines = [f"Photo: {source}; right half defocused by a disk of radius {args.radius:g} px; "
             "LR = area-downscale by 2. HF = mean square Laplacian of luma.", "", table, "",
             "Bar: defocused HF within 10 % of the truth's; sharp HF closer to the truth's "
             "and PSNR higher than bicubic's."]
    lines += verdict_lines or ["- no model measured (none installed)"]
    section = Section("upscale_defocus", "Defocused region after 2x: no invented detail (fig. 4-2)",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
