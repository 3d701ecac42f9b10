"""Synthetic hard cases for training: what real photos rarely show but demosaicers and
upscalers get wrong (moire, zippering, colour fringes, blown light sources).

Every pattern is rendered in linear light, anti-aliased (analytic band-limited sinusoids,
or 4x supersampling and area integration for hard edges), and returned sRGB-encoded, like
a teacher photo. Values stay in [0, 1] except for the ``"lights"`` kind, whose light
sources and speculars are brighter than diffuse white and are encoded with the extended
sRGB curve (:func:`~nnip.simulate.color.linear_to_srgb` continued above 1): clip them for
an upscaling teacher, or let the sensor model clip them (blown highlights) for a RAW pair.
"""

from __future__ import annotations

import colorsys
import math
from typing import Callable

import numpy as np
from scipy import ndimage

from nnip.simulate.color import linear_to_srgb, srgb_to_linear

__all__ = ["KINDS", "random_pattern"]

#: Pattern kinds accepted by :func:`random_pattern`.
KINDS = ("stripes", "zoneplate", "diagonal", "fabric", "color_edges", "text", "skin", "lights")

_SUPERSAMPLE = 4


def _coords(size: int, ss: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-unit (y, x) grids of ``size * ss`` samples per axis at sub-pixel centres."""
    u = (np.arange(size * ss) + 0.5) / ss - 0.5
    return np.meshgrid(u, u, indexing="ij")


def _area(fine: np.ndarray, ss: int) -> np.ndarray:
    """Integrate ``ss x ss`` sub-samples into pixels (anti-aliasing of hard edges)."""
    n = fine.shape[0] // ss
    return fine.reshape(n, ss, n, ss, *fine.shape[2:]).mean(axis=(1, 3))


def _colour(rng: np.random.Generator, saturated: bool = False) -> np.ndarray:
    """A random colour in linear RGB; ``saturated`` gives fully saturated hues."""
    if saturated:
        rgb = colorsys.hsv_to_rgb(rng.uniform(), 1.0, rng.uniform(0.6, 1.0))
    else:
        rgb = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.0, 0.8), rng.uniform(0.05, 1.0))
    return srgb_to_linear(np.array(rgb, dtype=np.float64))


def _blend(c1: np.ndarray, c2: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Mix two linear colours with weight map ``t`` in [0, 1] -> (H, W, 3)."""
    return c1 + (c2 - c1) * t[..., None]


def _contrasting(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random linear colours at least ~2 stops apart in luminance (visible patterns)."""
    light = _colour(rng)
    dark = _colour(rng)
    light = light / max(float(light.max()), 1e-6) * rng.uniform(0.5, 1.0)
    dark = dark / max(float(dark.max()), 1e-6) * rng.uniform(0.0, 0.12)
    return light, dark


def _stripes(size: int, rng: np.random.Generator) -> np.ndarray:
    """Sinusoidal gratings near Nyquist (0.25 to 0.48 cycles/px), one or two, any angle."""
    y, x = _coords(size)
    t = np.zeros((size, size))
    count = int(rng.integers(1, 3))
    for _ in range(count):
        theta = rng.uniform(0.0, math.pi)
        u = x * math.cos(theta) + y * math.sin(theta)
        if rng.uniform() < 0.3:  # chirp: frequency rising across the patch, up to 0.49
            f0 = rng.uniform(0.1, 0.3)
            phase = 2 * math.pi * (f0 * u + (0.49 - f0) * (u - u.min()) ** 2 / (2 * np.ptp(u)))
        else:
            phase = 2 * math.pi * rng.uniform(0.25, 0.48) * u + rng.uniform(0, 2 * math.pi)
        t += (0.5 + 0.5 * np.cos(phase)) / count
    return _blend(*_contrasting(rng), t)


def _zoneplate(size: int, rng: np.random.Generator) -> np.ndarray:
    """Circular zone plate ``cos(pi k r^2)``: every frequency and angle up to ~Nyquist."""
    y, x = _coords(size)
    cy, cx = rng.uniform(0, size, size=2)
    r2 = (y - cy) ** 2 + (x - cx) ** 2
    fmax = rng.uniform(0.35, 0.49)  # local frequency k r at the farthest pixel
    k = fmax / math.sqrt(r2.max())
    return _blend(*_contrasting(rng), 0.5 + 0.5 * np.cos(math.pi * k * r2))


def _diagonal(size: int, rng: np.random.Generator) -> np.ndarray:
    """Sharp straight edges and thin bars (1 to 4 px) at near-diagonal and random angles."""
    ss = _SUPERSAMPLE
    y, x = _coords(size, ss)
    base = np.broadcast_to(_colour(rng), (size * ss, size * ss, 3)).copy()
    for _ in range(int(rng.integers(2, 6))):
        if rng.uniform() < 0.7:  # mostly near the diagonals, where zippering shows most
            angle = rng.choice([math.pi / 4, 3 * math.pi / 4]) + rng.normal(0, 0.25)
        else:
            angle = rng.uniform(0, math.pi)
        u = x * math.cos(angle) + y * math.sin(angle)
        u = u - rng.uniform(u.min(), u.max())  # the edge or bar group crosses the patch
        if rng.uniform() < 0.5:
            mask = u > 0  # a half-plane edge
        else:
            width, gap = rng.uniform(1.0, 4.0), rng.uniform(1.0, 6.0)
            mask = (np.mod(u, width + gap) < width) & (np.abs(u) < rng.uniform(8, size))
        base[mask] = _colour(rng)
    return _area(base, ss)


def _fabric(size: int, rng: np.random.Generator) -> np.ndarray:
    """Woven texture: crossed warp and weft sinusoids interlaced at half their frequency."""
    y, x = _coords(size)
    theta = rng.uniform(0, math.pi)
    u = x * math.cos(theta) + y * math.sin(theta)
    v = -x * math.sin(theta) + y * math.cos(theta)
    f1, f2 = rng.uniform(0.12, 0.45, size=2)
    warp = 0.5 + 0.5 * np.cos(2 * math.pi * f1 * u)
    weft = 0.5 + 0.5 * np.cos(2 * math.pi * f2 * v)
    over = 0.5 + 0.5 * np.sin(math.pi * f1 * u) * np.sin(math.pi * f2 * v)  # which thread is on top
    t = warp * over + weft * (1 - over)
    colour_a, colour_b = _contrasting(rng)
    drift = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 6.0)
    drift = 1.0 + 0.3 * drift / (np.abs(drift).max() + 1e-9)
    return _blend(colour_a, colour_b, t) * drift[..., None]


def _color_edges(size: int, rng: np.random.Generator) -> np.ndarray:
    """Regions of saturated colours meeting at sharp edges (a Voronoi partition)."""
    ss = _SUPERSAMPLE
    y, x = _coords(size, ss)
    n = int(rng.integers(4, 16))
    seeds = rng.uniform(0, size, size=(n, 2))
    colours = np.stack([_colour(rng, saturated=rng.uniform() < 0.8) for _ in range(n)])
    d2 = (y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2
    return _area(colours[np.argmin(d2, axis=-1)], ss)


def _segment_distance(y: np.ndarray, x: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (px) from each pixel to the segment p0-p1 (points as (y, x))."""
    d = p1 - p0
    t = np.clip(((y - p0[0]) * d[0] + (x - p0[1]) * d[1]) / max(float(d @ d), 1e-9), 0.0, 1.0)
    return np.hypot(y - (p0[0] + t * d[0]), x - (p0[1] + t * d[1]))


def _text(size: int, rng: np.random.Generator) -> np.ndarray:
    """Text-like strokes: thin straight segments and arcs, dark on light (or the reverse)."""
    y, x = _coords(size)
    paper, ink = _colour(rng), _colour(rng)
    if rng.uniform() < 0.8:  # mostly dark ink on light paper
        paper, ink = np.maximum(paper, 0.6), np.minimum(ink, 0.05)
    cover = np.zeros((size, size))
    for _ in range(int(rng.integers(10, 40))):
        width = rng.uniform(0.8, 3.0)
        if rng.uniform() < 0.6:
            p0 = rng.uniform(0, size, 2)
            p1 = p0 + rng.normal(0, size / 8, 2)
            dist = _segment_distance(y, x, p0, p1)
        else:
            c = rng.uniform(0, size, 2)
            radius = rng.uniform(2, size / 6)
            a0 = rng.uniform(0, 2 * math.pi)
            ang = np.mod(np.arctan2(y - c[0], x - c[1]) - a0, 2 * math.pi)
            ring = np.abs(np.hypot(y - c[0], x - c[1]) - radius)
            dist = np.where(ang < rng.uniform(1.0, 2 * math.pi), ring, np.inf)
        # area coverage of a stroke of this width by a pixel, with a 1-px linear ramp
        cover = np.maximum(cover, np.clip(width / 2 - dist + 0.5, 0.0, 1.0))
    return _blend(paper, ink, cover)


def _skin(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth skin-like gradients: slow tone changes, soft shading, a faint pore texture."""
    tone = srgb_to_linear(np.clip(np.array([0.85, 0.64, 0.54]) + rng.normal(0, 0.06, 3), 0.05, 1.0))
    shade = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 5.0)
    shade = 0.75 + 0.25 * shade / (np.abs(shade).max() + 1e-9)
    y, x = _coords(size)
    gy, gx = rng.normal(0, 0.3, 2) / size
    ramp = 1.0 + gy * (y - size / 2) + gx * (x - size / 2)
    pores = ndimage.gaussian_filter(rng.normal(size=(size, size)), 0.8) * 0.02
    red = ndimage.gaussian_filter(rng.normal(size=(size, size)), size / 10.0)
    blush = np.stack([1 + 0.05 * red, 1 - 0.02 * red, 1 - 0.02 * red], axis=-1)
    return tone * blush * (shade * ramp * (1 + pores))[..., None]


def _lights(size: int, rng: np.random.Generator) -> np.ndarray:
    """Night scene: dark background, point and line light sources, specular highlights (> 1)."""
    y, x = _coords(size)
    background = _colour(rng) * rng.uniform(0.005, 0.08)
    texture = 1.0 + 0.5 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 3.0)
    img = background * np.clip(texture, 0.2, None)[..., None]
    for _ in range(int(rng.integers(3, 25))):  # point sources: Gaussian spots, 2 to 50 x white
        cy, cx = rng.uniform(0, size, 2)
        sigma = rng.uniform(0.5, 2.0)
        spot = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))
        img += spot[..., None] * (_colour(rng) + 0.3) * rng.uniform(2.0, 50.0)
    for _ in range(int(rng.integers(0, 4))):  # line lights (neon, windows): 1 to 2 px wide
        p0, p1 = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        dist = _segment_distance(y, x, p0, p1)
        line = np.exp(-(dist**2) / (2 * rng.uniform(0.5, 1.0) ** 2))
        img += line[..., None] * (_colour(rng) + 0.3) * rng.uniform(2.0, 10.0)
    for _ in range(int(rng.integers(0, 4))):  # specular highlights: small bright ellipses
        cy, cx = rng.uniform(0, size, 2)
        a, b = rng.uniform(1.0, 6.0, 2)
        theta = rng.uniform(0, math.pi)
        u = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
        v = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
        img += np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))[..., None] * rng.uniform(1.5, 8.0)
    return img


_RENDER: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "stripes": _stripes,
    "zoneplate": _zoneplate,
    "diagonal": _diagonal,
    "fabric": _fabric,
    "color_edges": _color_edges,
    "text": _text,
    "skin": _skin,
    "lights": _lights,
}


def random_pattern(kind: str | None, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render one synthetic hard patch.

    Parameters
    ----------
    kind : str or None
        One of :data:`KINDS`; ``None`` picks one at random.
    size : int
        Side of the square patch in pixels (>= 8).
    rng : numpy.random.Generator
        Source of every random choice (same seed, same patch).

    Returns
    -------
    ndarray, (size, size, 3), float32
        sRGB-encoded, >= 0; <= 1 except for ``"lights"`` (extended sRGB above 1).
    """
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind not in _RENDER:
        raise ValueError(f"unknown pattern kind {kind!r}; allowed: {', '.join(KINDS)}")
    if size < 8:
        raise ValueError(f"pattern size must be >= 8, got {size}")
    linear = np.clip(_RENDER[kind](int(size), rng), 0.0, None)
    if kind != "lights":
        linear = np.clip(linear, 0.0, 1.0)
    return linear_to_srgb(linear.astype(np.float32))
