"""False colour of demosaickers on a zone plate and fine stripes near Nyquist.

The test charts are grey (R = G = B), so every trace of chroma in a result is false
colour, the moire a Bayer mosaic aliases fine detail into. Charts, sRGB-encoded values
``0.5 + 0.4 cos(phase)`` sampled at pixel centres:

- a circular zone plate, 256 x 256, local frequency rising from 0 at the centre to 0.5
  cycles per pixel (Nyquist) in the corners: every frequency and orientation;
- straight gratings, 128 x 128, at 0.30 and 0.40 cycles per pixel (Nyquist is 0.5; the red
  and blue planes alias from 0.25) and angles 0, 15, 30, 45, 60, 75 and 90 degrees.

Each chart is mosaicked in all four Bayer phases (RGGB, BGGR, GRBG, GBRG) and demosaicked
by every method of ``demosaic_quality.py`` (ours through the develop stage's
``nn_demosaic``, colour-demosaicing, LibRaw through a DNG, demosaicnet); the result is
clipped to [0, 1]. Chroma error energy = the sum over the pixels (8-pixel border left out)
of the squared error of Cb and Cr (BT.601 YCbCr of the encoded values, full range) against
the truth, averaged over the four phases; reported per chart group and in total, with the
luma PSNR beside it (a method that blurred everything would have no false colour, but a
poor luma). Bar: ours at most half of LibRaw AHD's total chroma error energy.

    python benchmarks/demosaic_falsecolor.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from common import Section, add_common_options, describe_model, load_models, markdown_table, publish
from demosaic_quality import Demosaicker, baseline_methods, ours_method

__all__ = ["PHASES", "Chart", "zone_plate", "grating", "charts", "ycbcr", "ChartError",
           "chart_error", "main"]

PHASES = ("RGGB", "BGGR", "GRBG", "GBRG")
BORDER = 8
MEAN, AMPLITUDE = 0.5, 0.4
FREQUENCIES = (0.30, 0.40)
ANGLES = (0, 15, 30, 45, 60, 75, 90)
BAR = 0.5  # ours / AHD, total chroma error energy


@dataclass(frozen=True)
class Chart:
    """A grey test chart: group name for the table, float32 (H, W, 3) sRGB-encoded truth."""

    group: str
    name: str
    truth: np.ndarray


def _grey(t: np.ndarray) -> np.ndarray:
    return np.repeat((MEAN + AMPLITUDE * t)[..., None], 3, axis=2).astype(np.float32)


def zone_plate(size: int = 256) -> np.ndarray:
    """cos(pi k r^2) about the centre, local frequency k r reaching 0.5 cycles/px in the corners."""
    centre = (size - 1) / 2.0
    y, x = np.mgrid[0:size, 0:size] - centre
    r2 = y**2 + x**2
    k = 0.5 / math.sqrt(r2.max())
    return _grey(np.cos(math.pi * k * r2))


def grating(frequency: float, angle_deg: float, size: int = 128) -> np.ndarray:
    """A sinusoidal grating of ``frequency`` cycles/px, crests ``angle_deg`` from vertical."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = math.radians(angle_deg)
    u = x * math.cos(theta) + y * math.sin(theta)
    return _grey(np.cos(2 * math.pi * frequency * u + 0.3))


def charts() -> list[Chart]:
    """The zone plate, then the gratings grouped by frequency."""
    items = [Chart("zone plate", "zone plate", zone_plate())]
    for frequency in FREQUENCIES:
        for angle in ANGLES:
            items.append(Chart(f"stripes {frequency:.2f} c/px", f"{frequency:.2f}@{angle}",
                               grating(frequency, angle)))
    return items


def ycbcr(rgb: np.ndarray) -> np.ndarray:
    """Full-range BT.601 Y, Cb, Cr of encoded RGB values, float64 (H, W, 3)."""
    matrix = np.array([[0.299, 0.587, 0.114],
                       [-0.168736, -0.331264, 0.5],
                       [0.5, -0.418688, -0.081312]])
    return np.asarray(rgb, dtype=np.float64) @ matrix.T


@dataclass
class ChartError:
    """Errors of one method on one chart, averaged over the four phases."""

    chroma_energy: float  # sum over pixels of dCb^2 + dCr^2
    luma_mse: float


def chart_error(method: Demosaicker, truth: np.ndarray) -> ChartError:
    """Demosaic ``truth``'s mosaic in every phase; chroma energy and luma MSE, phase mean."""
    from nnip.simulate.sensor import mosaic_bayer  # noqa: PLC0415

    b = BORDER
    reference = ycbcr(truth)[b:-b, b:-b]
    energies, lumas = [], []
    for pattern in PHASES:
        result = np.clip(method(mosaic_bayer(truth, pattern), pattern), 0.0, 1.0)
        error = ycbcr(result)[b:-b, b:-b] - reference
        energies.append(float(np.sum(error[..., 1:] ** 2)))
        lumas.append(float(np.mean(error[..., 0] ** 2)))
    return ChartError(float(np.mean(energies)), float(np.mean(lumas)))


def _measure(
    methods: dict[str, Demosaicker], items: Sequence[Chart]
) -> dict[str, dict[str, ChartError]]:
    return {name: {chart.name: chart_error(method, chart.truth) for chart in items}
            for name, method in methods.items()}


def _psnr(mse: float) -> float:
    return 10.0 * math.log10(1.0 / max(mse, 1e-20))


def _table(errors: dict[str, dict[str, ChartError]], items: Sequence[Chart]) -> str:
    groups = list(dict.fromkeys(chart.group for chart in items))
    headers = ["method", *(f"{g}: chroma energy" for g in groups), "total chroma energy",
               "luma PSNR dB (all charts)"]
    rows = []
    for name, per_chart in errors.items():
        cells: list[object] = [name]
        for group in groups:
            energy = sum(per_chart[c.name].chroma_energy for c in items if c.group == group)
            cells.append(f"{energy:.2f}")
        cells.append(f"{sum(e.chroma_energy for e in per_chart.values()):.2f}")
        cells.append(f"{_psnr(float(np.mean([e.luma_mse for e in per_chart.values()]))):.2f}")
        rows.append(cells)
    return markdown_table(headers, rows)


def _verdicts(errors: dict[str, dict[str, ChartError]], ours: Sequence[str]) -> list[str]:
    ahd = errors.get("LibRaw AHD")
    if ahd is None:
        return ["(no LibRaw AHD row: no verdict)"]
    reference = sum(e.chroma_energy for e in ahd.values())
    lines = []
    for name in ours:
        total = sum(e.chroma_energy for e in errors[name].values())
        ratio = total / reference
        lines.append(f"- {name}: total chroma error energy {ratio:.3f} x LibRaw AHD's, bar <= "
                     f"{BAR}: {'PASS' if ratio <= BAR else 'FAIL'}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_options(parser, models="demosaic")
    parser.add_argument("--methods", default=None,
                        help="comma-separated baselines (default: all; 'none' for none)")
    args = parser.parse_args(argv)
    if args.threads is None:
        args.threads = 2
    names = None
    if args.methods is not None:  # 'none': our models only
        names = [m for m in args.methods.split(",") if m and m != "none"]

    items = charts()
    engine, specs = load_models(args, task="demosaic")
    methods: dict[str, Demosaicker] = {
        f"**{spec.name}** (ours)": ours_method(engine, spec) for spec in specs
    }
    with tempfile.TemporaryDirectory(prefix="nnip-falsecolor-") as tmp:
        methods.update(baseline_methods(Path(tmp), args.threads, names))
        errors = _measure(methods, items)

    ours = [name for name in errors if name.startswith("**")]
    body = [
        f"Grey charts ({MEAN} +- {AMPLITUDE} sRGB-encoded): a 256 x 256 zone plate up to Nyquist, "
        f"128 x 128 gratings at {', '.join(f'{f:.2f}' for f in FREQUENCIES)} cycles/px and "
        f"{', '.join(map(str, ANGLES))} degrees; each mosaicked in all four Bayer phases. "
        f"Chroma error energy = sum over pixels ({BORDER}-px border excluded) of squared Cb and "
        f"Cr error (BT.601 full range), mean over the phases; lower is better.",
        "",
        _table(errors, items),
        "",
        *_verdicts(errors, ours),
    ]
    section = Section(
        name="demosaic_falsecolor",
        title="Demosaicking false colour: zone plate and gratings near Nyquist",
        body="\n".join(body),
        models=[describe_model(spec) for spec in specs],
        argv=argv,
    )
    publish(section, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
