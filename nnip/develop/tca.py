"""Lateral chromatic aberration (TCA), corrected on the Bayer mosaic before demosaicking.

Lateral CA magnifies the red and blue images of a lens slightly differently from the
green one, so colour fringes grow towards the corners. The correction resamples the red and
blue samples of the mosaic radially (:func:`correct_mosaic`), with the displacement from
the lensfun profile where the lens is known, or (``--lens deblur``) measured in the image,
like the "auto CA" of raw converters (:class:`LateralCA` says why only there).

Why on the mosaic, not on demosaicked RGB: a demosaic rebuilds red and blue detail from
green, so it absorbs part of a misregistration, by an amount that depends on the scene's
frequencies (the network demosaic pulls a 0.5 px shift almost to 0 on fine detail, much
less on coarse edges). No single shift then realigns the demosaicked channels: correcting
one by the lens's displacement over-corrects its fine detail. Measured on the lens
benchmark's checkerboard at f/2 (red shifted ~0.9 px at the boxes): residual
misregistration 0.85 px uncorrected, 0.27 px with this estimator on demosaicked RGB,
0.05 px on the mosaic.

The estimate (:func:`estimate_mosaic_tca`), on a half-resolution RGB of the mosaic (the two
greens averaged, red and blue moved to the 2 x 2 cell's centre, :func:`half_rgb`):

1. Blocks with strong radial edges all over the frame, the strongest of each radial ring
   (:func:`_pick_blocks`).
2. In each block, the radial displacement ``d`` of channel c against green is the
   least-squares solution of ``c(x) ~ a g(x) - a d dg/du(x) + b`` (``u`` the radial
   direction there; a first-order Taylor step), measured on square-rooted, slightly
   smoothed values. A block whose colour channel is not an affinely scaled copy of green
   (a colour edge, not a fringe: R^2 < :data:`MIN_FIT_R2`) says nothing.
3. A radial profile ``d(r) = k1 r + k3 r^3`` (``r`` = distance from the centre over the
   half diagonal; the linear and cubic terms of lateral colour in aberration theory, and
   lensfun's ``poly3`` TCA model up to its r^2 term), fitted to the blocks by weighted
   least squares with robust reweighting; the cubic term only from
   :data:`CUBIC_MIN_BLOCKS` blocks (with fewer it swings by pixels at the corner).
4. :data:`ROUNDS` rounds: each warps the blocks' colour channel by the profile so far and
   measures what is left (the Taylor step is exact only for small ``d``).

A lens's fringe is the same on every side of the frame; a coloured object's edges are not.
So the first round is also fitted on each quarter of the frame (right, bottom, left, top)
separately, and a channel is corrected only when the displacement at
``r =`` :data:`CHECK_RADIUS` is at least :data:`MIN_SHIFT_PX` and :data:`MIN_T` standard
errors (a sandwich estimate over the blocks), and every side with enough
blocks (at least three sides) shows it with the same sign and at least
:data:`SIDE_AGREEMENT` of its size. Without that test, CA-free benchmark images (f/16)
measured up to 1 px of "CA" in single rings of the frame.

Fewer than :data:`MIN_BLOCKS` usable blocks: nothing is changed either. A fringe under
0.1 px is invisible and not worth a resampling pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from nnip.core.parallel import for_each_strip

if TYPE_CHECKING:
    from nnip.develop.pipeline import DevelopFrame
    from nnip.raw.frame import RawFrame

__all__ = [
    "TcaFit", "RadialWarp", "estimate_tca", "estimate_mosaic_tca", "half_rgb", "correct_mosaic",
    "profile_at", "profile_warp", "LateralCA", "MIN_BLOCKS", "MIN_SHIFT_PX",
]


BLOCK = 24  # block side (px) of the displacement measurement
MARGIN = 8  # window around a block: warp reach + smoothing + spline edge
MAX_BLOCKS = 480  # strongest-edged blocks used (spread over the rings)
RINGS = 8  # radial rings: blocks are picked evenly from each
CHECK_RADIUS = 0.8  # where the displacement is judged (well inside the measured field)
MIN_SIDE_BLOCKS = 8  # a side of the frame (quarter of the angles) with fewer is not judged
SIDE_AGREEMENT = 0.35  # each side's displacement: same sign, at least this share of the whole
MIN_T = 4.0  # the displacement at CHECK_RADIUS must be this many standard errors
CUBIC_MIN_BLOCKS = 150  # fewer usable blocks: d = k1 r only
MIN_BLOCKS = 24  # fewer usable blocks: no correction
MIN_SHIFT_PX = 0.1  # a smaller displacement at CHECK_RADIUS is not corrected
MIN_FIT_R2 = 0.9  # a block's colour channel must follow green this well
MAX_BLOCK_SHIFT_PX = 3.0  # a larger per-block value is a failed measurement
SMOOTH_PX = 1.0
ROUNDS = 3
_STRIP_ROWS = 256
_SPLINE_MARGIN = 20

Coeffs = tuple[float, float]  # (k1, k3) of d(r) = k1 r + k3 r^3


def profile_at(coeffs: Coeffs | None, r: np.ndarray) -> np.ndarray:
    """``d(r) = k1 r + k3 r^3`` (px) for ``coeffs = (k1, k3)``; 0 for None."""
    r = np.asarray(r, dtype=np.float64)
    if coeffs is None:
        return np.zeros_like(r)
    k1, k3 = coeffs
    return r * (k1 + k3 * r * r)


@dataclass(frozen=True)
class TcaFit:
    """Radial displacement (px, + = outwards) of red and blue against green.

    ``red``, ``blue``: ``(k1, k3)`` of :func:`profile_at`, ``r`` the distance from
    ``centre`` over ``r_corner``; None where the measurement did not show a displacement
    worth correcting (module notes). ``blocks``: usable blocks per channel.
    """

    centre: tuple[float, float]
    r_corner: float
    red: Coeffs | None
    blue: Coeffs | None
    blocks: tuple[int, int]

    def largest_px(self, channel: int) -> float:
        """Largest |displacement| of channel 0 (red) or 2 (blue) within the frame."""
        coeffs = self.red if channel == 0 else self.blue
        return float(np.abs(profile_at(coeffs, np.linspace(0.0, 1.0, 101))).max())

    @property
    def needed(self) -> bool:
        """True when there is something to correct."""
        return self.red is not None or self.blue is not None

    def describe(self) -> str:
        def one(name: str, channel: int) -> str:
            coeffs = self.red if channel == 0 else self.blue
            if coeffs is None:
                return f"{name} none"
            return f"{name} {profile_at(coeffs, np.array(1.0)):+.2f} px"

        return (f"lateral CA at the corner: {one('red', 0)}, {one('blue', 2)} "
                f"({self.blocks[0]}/{self.blocks[1]} blocks)")


def _encode(plane: np.ndarray) -> np.ndarray:
    """What blocks are measured on: a square root (evens out the weight of dark and
    bright edges, and of shot noise), smoothed by a Gaussian of :data:`SMOOTH_PX` (a shift
    moves a smoothed edge as far, and the Taylor step is far more accurate on it: on sharp
    edges it overestimated a 1 px shift by a third)."""
    from scipy import ndimage

    root = np.sqrt(np.clip(plane, 0.0, None), dtype=np.float32)
    return ndimage.gaussian_filter(root, SMOOTH_PX, truncate=3.0)


def _pick_blocks(green: np.ndarray, centre: tuple[float, float], r_corner: float
                 ) -> list[tuple[int, int]]:
    """Top-left corners of up to :data:`MAX_BLOCKS` blocks (at least :data:`MARGIN` from
    the border) with the strongest radial edges, an equal share per ring."""
    h, w = green.shape
    rows, cols = (h - 2 * MARGIN) // BLOCK, (w - 2 * MARGIN) // BLOCK
    if rows <= 0 or cols <= 0:
        return []
    half = BLOCK // 2
    cut = green[MARGIN:MARGIN + rows * BLOCK, MARGIN:MARGIN + cols * BLOCK]
    binned = np.sqrt(np.clip(cut.reshape(rows * half, 2, cols * half, 2).mean(axis=(1, 3)),
                             0.0, None))
    gy, gx = np.gradient(binned)
    ys = MARGIN + (np.arange(rows) + 0.5) * BLOCK - 0.5 - centre[0]
    xs = MARGIN + (np.arange(cols) + 0.5) * BLOCK - 0.5 - centre[1]
    norm = np.hypot(ys[:, None], xs[None, :]) + 1e-6
    uy, ux = (ys[:, None] / norm)[:, None, :, None], (xs[None, :] / norm)[:, None, :, None]
    radial = gy.reshape(rows, half, cols, half) * uy + gx.reshape(rows, half, cols, half) * ux
    energy = (radial ** 2).mean(axis=(1, 3)).ravel()
    ring = np.minimum((norm / r_corner * RINGS).astype(int), RINGS - 1).ravel()
    chosen: list[tuple[int, int]] = []
    for k in range(RINGS):
        idx = np.flatnonzero((ring == k) & (energy > 1e-8))
        best = idx[np.argsort(energy[idx])[::-1][:MAX_BLOCKS // RINGS]]
        chosen += [(MARGIN + int(i // cols) * BLOCK, MARGIN + int(i % cols) * BLOCK) for i in best]
    return chosen


def _block_shift(channel: np.ndarray, green: np.ndarray, uy: float, ux: float
                 ) -> tuple[float, float] | None:
    """(displacement px, weight) of an encoded block core, or None when it says nothing."""
    gy, gx = np.gradient(green)
    core = (slice(MARGIN, MARGIN + BLOCK), slice(MARGIN, MARGIN + BLOCK))
    g = green[core].ravel()
    du = (gy[core] * uy + gx[core] * ux).ravel()
    c = channel[core].ravel()
    design = np.stack([g, du, np.ones_like(g)], axis=1).astype(np.float64)
    coef, _, rank, _ = np.linalg.lstsq(design, c.astype(np.float64), rcond=None)
    a, e, _ = coef
    if rank < 3 or a <= 0.05:
        return None
    total = float(((c - c.mean()) ** 2).sum())
    residual = c - design @ coef
    if total <= 0 or 1.0 - float((residual ** 2).sum()) / total < MIN_FIT_R2:
        return None
    d = -e / a  # c(x) ~ a g(x - d u): the channel's image lies d further out
    if abs(d) > MAX_BLOCK_SHIFT_PX:
        return None
    return d, a * a * float((du ** 2).sum())


def _warp_window(plane: np.ndarray, top: int, left: int, size: int, coeffs: Coeffs,
                 centre: tuple[float, float], r_corner: float) -> np.ndarray:
    """``plane`` sampled at ``x + d(r) u`` over a window (what the correction would give
    there)."""
    from scipy import ndimage

    ys = np.arange(top, top + size, dtype=np.float64)[:, None] - centre[0]
    xs = np.arange(left, left + size, dtype=np.float64)[None, :] - centre[1]
    r = np.maximum(np.hypot(ys, xs), 1e-6)
    gain = 1.0 + profile_at(coeffs, r / r_corner) / r
    pad = int(MAX_BLOCK_SHIFT_PX) + 4
    y0, x0 = max(0, top - pad), max(0, left - pad)
    source = plane[y0:top + size + pad, x0:left + size + pad]
    coords = np.stack([np.broadcast_to(centre[0] + ys * gain - y0, r.shape),
                       np.broadcast_to(centre[1] + xs * gain - x0, r.shape)])
    return ndimage.map_coordinates(source, coords, order=3, mode="nearest").astype(np.float32)


def _fit_odd(radii: np.ndarray, shifts: np.ndarray, weights: np.ndarray
             ) -> tuple[np.ndarray, float]:
    """(k1, k3) of ``d = k1 r + k3 r^3`` by weighted least squares with Huber-like
    reweighting, and the standard error of ``d(CHECK_RADIUS)`` (sandwich estimate: the
    block weights are only roughly inverse variances). The cubic term is fitted only with
    :data:`CUBIC_MIN_BLOCKS` blocks or more: with fewer it swings by pixels."""
    cubic = len(radii) >= CUBIC_MIN_BLOCKS
    design = np.stack([radii, radii ** 3], axis=1) if cubic else radii[:, None]
    w = weights / weights.max()
    coef = np.zeros(design.shape[1])
    for _ in range(4):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], shifts * sw, rcond=None)
        residual = shifts - design @ coef
        scale = max(1.4826 * float(np.median(np.abs(residual))), 0.02)
        w = weights / weights.max() * np.minimum(1.0, 1.5 * scale / np.maximum(np.abs(residual), 1e-9))
    bread = np.linalg.pinv(design.T @ (design * w[:, None]))
    meat = (design * (w * residual)[:, None]).T @ (design * (w * residual)[:, None])
    at = np.array([CHECK_RADIUS, CHECK_RADIUS ** 3])[: design.shape[1]]
    error = float(np.sqrt(max(at @ bread @ meat @ bread @ at, 0.0)))
    return np.append(coef, 0.0)[:2], error


def _consistent(radii: np.ndarray, angles: np.ndarray, shifts: np.ndarray,
                weights: np.ndarray) -> np.ndarray | None:
    """The first round's (k1, k3) when the fringe is clearly there and the same on every
    side of the frame (module notes), else None."""
    coef, error = _fit_odd(radii, shifts, weights)
    whole = float(profile_at((coef[0], coef[1]), np.array(CHECK_RADIUS)))
    if abs(whole) < MIN_SHIFT_PX or abs(whole) < MIN_T * error:
        return None
    sides = 0
    for k in range(4):
        side = (np.floor((angles + np.pi / 4) / (np.pi / 2)) % 4) == k
        if side.sum() < MIN_SIDE_BLOCKS:
            continue
        part, _ = _fit_odd(radii[side], shifts[side], weights[side])
        value = float(profile_at((part[0], part[1]), np.array(CHECK_RADIUS)))
        if value * whole <= 0 or abs(value) < SIDE_AGREEMENT * abs(whole):
            return None
        sides += 1
    return coef if sides >= 3 else None


def estimate_tca(rgb: np.ndarray) -> TcaFit:
    """Measure the radial displacement of red and blue against green (module notes).

    Parameters
    ----------
    rgb : ndarray, float32, (H, W, 3)
        Linear RGB (camera or white balanced), not clipped.
    """
    h, w = rgb.shape[:2]
    centre = ((h - 1) / 2.0, (w - 1) / 2.0)
    r_corner = math.hypot(h / 2.0, w / 2.0)
    blocks = _pick_blocks(rgb[..., 1], centre, r_corner)
    size = BLOCK + 2 * MARGIN
    greens = [_encode(rgb[t - MARGIN:t - MARGIN + size, l - MARGIN:l - MARGIN + size, 1])
              for t, l in blocks]
    fits: list[Coeffs | None] = []
    counts: list[int] = []
    for channel in (0, 2):
        total = np.zeros(2)
        used, consistent = 0, False
        for _ in range(ROUNDS):
            radii, angles, shifts, weights = [], [], [], []
            for (top, left), green in zip(blocks, greens):
                if np.any(total):
                    window = _warp_window(rgb[..., channel], top - MARGIN, left - MARGIN,
                                          size, (float(total[0]), float(total[1])), centre,
                                          r_corner)
                else:  # the first round measures the image as it is
                    window = rgb[top - MARGIN:top - MARGIN + size,
                                 left - MARGIN:left - MARGIN + size, channel]
                cy, cx = top + BLOCK / 2 - 0.5 - centre[0], left + BLOCK / 2 - 0.5 - centre[1]
                r = math.hypot(cy, cx)
                found = _block_shift(_encode(window), green, cy / r, cx / r) if r > 1 else None
                if found is not None:
                    radii.append(r / r_corner)
                    angles.append(math.atan2(cy, cx))
                    shifts.append(found[0])
                    weights.append(found[1])
            used = len(radii)
            if used < MIN_BLOCKS:
                break
            arrays = [np.array(v) for v in (radii, angles, shifts, weights)]
            if not consistent:  # the first round decides whether there is a fringe
                step = _consistent(*arrays)
                consistent = step is not None
                if step is None:
                    break
            else:
                step, _ = _fit_odd(arrays[0], arrays[2], arrays[3])
            total = total + step
        fits.append((float(total[0]), float(total[1])) if consistent and used >= MIN_BLOCKS
                    else None)
        counts.append(used)
    return TcaFit(centre, r_corner, fits[0], fits[1], (counts[0], counts[1]))


def _sites(pattern: str) -> dict[str, list[tuple[int, int]]]:
    """(row, column) offsets in the 2 x 2 cell of each colour of a Bayer ``pattern``."""
    return {c: [(i // 2, i % 2) for i, p in enumerate(pattern) if p == c] for c in "RGB"}


def _check_pattern(pattern: str) -> None:
    greens = {i for i, c in enumerate(pattern) if c == "G"}
    if sorted(pattern) != ["B", "G", "G", "R"] or greens not in ({0, 3}, {1, 2}):
        raise ValueError(f"not a Bayer pattern: {pattern!r}")


def half_rgb(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Half-resolution RGB of a Bayer mosaic, every colour at the 2 x 2 cell's centre.

    Green is the mean of the cell's two greens (which lie symmetrically about the centre);
    red and blue are moved there from their corner by bilinear interpolation. Good enough
    to measure misregistration, not to look at.
    """
    from scipy import ndimage

    _check_pattern(pattern)
    sites = _sites(pattern)
    rows, cols = mosaic.shape[0] // 2 * 2, mosaic.shape[1] // 2 * 2
    cut = np.asarray(mosaic[:rows, :cols], dtype=np.float32)
    half = np.empty((rows // 2, cols // 2, 3), dtype=np.float32)

    def plane(colours: slice) -> None:  # one colour per strip: the three over the cores
        for channel in range(colours.start, colours.stop):
            colour = "RGB"[channel]
            if colour == "G":
                (y1, x1), (y2, x2) = sites["G"]
                half[..., channel] = 0.5 * (cut[y1::2, x1::2] + cut[y2::2, x2::2])
                continue
            (y, x), = sites[colour]
            # The sample of cell (i, j) sits at 2i + y; the centre at 2i + 0.5: half-res
            # offset (y - 0.5) / 2, i.e. the centre value is the plane at i + (0.5 - y) / 2.
            half[..., channel] = ndimage.shift(cut[y::2, x::2], ((y - 0.5) / 2, (x - 0.5) / 2),
                                               order=1, mode="nearest")

    for_each_strip(3, plane, strip_rows=1)
    return half


def estimate_mosaic_tca(mosaic: np.ndarray, pattern: str) -> TcaFit:
    """:func:`estimate_tca` of a Bayer mosaic (normalised, not white balanced), in the
    mosaic's pixels: measured on :func:`half_rgb`, displacements doubled."""
    half = estimate_tca(half_rgb(mosaic, pattern))
    h, w = mosaic.shape[:2]
    return TcaFit(
        centre=((h - 1) / 2.0, (w - 1) / 2.0), r_corner=math.hypot(h / 2.0, w / 2.0),
        red=None if half.red is None else (2.0 * half.red[0], 2.0 * half.red[1]),
        blue=None if half.blue is None else (2.0 * half.blue[0], 2.0 * half.blue[1]),
        blocks=half.blocks,
    )


#: Radius (px from the centre) -> sampling gain: the corrected channel at p is the
#: captured one at ``centre + (p - centre) * gain``.
GainFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class RadialWarp:
    """How to realign red and blue with green; None for a channel left alone."""

    centre: tuple[float, float]
    red: GainFn | None
    blue: GainFn | None
    source: str = ""  # one line: where the displacement comes from

    @classmethod
    def from_fit(cls, fit: TcaFit) -> "RadialWarp":
        def gain(coeffs: Coeffs | None) -> GainFn | None:
            if coeffs is None:
                return None
            return lambda r: 1.0 + profile_at(coeffs, r / fit.r_corner) / np.maximum(r, 1e-6)

        return cls(fit.centre, gain(fit.red), gain(fit.blue), f"measured: {fit.describe()}")


def correct_mosaic(mosaic: np.ndarray, pattern: str, warp: RadialWarp) -> np.ndarray:
    """The mosaic with its red and blue samples resampled by ``warp`` (module notes); a new
    float32 array. Each colour's samples are interpolated from that colour's own plane
    (cubic splines), strip by strip of plane rows, so memory stays at a strip's."""
    from scipy import ndimage

    _check_pattern(pattern)
    image = np.asarray(mosaic, dtype=np.float32)
    out = image.copy()
    sites = _sites(pattern)
    cy, cx = warp.centre
    for colour, gain in (("R", warp.red), ("B", warp.blue)):
        if gain is None:
            continue
        (y, x), = sites[colour]
        plane, target = image[y::2, x::2], out[y::2, x::2]
        xs = (np.arange(plane.shape[1]) * 2.0 + x - cx)[None, :]

        def resample(rows: slice) -> None:  # called within this iteration only
            ys = (np.arange(rows.start, rows.stop) * 2.0 + y - cy)[:, None]
            g = gain(np.hypot(ys, xs))
            src_y = (cy + ys * g - y) / 2.0  # in plane rows
            src_x = (cx + xs * g - x) / 2.0
            low = max(0, int(np.floor(src_y.min())) - _SPLINE_MARGIN)
            high = min(plane.shape[0], int(np.ceil(src_y.max())) + _SPLINE_MARGIN + 1)
            coeffs = ndimage.spline_filter(plane[low:high], order=3, output=np.float32,
                                           mode="mirror")
            coords = np.stack([src_y - low, src_x]).astype(np.float32)
            target[rows] = ndimage.map_coordinates(coeffs, coords, order=3, mode="mirror",
                                                   prefilter=False)

        # Strips read ``image`` and write their own rows of ``out``: shared over the cores.
        for_each_strip(plane.shape[0], resample, strip_rows=_STRIP_ROWS)
    return out


# --------------------------------------------------------------------------- the stage


def profile_warp(raw: "RawFrame", shape: tuple[int, ...]) -> tuple[RadialWarp | None, str]:
    """The lensfun profile's TCA for this frame's camera, lens and focal length on a mosaic
    of ``shape``, or None and why not (one line)."""
    from nnip.develop.lens import _geometry, _tca_factor, find_lens_profile, profile_correction

    profile, reason = find_lens_profile(raw.make, raw.model, raw.lens, raw.focal_length)
    if profile is None:
        return None, reason
    if not raw.focal_length:
        return None, "no focal length in EXIF"
    correction = profile_correction(profile, raw.focal_length, raw.fnumber,
                                    distortion=False, vignetting=False)
    if correction.tca is None:
        return None, f"the profile of {profile.describe()} has no TCA data"
    height, width = shape[:2]
    cx, cy, n = _geometry(height, width, correction)
    model, terms = correction.tca

    def gain(channel: int) -> GainFn:
        return lambda r: _tca_factor((r / n).astype(np.float32), model, terms, channel)

    return RadialWarp((cy, cx), gain(0), gain(2),
                      f"lateral CA: lensfun profile of {profile.describe()}"), ""


@dataclass(frozen=True, eq=False)
class LateralCA:
    """The pipeline's lateral-CA stage, on the Bayer mosaic before demosaicking.

    Part of ``--lens`` (:data:`nnip.develop.lens.LENS_MODES`): ``off`` disables it (the
    pipeline is then exactly the one without it); ``profile`` and ``auto`` (the default) use
    a matched lensfun profile's TCA and do nothing without one (``profile`` says why, in
    the lens stage); ``deblur`` measures the CA in the image (:func:`estimate_mosaic_tca`).

    Why the default does not measure: on CA-free renderings the estimator still found
    0.3-0.4 px at the corner in 2 of 24 Kodak images (saturated hats), and on real photos
    up to 1.9 px whose truth is unknown; a wrong correction draws the fringes it means to
    remove, so the measured path is opt-in. Non-Bayer sensors (X-Trans, linear DNG) are
    left alone: their demosaic is LibRaw's.
    """

    requested: str = "off"
    name: str = "lateral-ca"

    def __post_init__(self) -> None:
        from nnip.develop.lens import parse_lens

        object.__setattr__(self, "requested", parse_lens(self.requested))

    @property
    def enabled(self) -> bool:
        return self.requested != "off"

    def describe(self) -> str:
        how = {"profile": "from the lensfun profile", "deblur": "measured in the image",
               "auto": "from the lensfun profile"}
        if not self.enabled:
            return "lateral-ca: off"
        return f"lateral-ca: {how[self.requested]}, on the mosaic"

    def apply(self, frame: "DevelopFrame") -> "DevelopFrame":
        if frame.space != "mosaic":
            raise RuntimeError(f"stage {self.name} expects mosaic pixels, got {frame.space!r}")
        raw = frame.raw
        if not raw.is_bayer or frame.pixels.ndim != 2:
            return frame
        if self.requested == "deblur":
            fit = estimate_mosaic_tca(frame.pixels, raw.pattern)
            if not fit.needed:
                return frame.replace(lateral_ca=f"{fit.describe()}: nothing to correct")
            warp: RadialWarp | None = RadialWarp.from_fit(fit)
        else:  # auto, profile: the lensfun profile's TCA, or nothing (class notes)
            warp, _ = profile_warp(raw, frame.pixels.shape)
        if warp is None:
            return frame
        return frame.replace(pixels=correct_mosaic(frame.pixels, raw.pattern, warp),
                             lateral_ca=warp.source)
