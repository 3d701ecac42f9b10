"""Where a frame's raw noise parameters (a, b) come from.

The noise model is the DNG ``NoiseProfile`` one: a raw value x in white-level units (black
subtracted, divided by ``white - black``, not white balanced) has noise variance
``a * x + b``. ``a`` is the signal of one photo-electron (shot noise), ``b`` the
signal-independent variance (read noise, quantisation). Both are the same for every colour
plane of a sensor, because they are properties of the pixels and the ADC, not of the filter.

Sources, in order (:func:`noise_params`):

1. ``dng-noiseprofile``: the DNG NoiseProfile tag (:attr:`RawFrame.noise_profile`), when
   it passes :func:`check_noise_profile` (finite, ``a > 0``, ``b >= 0``, not absurd);
   otherwise it is ignored with a one-line notice and the next source is tried.
2. ``estimated``: measured on the image itself by :func:`estimate_noise` (below), with ``b``
   taken from the optical-black margins when LibRaw exposes them
   (:func:`optical_black_variance`).
3. ``iso-prior``: :func:`iso_prior`, a typical sensor at the EXIF ISO.

The estimator (in the spirit of Foi et al. 2008, "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data"): each of the four Bayer planes is cut into
``block x block`` blocks (32, or 16 on small frames; at most 600 block positions on a grid
over the frame, so it costs ~0.3 s at any size). In a block the noise variance is the mean
square of the diagonal Haar detail of 2x2 cells ``(p00 - p01 - p10 + p11) / 2``: zero on any
signal linear in x and y, and exactly the block's mean noise variance, so ``a * mean + b``
holds even where the signal varies inside the block. A block is rejected

- when it touches a clipped value (a pile of pixels at the data's minimum or maximum);
- by a spectral test: the Haar detail and the second differences along rows, columns and
  both diagonals (each blind to linear ramps, each with the noise's variance after dividing
  by 6) pass different parts of the spectrum and agree for white noise; a block where they
  disagree by more than :data:`SPREAD_LIMIT` holds structure (stripes, edges, checkerboard
  aliasing);
- by a colour-plane correlation test: noise is independent between the four planes, scene
  detail is not (it has a luminance part); a block whose detail coefficients correlate
  between planes beyond what noise allows (:data:`CORRELATION_MAX` for the worst pair,
  :data:`CORRELATION_MEAN` on average) is textured. This is what catches fine, isotropic,
  noise-like texture (fabric, pores, foliage) the spectral test cannot.

The accepted blocks are sorted by their mean into bins of equal count; each bin gives the
median of its variances (de-biased for the chi-square median); ``var = a * mean + b`` is
fitted by weighted least squares (weights count / variance^2, iterated; ``b`` held at 0 if
the free fit goes below); blocks far above the fit (texture the tests missed) are dropped and
the fit is repeated. With an optical-black variance, ``b`` is fixed to it and only ``a`` is
fitted. Measured on simulated 1024 x 1024 frames with every cell a hard pattern, ISO 100 to
25600 and three sensor models: within 15 % for a and b (tests/develop/test_noise.py).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from nnip.raw.frame import RawFrame

__all__ = [
    "SOURCES",
    "NoiseParams",
    "NoiseFit",
    "check_noise_profile",
    "estimate_noise",
    "margin_variance",
    "optical_black_variance",
    "iso_prior",
    "noise_params",
]

#: Where :class:`NoiseParams` can come from, in the order they are tried.
SOURCES = ("dng-noiseprofile", "estimated", "iso-prior")

_SOURCE_TEXT = {
    "dng-noiseprofile": "the DNG NoiseProfile",
    "estimated": "estimated from the image",
    "iso-prior": "a typical sensor at the EXIF ISO",
}

# Bounds outside which a NoiseProfile is not a real sensor's. a is the signal of one
# photo-electron in white-level units: 0.1 means 10 electrons fill the sensor (ISO 200000 on
# a small sensor is about 0.03); 1e-7 means 10 million (no sensor has that). b = 0.01 is a
# read noise of 10 % of white.
_A_RANGE = (1e-7, 0.1)
_B_MAX = 0.01
# Texture tests (per block of (block/2)^2 Haar coefficients). For pure noise, at 16 x 16
# blocks: the largest over the five detail measures of (variance / variance) stays under 2.0,
# the largest |correlation| between two planes (6 pairs x 5 measures) under 0.45, and the
# mean correlation under 0.1, each in 99.8 % of blocks (measured on white noise; 99.7 % pass
# all three). Their spreads shrink as 1 / block, so the limits are scaled from 16. Textured
# blocks of the simulator's patterns sit at correlations of 0.5 to 0.97.
_LIMITS_BLOCK = 16
SPREAD_LIMIT = 2.0
CORRELATION_MAX = 0.45
CORRELATION_MEAN = 0.1
_ISO_ASSUMED = 400.0  # when the file has no ISO at all
_ISO_LIMITS = (50.0, 204800.0)  # the simulator's sensor models' range


@dataclass(frozen=True)
class NoiseParams:
    """Raw noise ``variance = a * x + b`` (x in white-level units) and where it came from.

    Attributes
    ----------
    a : float
        Shot-noise scale, > 0 (white-level units per photo-electron).
    b : float
        Signal-independent variance, >= 0.
    source : str
        One of :data:`SOURCES`.
    """

    a: float
    b: float
    source: str

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"noise source {self.source!r} is not one of {', '.join(SOURCES)}")
        if not (math.isfinite(self.a) and math.isfinite(self.b)) or self.a < 0 or self.b < 0:
            raise ValueError(
                f"noise parameters must be finite and >= 0, got a={self.a}, b={self.b}")

    def variance(self, x: np.ndarray) -> np.ndarray:
        """Noise variance at signal ``x`` (white-level units); the shot part is 0 below 0."""
        return self.a * np.clip(x, 0.0, None) + self.b

    def std(self, x: np.ndarray) -> np.ndarray:
        """Noise standard deviation at signal ``x``."""
        return np.sqrt(self.variance(x))

    def describe(self) -> str:
        """One line for ``--verbose``, with the noise at black and at 18 % grey in % of white."""
        return (f"noise: a={self.a:.3g} b={self.b:.3g} (sigma {100 * math.sqrt(self.b):.3g} % "
                f"of white at black, {100 * float(self.std(0.18)):.3g} % at 18 % grey; "
                f"{_SOURCE_TEXT[self.source]})")

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "source": self.source}


@dataclass(frozen=True)
class NoiseFit:
    """What :func:`estimate_noise` found.

    Attributes
    ----------
    a, b : float
        The fitted model (``b`` is the optical-black value when one was given).
    blocks : int
        Blocks that entered the final fit.
    levels : (float, float)
        Lowest and highest bin level fitted (white-level units).
    b_from : str
        ``"fit"`` or ``"optical-black"``.
    """

    a: float
    b: float
    blocks: int
    levels: tuple[float, float]
    b_from: str = "fit"


# --------------------------------------------------------------------------- NoiseProfile


def check_noise_profile(profile: tuple[float, float] | None) -> str | None:
    """Why a NoiseProfile (a, b) cannot be used, or None when it can.

    Returns
    -------
    str or None
        A short reason (``"a is negative"``, ``"b is NaN"``, ...), or None.
    """
    if profile is None:
        return "there is none"
    a, b = (float(v) for v in profile)
    for name, value in (("a", a), ("b", b)):
        if math.isnan(value):
            return f"{name} is NaN"
        if math.isinf(value):
            return f"{name} is infinite"
        if value < 0:
            return f"{name} is negative"
    if a == 0:
        return "a is 0 (no shot noise)"
    if not _A_RANGE[0] <= a <= _A_RANGE[1]:
        return f"a={a:.3g} is outside the range of real sensors ({_A_RANGE[0]:g}..{_A_RANGE[1]:g})"
    if b > _B_MAX:
        return f"b={b:.3g} is larger than any real sensor's (<= {_B_MAX:g})"
    return None


# --------------------------------------------------------------------------- estimator


def _blocks(mosaic: np.ndarray, block: int, max_positions: int) -> np.ndarray:
    """The four colour planes cut into blocks: float32 (4, by, bx, block, block).

    Plane k is the CFA position (k // 2, k % 2) of every 2x2 cell (any Bayer phase). On
    large frames only a regular grid of at most ``max_positions`` block positions, spread
    over the whole frame, is taken (the estimate needs a few thousand blocks, not all).
    """
    m = np.asarray(mosaic)
    by, bx = m.shape[0] // 2 // block, m.shape[1] // 2 // block
    step = max(1, math.ceil(math.sqrt(by * bx / max_positions)))
    rows = (np.arange(0, by, step)[:, None] * block + np.arange(block)).ravel()
    cols = (np.arange(0, bx, step)[:, None] * block + np.arange(block)).ravel()
    planes = np.stack([m[dy::2, dx::2][np.ix_(rows, cols)] for dy in (0, 1) for dx in (0, 1)])
    ny, nx = rows.size // block, cols.size // block
    blocks = planes.astype(np.float32).reshape(4, ny, block, nx, block)
    return blocks.transpose(0, 1, 3, 2, 4)


def _block_stats(p: np.ndarray) -> dict[str, np.ndarray]:
    """Per block of :func:`_blocks`: mean, extremes, noise and texture measures.

    Every array returned has shape (4 * blocks,), plane-major. ``corr`` is per block
    position (repeated for the four planes): the largest absolute correlation between two
    planes of their Haar or second-difference coefficients.
    """
    haar = (p[..., 0::2, 0::2] - p[..., 0::2, 1::2] - p[..., 1::2, 0::2] + p[..., 1::2, 1::2]) / 2
    # Second differences along the rows, columns and both diagonals: blind to linear ramps
    # like the Haar detail, but each passes a different part of the spectrum; for white
    # noise each has the noise variance times 1 + 4 + 1 = 6.
    seconds = (
        p[..., :, :-2] - 2 * p[..., :, 1:-1] + p[..., :, 2:],
        p[..., :-2, :] - 2 * p[..., 1:-1, :] + p[..., 2:, :],
        p[..., :-2, :-2] - 2 * p[..., 1:-1, 1:-1] + p[..., 2:, 2:],
        p[..., :-2, 2:] - 2 * p[..., 1:-1, 1:-1] + p[..., 2:, :-2],
    )
    var = (haar**2).mean(axis=(3, 4))
    others = np.stack([(d**2).mean(axis=(3, 4)) / 6 for d in seconds])
    spread = np.maximum(others.max(axis=0), var) / np.maximum(np.minimum(others.min(axis=0), var),
                                                            1e-30)
    pairs = [_cross_correlations(c) for c in (haar,) + seconds]
    corr = np.max([np.abs(c).max(axis=0) for c in pairs], axis=0)
    corr_mean = np.mean([c.mean(axis=0) for c in pairs], axis=0)
    return {
        "mean": p.mean(axis=(3, 4)).ravel(),
        "low": p.min(axis=(3, 4)).ravel(),
        "high": p.max(axis=(3, 4)).ravel(),
        "var": var.ravel(),
        "spread": spread.ravel(),
        "corr": np.broadcast_to(corr, (4,) + corr.shape).ravel(),
        "corr_mean": np.broadcast_to(corr_mean, (4,) + corr.shape).ravel(),
    }


def _cross_correlations(coefficients: np.ndarray) -> np.ndarray:
    """Correlation of every plane pair, per block: (4, by, bx, r, c) -> (6, by, bx).

    Noise is independent between the colour planes; scene structure is not (even colour
    detail has a luminance part), so this is the texture test that also catches fine,
    isotropic, noise-like texture (fabric, foliage) the spectral test cannot.
    """
    energy = np.sqrt((coefficients**2).sum(axis=(3, 4)))
    out = []
    for i in range(4):
        for j in range(i + 1, 4):
            cross = (coefficients[i] * coefficients[j]).sum(axis=(2, 3))
            out.append(cross / np.maximum(energy[i] * energy[j], 1e-30))
    return np.stack(out)


def _clip_values(mosaic: np.ndarray) -> tuple[float, float]:
    """Values at which the data is clipped (the extremes, when many pixels sit exactly there).

    A raw file clips noise below black at raw 0 and highlights at the white level; both show
    up as a pile of identical values at an extreme. Where there is no pile, the extreme is a
    noise sample and nothing is clipped (returned as -inf / +inf).
    """
    flat = np.asarray(mosaic).ravel()
    low, high = float(flat.min()), float(flat.max())
    pile = max(4, flat.size // 20000)
    clip_low = low if np.count_nonzero(flat == low) >= pile else -math.inf
    clip_high = high if np.count_nonzero(flat == high) >= pile else math.inf
    return clip_low, clip_high


def _median_bias(dof: int) -> float:
    """Median of chi2(dof) / dof (Wilson-Hilferty), to de-bias a median of variances."""
    return (1.0 - 2.0 / (9.0 * dof)) ** 3


def _binned(x: np.ndarray, v: np.ndarray, dof: int, per_bin: int) -> tuple[np.ndarray, ...]:
    """Equal-count bins of the blocks by level: median level, de-biased median variance, count."""
    order = np.argsort(x)
    bins = max(1, min(40, x.size // per_bin))
    groups = np.array_split(order, bins)
    level = np.array([np.median(x[g]) for g in groups])
    var = np.array([np.median(v[g]) for g in groups]) / _median_bias(dof)
    count = np.array([g.size for g in groups], dtype=np.float64)
    return level, var, count


def _wls(level: np.ndarray, var: np.ndarray, count: np.ndarray,
         fixed_b: float | None) -> tuple[float, float]:
    """Fit var = a * level + b, weights count / var_model^2 (iterated); a, b >= 0."""
    weights = count / np.maximum(var, 1e-30) ** 2
    a, b = 0.0, 0.0
    for _ in range(6):
        sw = np.sqrt(weights)
        if fixed_b is None:
            design = np.stack([level, np.ones_like(level)], axis=1) * sw[:, None]
            (a, b), *_ = np.linalg.lstsq(design, var * sw, rcond=None)
            if b < 0:  # below the resolution of the data: the line through the origin
                b = 0.0
                a = float(np.sum(weights * level * var) / max(np.sum(weights * level**2), 1e-30))
        else:
            b = fixed_b
            a = float(np.sum(weights * level * (var - b)) / max(np.sum(weights * level**2), 1e-30))
        a = max(float(a), 0.0)
        model = np.maximum(a * level + b, 1e-30)
        weights = count / model**2
    return float(a), float(b)


def estimate_noise(
    mosaic: np.ndarray,
    *,
    block: int | None = None,
    black_variance: float | None = None,
    min_blocks: int = 48,
    max_positions: int = 600,
) -> NoiseFit | None:
    """Estimate the raw noise (a, b) of a Bayer mosaic from the image itself.

    See the module notes for the method.

    Parameters
    ----------
    mosaic : ndarray, float, shape (H, W)
        Normalised mosaic (black subtracted, 1 = white level), not white balanced, not
        clipped by the caller (values clipped in the file are detected and avoided). Any
        Bayer phase.
    block : int, optional
        Block side in plane pixels (even, >= 8). By default 32 (256 Haar coefficients per
        block: texture tests twice as sensitive as with 16), then 16 when the image holds
        too few flat 32-blocks.
    black_variance : float, optional
        Noise variance of the optical-black pixels (white-level units); fixes ``b``.
    min_blocks : int
        Fewer accepted blocks than this, and no estimate is made.
    max_positions : int
        At most this many block positions (4 blocks each, one per plane) are measured, on a
        regular grid over the frame: about 0.3 s whatever the frame's size.

    Returns
    -------
    NoiseFit or None
        None when the image holds too few flat blocks, or too narrow a range of levels to
        tell ``a`` from ``b`` (and no optical-black variance fixes ``b``).
    """
    for size in (block,) if block is not None else (32, 16):
        if size < 8 or size % 2:
            raise ValueError(f"block must be even and >= 8, got {size}")
        fit = _estimate(mosaic, size, black_variance, min_blocks, max_positions)
        if fit is not None:
            return fit
    return None


def _estimate(
    mosaic: np.ndarray, block: int, black_variance: float | None, min_blocks: int,
    max_positions: int,
) -> NoiseFit | None:
    clip_low, clip_high = _clip_values(mosaic)
    data = _block_stats(_blocks(mosaic, block, max_positions))
    dof = (block // 2) ** 2
    # The texture tests' spreads for pure noise shrink as 1 / block (see the limits' note).
    shrink = _LIMITS_BLOCK / block
    flat = (
        (data["low"] > clip_low) & (data["high"] < clip_high)
        & (data["spread"] <= 1.0 + (SPREAD_LIMIT - 1.0) * shrink)
        & (data["corr"] <= CORRELATION_MAX * shrink)
        & (np.abs(data["corr_mean"]) <= CORRELATION_MEAN * shrink)
        & (data["var"] > 0)
    )
    x, v = data["mean"][flat].astype(np.float64), data["var"][flat].astype(np.float64)
    if x.size < min_blocks:
        return None
    per_bin = max(12, x.size // 40)
    a, b = _wls(*_binned(x, v, dof, per_bin), black_variance)
    # Drop blocks far above the fit (texture the tests missed; 4 sigma for pure noise), refit.
    keep = v <= np.maximum(a * x + b, 1e-30) * (1.0 + 4.0 * math.sqrt(2.0 / dof))
    x, v = x[keep], v[keep]
    if x.size < min_blocks:
        return None
    level, var, count = _binned(x, v, dof, per_bin)
    if black_variance is None and not _separable(level):
        return None
    a, b = _wls(level, var, count, black_variance)
    if a <= 0:
        return None
    return NoiseFit(a=a, b=b, blocks=int(x.size), levels=(float(level[0]), float(level[-1])),
                    b_from="fit" if black_variance is None else "optical-black")


def _separable(level: np.ndarray) -> bool:
    """Whether the levels spread enough to tell the slope a from the offset b."""
    if level.size < 3:
        return False
    low, high = float(level[0]), float(level[-1])
    return high > 0 and high - low > 0.5 * high


# --------------------------------------------------------------------------- optical black


def margin_variance(
    raw_image: np.ndarray,
    top: int,
    left: int,
    height: int,
    width: int,
    black_level: float,
    white_level: float,
    *,
    gap: int = 4,
    min_pixels: int = 2000,
) -> float | None:
    """Noise variance of the masked margins of a full raw frame, in white-level units.

    Parameters
    ----------
    raw_image : ndarray, uint16, shape (raw_height, raw_width)
        The whole sensor readout (rawpy's ``raw_image``), margins included.
    top, left, height, width : int
        The visible area inside it (rawpy's ``sizes``).
    black_level, white_level : float
        Raw units; ``white - black`` is the white-level unit.
    gap : int
        Margin columns/rows next to the visible area that are left out (they may see light).
    min_pixels : int
        Smaller margins give no estimate.

    Returns
    -------
    float or None
        ``(1.4826 MAD)^2 / (white - black)^2`` of the margin pixels (MAD: robust to hot
        pixels), or None when there is too little margin or it does not sit at the black
        level (then it is not optical black: some formats fill margins with other data).
    """
    data = np.asarray(raw_image)
    bottom, right = top + height, left + width
    pieces = []
    if left - gap > 0:
        pieces.append(data[top:bottom, : left - gap])
    if top - gap > 0:
        pieces.append(data[: top - gap, left:right])
    if data.shape[1] - right - gap > 0:
        pieces.append(data[top:bottom, right + gap:])
    if data.shape[0] - bottom - gap > 0:
        pieces.append(data[bottom + gap:, left:right])
    values = (np.concatenate([p.ravel() for p in pieces]).astype(np.float64) if pieces
              else np.empty(0))
    if values.size < min_pixels:
        return None
    centre = float(np.median(values))
    sigma = 1.4826 * float(np.median(np.abs(values - centre)))
    span = float(white_level) - float(black_level)
    if sigma <= 0 or span <= 0:
        return None
    # Optical black sits at the black level, within a few noise sigmas (and 1 % of the span).
    if abs(centre - float(black_level)) > max(5.0 * sigma, 0.01 * span):
        return None
    return sigma * sigma / (span * span)


def optical_black_variance(frame: "RawFrame") -> float | None:
    """:func:`margin_variance` of the frame's RAW file (None without a file or margins)."""
    if frame.path is None or not frame.is_bayer:
        return None
    import rawpy

    try:
        with rawpy.imread(os.fspath(frame.path)) as raw:
            sizes = raw.sizes
            if sizes.raw_height <= sizes.height and sizes.raw_width <= sizes.width:
                return None
            black = float(np.mean(frame.black_level_per_channel))
            return margin_variance(raw.raw_image, sizes.top_margin, sizes.left_margin,
                                   sizes.height, sizes.width, black, frame.white_level)
    except (rawpy.LibRawError, OSError):
        return None  # the frame was read already; a margin we cannot read is just absent


# --------------------------------------------------------------------------- prior


def iso_prior(iso: float, black_level: float = 0.0, white_level: float = 0.0) -> NoiseParams:
    """A typical sensor's noise at ``iso``: geometric mean of the simulator's sensor models.

    Parameters
    ----------
    iso : float
        ISO setting (clamped to 50..204800).
    black_level, white_level : float
        Raw units; when ``white_level > black_level`` the quantisation variance
        (1/12 DN^2) of such a raw is added to ``b``.
    """
    from nnip.simulate.sensor import SENSORS

    iso = min(max(float(iso), _ISO_LIMITS[0]), _ISO_LIMITS[1])
    models = [sensor.noise_model(iso) for sensor in SENSORS.values()]
    a = math.exp(np.mean([math.log(m.a) for m in models]))
    b = math.exp(np.mean([math.log(m.b) for m in models]))
    span = float(white_level) - float(black_level)
    if span > 0:
        b += 1.0 / (12.0 * span * span)
    return NoiseParams(a=a, b=b, source="iso-prior")


# --------------------------------------------------------------------------- the order


def noise_params(
    frame: "RawFrame", mosaic: np.ndarray | None = None
) -> tuple[NoiseParams, tuple[str, ...]]:
    """The frame's noise parameters, from the first source that works (module notes).

    Parameters
    ----------
    frame : RawFrame
        Levels, ISO, NoiseProfile, path (for the optical-black margins).
    mosaic : ndarray, float32, shape (H, W), optional
        The normalised mosaic (black subtracted, 1 = white); computed from ``frame`` when
        not given.

    Returns
    -------
    params : NoiseParams
    notices : tuple of str
        One line per source that was present but unusable (a bad NoiseProfile), and one
        when the ISO had to be assumed.
    """
    notices: list[str] = []
    if frame.noise_profile is not None:
        reason = check_noise_profile(frame.noise_profile)
        if reason is None:
            a, b = (float(v) for v in frame.noise_profile)
            return NoiseParams(a, b, "dng-noiseprofile"), ()
        notices.append(f"DNG NoiseProfile ignored ({reason}): noise estimated from the image")
    if mosaic is None:
        from nnip.develop.pipeline import normalise_mosaic

        mosaic = normalise_mosaic(frame)
    span = frame.white_level - float(np.mean(frame.black_level_per_channel))
    floor = 1.0 / (12.0 * span * span) if span > 0 else 0.0  # quantisation, at least
    if frame.is_bayer and mosaic.ndim == 2:
        fit = estimate_noise(mosaic, black_variance=optical_black_variance(frame))
        if fit is not None:
            return NoiseParams(fit.a, max(fit.b, floor), "estimated"), tuple(notices)
    iso = frame.iso
    if iso is None:
        iso = _ISO_ASSUMED
        notices.append(f"noise level: no flat areas to measure and no ISO in the file, "
                       f"ISO {_ISO_ASSUMED:g} assumed")
    black = float(np.mean(frame.black_level_per_channel))
    return iso_prior(iso, black, frame.white_level), tuple(notices)
