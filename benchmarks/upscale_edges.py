"""Step edges after 2x: overshoot, undershoot and 10-90 % rise distance (white paper fig. 3-3).

Synthetic grey step edges at 0, 30 and 45 degrees from vertical are rendered with 8 x 8
supersampling and area-downscaled, so the HR truth is a clean anti-aliased edge. Levels are
0.2 and 0.8 (sRGB-encoded), leaving room for ringing that clipping to [0, 1] would hide.
The LR input is the area-downscale of the HR by 2 (what ``nnups`` assumes a pixel is),
and also MATLAB's ``imresize(HR, 0.5, 'bicubic')`` (the SR papers' protocol).

Each method upscales the LR by 2: bicubic (MATLAB cubic, a = -0.5), Lanczos (Pillow, a = 3)
and each model through ``nnups.upscale.upscale_image``. The edge profile is the mean of
the output along the edge: every pixel within 10 px of the edge and 24 px of no border is
binned by its signed distance to the true edge line (0.25 px bins, as the slanted-edge
method does). On that profile, in % of the step and in output pixels:

- overshoot: how far the profile rises above the high level; undershoot: below the low;
- rise: distance between the 10 % and 90 % crossings nearest the edge (linear interpolation).

Bar, per model on the area-downscaled LR: ringing (max of over- and undershoot) at most a
third of bicubic's, and a rise distance no wider than bicubic's, at every angle. The
MATLAB-LR rows are reported for comparison with published figures.

    python benchmarks/upscale_edges.py --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from common import Section, add_common_options, describe_model, load_models, markdown_table, publish, upscalers

__all__ = ["render_edge", "edge_profile", "EdgeStats", "edge_stats", "measure", "main"]

LOW, HIGH = 0.2, 0.8
ANGLES = (0.0, 30.0, 45.0)
SIZE = 192  # HR edge length in pixels (the LR is 96 x 96)
SUPERSAMPLE = 8
BORDER = 24  # output pixels left out at each image border (resampler border handling)
REACH = 10.0  # profile half-width in output pixels
BIN = 0.25
# The edge passes a point off the pixel grid so the LR holds partly covered pixels.
OFFSET = (0.3, 0.1)


def _signed_distance(height: int, width: int, angle: float, step: float = 1.0) -> np.ndarray:
    """Distance (HR pixels) of sample centres on a ``step`` grid to the edge line, + on the high side."""
    theta = np.deg2rad(angle)
    ys = (np.arange(round(height / step)) + 0.5) * step - (height / 2 + OFFSET[1])
    xs = (np.arange(round(width / step)) + 0.5) * step - (width / 2 + OFFSET[0])
    return xs[None, :] * np.cos(theta) + ys[:, None] * np.sin(theta)


def render_edge(angle: float, size: int = SIZE) -> np.ndarray:
    """The HR truth: a straight step edge, ``angle`` degrees from vertical.

    Returns
    -------
    np.ndarray
        float32 (size, size, 3), grey (R = G = B), values in [LOW, HIGH], sRGB-encoded;
        each pixel is the exact mean of 8 x 8 point samples (area anti-aliasing).
    """
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    fine = np.where(_signed_distance(size, size, angle, 1 / SUPERSAMPLE) > 0, HIGH, LOW)
    grey = area_downscale(fine.astype(np.float32), SUPERSAMPLE)
    return np.repeat(grey[..., None], 3, axis=2)


def edge_profile(image: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean value along the edge against signed distance to it (the edge spread function).

    Parameters
    ----------
    image : np.ndarray
        (H, W, C) at the HR scale; channels are averaged.

    Returns
    -------
    distance, value : np.ndarray
        float64 (n,), bin-mean distance in pixels (increasing) and bin-mean value.
    """
    height, width = image.shape[:2]
    distance = _signed_distance(height, width, angle)
    ys, xs = np.mgrid[0:height, 0:width]
    inside = (np.minimum(ys, xs) >= BORDER) & (ys < height - BORDER) & (xs < width - BORDER)
    keep = inside & (np.abs(distance) <= REACH)
    d = distance[keep]
    v = image.mean(axis=2)[keep].astype(np.float64)
    bins = np.floor(d / BIN).astype(np.int64)
    _, index = np.unique(bins, return_inverse=True)
    counts = np.bincount(index)
    return np.bincount(index, d) / counts, np.bincount(index, v) / counts


def _crossing(d: np.ndarray, p: np.ndarray, start: int, level: float, direction: int) -> float:
    """Walk from ``start`` in ``direction`` until ``p`` passes ``level``; interpolated distance."""
    i = start
    while 0 <= i + direction < len(p):
        j = i + direction
        if (p[j] - level) * (p[i] - level) <= 0 and p[j] != p[i]:
            return float(d[i] + (level - p[i]) * (d[j] - d[i]) / (p[j] - p[i]))
        i = j
    return float("nan")


@dataclass(frozen=True)
class EdgeStats:
    """Ringing in % of the step and the 10-90 % rise distance in output pixels."""

    overshoot: float
    undershoot: float
    rise: float

    @property
    def ringing(self) -> float:
        return max(self.overshoot, self.undershoot)


def edge_stats(image: np.ndarray, angle: float) -> EdgeStats:
    """:class:`EdgeStats` of an upscaled (or truth) edge image of the HR size."""
    d, value = edge_profile(image, angle)
    p = (value - LOW) / (HIGH - LOW)
    middle = int(np.argmin(np.abs(p - 0.5) + 1e-3 * np.abs(d)))  # the 50 % point nearest the edge
    d10 = _crossing(d, p, middle, 0.1, -1)
    d90 = _crossing(d, p, middle, 0.9, +1)
    return EdgeStats(
        overshoot=100.0 * max(0.0, float(p.max()) - 1.0),
        undershoot=100.0 * max(0.0, -float(p.min())),
        rise=d90 - d10,
    )


def _lr_makers() -> dict[str, object]:
    from nnip.simulate.resize import imresize  # noqa: PLC0415
    from nnups.fidelity import area_downscale  # noqa: PLC0415

    return {"area": lambda hr: area_downscale(hr, 2), "MATLAB bicubic": lambda hr: imresize(hr, 0.5)}


def _passes(stats: EdgeStats, bicubic: EdgeStats) -> bool:
    return stats.ringing <= bicubic.ringing / 3 + 1e-6 and stats.rise <= bicubic.rise + 1e-3


def measure(methods: dict, model_names: Sequence[str]) -> tuple[list[list[object]], dict[str, list[bool]]]:
    """Table rows for every LR kind, angle and method; pass flags of models on the area LR."""
    rows: list[list[object]] = []
    verdicts: dict[str, list[bool]] = {name: [] for name in model_names}
    for lr_name, make_lr in _lr_makers().items():
        for angle in ANGLES:
            hr = render_edge(angle)
            lr = make_lr(hr)
            truth = edge_stats(hr, angle)
            rows.append([lr_name, f"{angle:g}", "HR truth", f"{truth.overshoot:.1f}",
                         f"{truth.undershoot:.1f}", f"{truth.rise:.2f}", ""])
            bicubic = None
            for name, upscale in methods.items():
                stats = edge_stats(upscale(lr), angle)
                bicubic = stats if name == "bicubic" else bicubic
                verdict = ""
                if name in verdicts:
                    ok = _passes(stats, bicubic)
                    verdict = "pass" if ok else "FAIL"
                    if lr_name == "area":
                        verdicts[name].append(ok)
                rows.append([lr_name, f"{angle:g}", name, f"{stats.overshoot:.1f}",
                             f"{stats.undershoot:.1f}", f"{stats.rise:.2f}", verdict])
    return rows, verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_options(parser)
    args = parser.parse_args(argv)

    engine, specs = load_models(args)
    methods = upscalers(engine, specs)
    rows, verdicts = measure(methods, [s.name for s in specs])
    table = markdown_table(
        ["LR", "angle (deg)", "method", "overshoot %", "undershoot %", "rise 10-90 % (px)", "bar"], rows
    )
    lines = [table, "",
             "Bar (area LR, every angle): ringing <= 1/3 of bicubic's and rise <= bicubic's. "
             "Step 0.2 -> 0.8; profile = mean along the edge, 0.25 px bins."]
    for name, flags in verdicts.items():
        lines.append(f"- **{name}: {'PASS' if all(flags) else 'FAIL'}** "
                     f"({sum(flags)}/{len(flags)} angles on the area LR)")
    if not specs:
        lines.append("- no model measured (none installed)")
    section = Section("upscale_edges", "Step edges after 2x: ringing and rise distance (fig. 3-3)",
                      "\n".join(lines), [describe_model(s) for s in specs], argv)
    publish(section, args.results)
    return 0 if all(all(f) for f in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
