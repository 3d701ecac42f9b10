"""Colour side of the photography-process simulation: transfer curves, camera matrices, white.

Everything here works on linear or sRGB-encoded float arrays of shape ``(..., 3)``; matrices
act on the last axis (``rgb @ M.T``). The scene is described in linear sRGB (D65 white,
IEC 61966-2-1 primaries); a camera is described by its ``cam_from_xyz`` matrix, the DNG
``ColorMatrix`` convention (XYZ -> camera native RGB, D65 calibration illuminant), normalised
so that the D65 white of luminance Y = 1 gives a camera neutral whose largest channel is 1,
the way the Adobe DNG SDK normalises its matrices. With that scale, a diffuse white of
linear sRGB (1, 1, 1) exposed at 0 EV just reaches the sensor's white level in its most
sensitive (green) channel.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

import numpy as np

__all__ = [
    "XYZ_FROM_LINEAR_SRGB",
    "LINEAR_SRGB_FROM_XYZ",
    "D65_XY",
    "ADOBE_COLOR_MATRIX_D65",
    "srgb_to_linear",
    "linear_to_srgb",
    "xy_to_xyz",
    "cct_to_xy",
    "random_exposure",
    "normalize_camera_matrix",
    "camera_neutral",
    "camera_matrices",
    "random_camera_matrix",
    "illuminant_wb",
    "bradford_adaptation",
    "scene_to_camera",
]

#: Linear sRGB (D65) -> CIE XYZ, IEC 61966-2-1 (the matrix LibRaw and dcraw use as xyz_rgb).
XYZ_FROM_LINEAR_SRGB = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
LINEAR_SRGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_LINEAR_SRGB)

#: CIE 1931 chromaticity of D65 (the sRGB white and the DNG calibration illuminant 21).
D65_XY = (0.31271, 0.32902)

# Adobe DNG Converter ColorMatrix2 (calibration illuminant D65) x 10000, row-major
# XYZ -> camera RGB, as LibRaw 0.22 lists them in src/tables/colordata.cpp (adobe_coeff).
_ADOBE_D65_X10000 = {
    "Canon EOS 5D Mark III": (6722, -635, -963, -4287, 12460, 2028, -908, 2162, 5668),
    "Canon EOS 5D Mark IV": (6446, -366, -864, -4436, 12204, 2513, -952, 2496, 6348),
    "Canon EOS R": (8293, -1789, -1094, -5025, 12925, 2327, -1199, 2769, 6108),
    "Canon EOS R5": (9766, -2953, -1254, -4276, 12116, 2433, -437, 1336, 5131),
    "Canon EOS R6": (8293, -1611, -1132, -4759, 12711, 2275, -1013, 2415, 5509),
    "Nikon D850": (10405, -3755, -1270, -5461, 13787, 1793, -1040, 2015, 6785),
    "Nikon Z 6": (9943, -3269, -839, -5323, 13269, 2259, -1198, 2083, 7557),
    "Nikon Z 7": (13705, -6004, -1400, -5464, 13568, 2062, -940, 1706, 7618),
    "Sony ILCE-7M3": (7374, -2389, -551, -5435, 13162, 2519, -1006, 1795, 6552),
    "Sony ILCE-7RM4": (7662, -2686, -660, -5240, 12965, 2530, -796, 1508, 6167),
    "Sony ILCE-9": (6389, -1703, -378, -4562, 12265, 2587, -670, 1489, 6550),
}

#: Real camera matrices (XYZ -> camera, D65), as published (divided by 10000, not normalised).
ADOBE_COLOR_MATRIX_D65: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {name: tuple(v / 10000.0 for v in values) for name, values in _ADOBE_D65_X10000.items()}
)

# Bradford cone response matrix (Lam 1985), for von Kries adaptation between white points.
_BRADFORD = np.array(
    [
        [0.8951, 0.2664, -0.1614],
        [-0.7502, 1.7135, 0.0367],
        [0.0389, -0.0685, 1.0296],
    ]
)


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Decode the sRGB transfer function (IEC 61966-2-1).

    Parameters
    ----------
    srgb : ndarray, any shape, float
        sRGB-encoded values, nominally in [0, 1]. Values above 1 are decoded by continuing the
        power segment (extended sRGB), so light sources brighter than white survive the round
        trip; negative values are mirrored (odd extension).

    Returns
    -------
    ndarray, same shape, float32 unless the input is float64
        Linear-light values (1.0 = diffuse white).
    """
    x = np.asarray(srgb)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    a = np.abs(x)
    lin = np.where(a <= 0.04045, a / 12.92, ((a + 0.055) / 1.055) ** 2.4)
    return (np.sign(x) * lin).astype(x.dtype, copy=False)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Encode linear light with the sRGB transfer function (IEC 61966-2-1).

    Parameters
    ----------
    linear : ndarray, any shape, float
        Linear-light values; above 1 and below 0 are extended as in :func:`srgb_to_linear`
        (clip before encoding if a display-referred [0, 1] result is wanted).

    Returns
    -------
    ndarray, same shape, float32 unless the input is float64
        sRGB-encoded values.
    """
    x = np.asarray(linear)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32, copy=False)
    a = np.abs(x)
    enc = np.where(a <= 0.0031308, a * 12.92, 1.055 * a ** (1 / 2.4) - 0.055)
    return (np.sign(x) * enc).astype(x.dtype, copy=False)


def xy_to_xyz(xy: tuple[float, float], luminance: float = 1.0) -> np.ndarray:
    """CIE XYZ (shape (3,)) of chromaticity ``xy`` at luminance Y = ``luminance``."""
    x, y = float(xy[0]), float(xy[1])
    if y <= 0:
        raise ValueError(f"chromaticity y must be > 0, got {y}")
    return np.array([x / y, 1.0, (1.0 - x - y) / y]) * luminance


def cct_to_xy(kelvin: float) -> tuple[float, float]:
    """Chromaticity of a light of correlated colour temperature ``kelvin``.

    From 4000 K to 25000 K the CIE daylight locus (CIE 15:2004, eq. 3.3/3.4) is used, the
    light of a real outdoor scene; from 1667 K to 4000 K the Planckian locus in the cubic
    approximation of Kim et al. (2002), the light of tungsten and candles.

    Parameters
    ----------
    kelvin : float
        Colour temperature in kelvin, 1667 to 25000.

    Returns
    -------
    (x, y) : tuple of float
        CIE 1931 chromaticity.
    """
    t = float(kelvin)
    if not 1667.0 <= t <= 25000.0:
        raise ValueError(f"colour temperature must be 1667..25000 K, got {t:g}")
    if t >= 4000.0:
        if t <= 7000.0:
            x = -4.6070e9 / t**3 + 2.9678e6 / t**2 + 0.09911e3 / t + 0.244063
        else:
            x = -2.0064e9 / t**3 + 1.9018e6 / t**2 + 0.24748e3 / t + 0.237040
        y = -3.000 * x * x + 2.870 * x - 0.275
        return x, y
    x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    else:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    return x, y


def _illuminant_xy(illuminant: float | tuple[float, float]) -> tuple[float, float]:
    """Chromaticity of an illuminant given as kelvin or as an (x, y) pair."""
    if isinstance(illuminant, (tuple, list, np.ndarray)):
        return float(illuminant[0]), float(illuminant[1])
    return cct_to_xy(float(illuminant))


def _illuminant_xyz(illuminant: float | tuple[float, float]) -> np.ndarray:
    """White XYZ (Y = 1) of an illuminant given as kelvin or as an (x, y) chromaticity."""
    return xy_to_xyz(_illuminant_xy(illuminant))


def random_exposure(rng: np.random.Generator, ev_range: tuple[float, float] = (-2.0, 0.5)) -> float:
    """A random exposure factor in linear light, log-uniform over ``ev_range`` stops.

    0 EV places a diffuse white exactly at the sensor's white level (see the module note);
    cameras usually meter about 1 EV below that, and scenes with light sources or
    specular highlights clip above it, hence the default of -2 to +0.5 EV.

    Returns
    -------
    float
        The multiplier ``2 ** ev`` for the linear scene.
    """
    lo, hi = ev_range
    return float(2.0 ** rng.uniform(lo, hi))


def camera_neutral(cam_from_xyz: np.ndarray, illuminant: float | tuple[float, float] = D65_XY) -> np.ndarray:
    """Camera RGB of a white lit by ``illuminant``, scaled to green = 1 (DNG AsShotNeutral).

    Parameters
    ----------
    cam_from_xyz : ndarray, (3, 3)
        XYZ -> camera RGB matrix.
    illuminant : float or (x, y)
        Colour temperature in kelvin or a chromaticity; default D65.

    Returns
    -------
    ndarray, (3,), float64
        Positive camera neutral, green channel 1.
    """
    neutral = np.asarray(cam_from_xyz, dtype=np.float64) @ _illuminant_xyz(illuminant)
    if np.any(neutral <= 0):
        raise ValueError(f"camera matrix gives a non-positive neutral {neutral} for this white")
    return neutral / neutral[1]


def normalize_camera_matrix(cam_from_xyz: np.ndarray) -> np.ndarray:
    """Scale ``cam_from_xyz`` so the D65 white (Y = 1) maps to a neutral whose maximum is 1."""
    m = np.asarray(cam_from_xyz, dtype=np.float64).reshape(3, 3)
    white = m @ xy_to_xyz(D65_XY)
    return m / white.max()


def camera_matrices() -> dict[str, np.ndarray]:
    """Real cameras' XYZ -> camera matrices (D65), normalised by :func:`normalize_camera_matrix`.

    Values are the Adobe DNG Converter ColorMatrix2 (D65) entries that LibRaw 0.22 lists in
    its ``adobe_coeff`` table (``src/tables/colordata.cpp``), divided by 10000.

    Returns
    -------
    dict of str -> ndarray (3, 3), float64
        A fresh dictionary (safe to modify) keyed by "Make Model".
    """
    return {
        name: normalize_camera_matrix(np.array(values).reshape(3, 3))
        for name, values in ADOBE_COLOR_MATRIX_D65.items()
    }


def random_camera_matrix(rng: np.random.Generator, spread: float = 0.08) -> np.ndarray:
    """A plausible camera near a real one: for colour-robust training.

    A real matrix from :func:`camera_matrices` is drawn, its spectral cross-talk perturbed
    (``M @ (I + E)`` with ``E ~ N(0, spread)``), and each row rescaled so that the D65 white
    gives exactly the neutral of the real camera. The white balance of the perturbed camera
    is therefore realistic while its colour rendering varies.

    Parameters
    ----------
    rng : numpy.random.Generator
    spread : float
        Standard deviation of the relative perturbation (0 returns the real matrix).

    Returns
    -------
    ndarray, (3, 3), float64
        XYZ -> camera RGB, normalised like :func:`camera_matrices`.
    """
    mats = camera_matrices()
    names = sorted(mats)
    base = mats[names[int(rng.integers(len(names)))]]
    white = xy_to_xyz(D65_XY)
    target = base @ white
    for _ in range(100):
        m = base @ (np.eye(3) + rng.normal(0.0, spread, size=(3, 3)))
        got = m @ white
        if np.all(got > 0.05 * target) and abs(np.linalg.det(m)) > 1e-3 * abs(np.linalg.det(base)):
            return m * (target / got)[:, None]
    return base  # spread so large that no draw stays plausible: fall back to the real camera


def illuminant_wb(
    illuminant: float | tuple[float, float], cam_from_xyz: np.ndarray
) -> np.ndarray:
    """White-balance gains that make a white lit by ``illuminant`` neutral in camera RGB.

    Parameters
    ----------
    illuminant : float or (x, y)
        Colour temperature in kelvin (1667..25000) or a CIE xy chromaticity.
    cam_from_xyz : ndarray, (3, 3)
        XYZ -> camera RGB matrix.

    Returns
    -------
    ndarray, (3,), float64
        Per-channel multipliers for camera R, G, B with green = 1 (``1 / neutral``), the
        convention of LibRaw's ``camera_whitebalance``.
    """
    return 1.0 / camera_neutral(cam_from_xyz, illuminant)


def bradford_adaptation(src_xy: tuple[float, float], dst_xy: tuple[float, float]) -> np.ndarray:
    """3x3 XYZ -> XYZ matrix adapting colours seen under white ``src_xy`` to white ``dst_xy``."""
    src = _BRADFORD @ xy_to_xyz(src_xy)
    dst = _BRADFORD @ xy_to_xyz(dst_xy)
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


def scene_to_camera(
    linear_srgb: np.ndarray,
    cam_from_xyz: np.ndarray,
    illuminant: float | tuple[float, float] | None = None,
) -> np.ndarray:
    """What the camera's sensor records of a scene given in linear sRGB.

    Parameters
    ----------
    linear_srgb : ndarray, (..., 3), float
        Scene reflectances/radiances in linear sRGB (D65 white = (1, 1, 1)), not clipped.
    cam_from_xyz : ndarray, (3, 3)
        XYZ -> camera RGB matrix (see module note for its scale).
    illuminant : float or (x, y) or None
        Light of the scene. ``None`` lights it with D65. Otherwise the scene's colours are
        adapted (Bradford) from D65 to this white first, as surfaces under a warmer or
        cooler light look to a camera that does not adapt.

    Returns
    -------
    ndarray, (..., 3), float32
        Linear camera RGB, in units of the white level at 0 EV (not clipped).
    """
    xyz_from_scene = XYZ_FROM_LINEAR_SRGB
    if illuminant is not None:
        xyz_from_scene = bradford_adaptation(D65_XY, _illuminant_xy(illuminant)) @ XYZ_FROM_LINEAR_SRGB
    m = np.asarray(cam_from_xyz, dtype=np.float64) @ xyz_from_scene
    return (np.asarray(linear_srgb, dtype=np.float32) @ m.T.astype(np.float32)).astype(np.float32)
