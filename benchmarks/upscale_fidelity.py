"""Fidelity of 2x upscaling: the output, area-downscaled, gives back the input; noise stays.

Part 1, Set5 / Set14 (skipped when ``../shared/data/bench`` is absent): the input is the
standard protocol's LR, MATLAB ``imresize(HR, 0.5, 'bicubic')`` on uint8. Each method's
output is rounded to 8 bits (as ``nnups`` writes a PNG), area-downscaled by 2 and compared
with the input: PSNR over RGB (all pixels, [0, 1]) and the largest error of an 8 x 8 block
mean of the input (a 16 x 16 block of the output), in /255. Bar, per model: PSNR >= 45 dB
on every image and max block-mean error <= 0.5 / 255.

Part 2, noise: a smooth synthetic RGB image (gradients and one broad bump, so that a plane
fits every 16 x 16 block to 0.05 / 255) plus Gaussian noise, sigma 2/255 and 5/255, kept in
float (no 8-bit rounding, which would add 0.29/255). The noise level of an image is the
median, over blocks (border blocks left out) and channels, of the standard deviation of the
residual after a least-squares plane fit (ddof 3). It is measured on:

- the input (16 px blocks): sigma_in;
- the area-downscale of the output, at the input's scale (16 px blocks): "matched scale".
  Bicubic (no fidelity step) shows what a plain interpolator gives there;
- the output at its own scale (32 px blocks, the same scene area).

Bar, per model: matched-scale noise within 10 % of sigma_in, at both levels.

    python benchmarks/upscale_fidelity.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from common import (
    Section, add_common_options, describe_model, load_models, markdown_table, publish, shared_path,
    upscalers,
)

__all__ = ["fidelity_psnr", "max_block_error", "set_part", "smooth_scene", "noise_sigma", "noise_part", "main"]

SETS = ("Set5", "Set14")
PSNR_BAR = 45.0
BLOCK_BAR = 0.5  # /255
NOISE_LEVELS = (2.0, 5.0)  # /255
NOISE_TOLERANCE = 0.10
BLOCK = 8
NOISE_BLOCK = 16
SCENE = 256


def _quantise(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0) / 255.0


def fidelity_psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of ``area_downscale(output, 2)`` against ``reference``, both in [0, 1]."""
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    mse = float(np.mean((area_downscale(output, 2).astype(np.float64) - reference) ** 2))
    return 10.0 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def max_block_error(output: np.ndarray, reference: np.ndarray, block: int = BLOCK) -> float:
    """Largest |mean difference| of ``block x block`` input blocks, in /255 (whole blocks only)."""
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    height, width = (s // block * block for s in reference.shape[:2])
    ours = area_downscale(output[: 2 * height, : 2 * width], 2 * block).astype(np.float64)
    theirs = area_downscale(reference[:height, :width], block).astype(np.float64)
    return 255.0 * float(np.abs(ours - theirs).max())


def _load_set(folder: Path) -> list[tuple[str, np.ndarray]]:
    """(name, LR float (h, w, 3) in [0, 1]) per image: HR even-cropped, MATLAB-bicubic halved."""
    from PIL import Image as PILImage  # noqa: PLC0415

    from nnip.simulate.resize import imresize  # noqa: PLC0415

    images = []
    for path in sorted(folder.glob("*.png")):
        with PILImage.open(path) as picture:
            hr = np.asarray(picture.convert("RGB"))
        hr = hr[: hr.shape[0] // 2 * 2, : hr.shape[1] // 2 * 2]
        images.append((path.stem, imresize(hr, 0.5).astype(np.float32) / 255.0))
    return images


def set_part(methods: dict, models: Sequence[str], bench: Path) -> tuple[str, dict[str, bool]]:
    """Table of the Set5 / Set14 part and pass flags per model."""
    rows, passed = [], {name: True for name in models}
    for set_name in SETS:
        images = _load_set(bench / set_name)
        for name, upscale in methods.items():
            psnrs, errors = [], []
            for _, lr in images:
                out = _quantise(upscale(lr))
                psnrs.append(fidelity_psnr(out, lr))
                errors.append(max_block_error(out, lr))
            ok = min(psnrs) >= PSNR_BAR and max(errors) <= BLOCK_BAR
            if name in passed:
                passed[name] &= ok
            rows.append([set_name, name, f"{np.mean(psnrs):.2f}", f"{min(psnrs):.2f}",
                         f"{max(errors):.3f}", ("pass" if ok else "FAIL") if name in passed else ""])
    table = markdown_table(["set", "method", "mean PSNR dB", "min PSNR dB",
                            "max 8x8 block error /255", "bar"], rows)
    return table, passed


def smooth_scene(size: int = SCENE) -> np.ndarray:
    """A smooth RGB test image, float32 (size, size, 3) in [0.25, 0.75], no noise."""
    y, x = np.mgrid[0:size, 0:size] / size
    bump = np.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) / (2 * 0.45**2))
    channels = [0.3 + 0.2 * x + 0.2 * bump, 0.45 + 0.1 * y + 0.15 * bump, 0.6 - 0.15 * x * y - 0.1 * bump]
    return np.stack(channels, axis=-1).astype(np.float32)


def noise_sigma(image: np.ndarray, block: int) -> float:
    """Median plane-fit residual std over interior ``block x block`` blocks and channels."""
    height, width, channels = image.shape
    rows, cols = height // block, width // block
    blocks = image[: rows * block, : cols * block].astype(np.float64)
    blocks = blocks.reshape(rows, block, cols, block, channels).transpose(0, 2, 4, 1, 3)
    blocks = blocks[1:-1, 1:-1].reshape(-1, block * block)
    ys, xs = np.mgrid[0:block, 0:block]
    design = np.stack([np.ones(block * block), xs.ravel(), ys.ravel()], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, blocks.T, rcond=None)
    residual = blocks.T - design @ coeffs
    return float(np.median(np.sqrt((residual**2).sum(axis=0) / (block * block - 3))))


def noise_part(methods: dict, models: Sequence[str]) -> tuple[str, dict[str, bool]]:
    """Table of the noise part and pass flags per model."""
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    rows, passed = [], {name: True for name in models}
    clean = smooth_scene()
    floor = 255.0 * noise_sigma(clean, NOISE_BLOCK)
    for level in NOISE_LEVELS:
        rng = np.random.default_rng(int(level * 100))
        noisy = (clean + rng.normal(0.0, level / 255.0, clean.shape)).astype(np.float32)
        sigma_in = 255.0 * noise_sigma(noisy, NOISE_BLOCK)
        bicubic_own = None
        for name, upscale in methods.items():
            out = upscale(noisy)
            matched = 255.0 * noise_sigma(area_downscale(out, 2), NOISE_BLOCK)
            own = 255.0 * noise_sigma(out, 2 * NOISE_BLOCK)
            bicubic_own = own if name == "bicubic" else bicubic_own
            ok = abs(matched / sigma_in - 1.0) <= NOISE_TOLERANCE
            if name in passed:
                passed[name] &= ok
            rows.append([f"{level:g}", f"{sigma_in:.3f}", name, f"{matched:.3f}",
                         f"{matched / sigma_in:.3f}", f"{own:.3f}", f"{own / bicubic_own:.3f}",
                         ("pass" if ok else "FAIL") if name in passed else ""])
    table = markdown_table(
        ["sigma added /255", "sigma_in /255", "method", "matched-scale sigma /255",
         "x sigma_in", "own-scale sigma /255", "own x bicubic's", "bar"], rows)
    note = (f"Plane-fit floor of the clean image: {floor:.3f}/255 (the estimator's bias, "
            "negligible).")
    return table + "\n\n" + note, passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    parser.add_argument("--bench", type=Path, default=None,
                        help="folder holding Set5/ and Set14/ (default ../shared/data/bench)")
    args = parser.parse_args(argv)
    engine, specs = load_models(args)
    methods = upscalers(engine, specs)
    names = [s.name for s in specs]

    lines: list[str] = []
    bench = args.bench or shared_path("data", "bench")
    verdicts: dict[str, bool] = {name: True for name in names}
    if bench is not None and all((bench / s).is_dir() for s in SETS):
        table, passed = set_part(methods, names, bench)
        lines += ["**Set5 / Set14** (input = protocol LR; output rounded to 8 bits; "
                  f"bar: PSNR >= {PSNR_BAR:g} dB on every image, block error <= {BLOCK_BAR} / 255)",
                  "", table, ""]
        verdicts = {n: verdicts[n] and passed[n] for n in names}
    else:
        lines += ["Set5 / Set14 part skipped: ../shared/data/bench not found.", ""]
    table, passed = noise_part(methods, names)
    lines += ["**Noise** (smooth synthetic 256x256 RGB + Gaussian noise; plane-fit std in "
              f"flat blocks; bar: matched-scale sigma within {NOISE_TOLERANCE:.0%} of sigma_in)",
              "", table, ""]
    verdicts = {n: verdicts[n] and passed[n] for n in names}
    lines += [f"- **{n}: {'PASS' if ok else 'FAIL'}**" for n, ok in verdicts.items()]
    if not names:
        lines.append("- no model measured (none installed)")
    section = Section("upscale_fidelity", "Fidelity after 2x: area-downscaled output vs input, noise kept",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
