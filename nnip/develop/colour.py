"""The one home of the develop pipeline's colour maths.

Camera matrix, white balance, output colour spaces and their transfer functions live here
and nowhere else; the stages in :mod:`nnip.develop.pipeline` only call these functions.

Conventions
-----------
* Matrices act on column vectors: ``out = M @ v``; on an image ``pixels @ M.T``.
* XYZ is CIE 1931 with Y = 1 for the reference white. Scene XYZ is D65-referenced: the
  camera matrix maps a white-balanced camera white to D65 white, and spaces with another
  white (ProPhoto, D50) are reached by a Bradford adaptation.
* White-balance multipliers are (R, G, B) factors on camera RGB, normalised so the smallest
  is 1: a raw value at the white level stays at 1 or above in every channel, so highlight
  clipping at 1 after white balance leaves saturated areas neutral (dcraw's convention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from nnip.core.parallel import PARALLEL_MIN_ELEMENTS, for_each_strip

__all__ = [
    "ColourSpace",
    "COLOUR_SPACES",
    "TRANSFERS",
    "WB_PRESETS",
    "D50_ICC",
    "colour_space",
    "xy_to_xyz",
    "rgb_to_xyz_matrix",
    "bradford",
    "xyz_to_rgb_matrix",
    "encode_transfer",
    "decode_transfer",
    "channel_max",
    "camera_to_xyz_matrix",
    "daylight_multipliers",
    "planckian_xy",
    "kelvin_multipliers",
    "grey_world_multipliers",
    "parse_white_balance",
    "WhiteBalance",
    "normalise_multipliers",
    "xyz_to_lab",
    "delta_e_2000",
]

#: ICC profile connection space illuminant (D50, as the ICC specification rounds it).
D50_ICC = np.array([0.9642, 1.0, 0.8249])

_D65_XY = (0.3127, 0.3290)
_D50_XY = (0.3457, 0.3585)


@dataclass(frozen=True)
class ColourSpace:
    """An RGB output space: primaries, white point and transfer function.

    ``transfer`` is one of :data:`TRANSFERS`.
    """

    name: str
    primaries: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    white: tuple[float, float]
    transfer: str
    description: str

    @property
    def xyz_from_rgb(self) -> np.ndarray:
        """(3, 3) linear RGB -> XYZ under the space's own white."""
        return rgb_to_xyz_matrix(self.primaries, self.white)

    def rgb_from_xyz_d65(self) -> np.ndarray:
        """(3, 3) D65 scene XYZ -> this space's linear RGB (Bradford when white is not D65)."""
        adapt = bradford(xy_to_xyz(_D65_XY), xy_to_xyz(self.white))
        return np.linalg.inv(self.xyz_from_rgb) @ adapt

    def xyz_d50_from_rgb(self) -> np.ndarray:
        """(3, 3) linear RGB -> ICC PCS XYZ (Bradford-adapted to :data:`D50_ICC`)."""
        return bradford(xy_to_xyz(self.white), D50_ICC) @ self.xyz_from_rgb


_SRGB_PRIMARIES = ((0.64, 0.33), (0.30, 0.60), (0.15, 0.06))

#: Output colour spaces by ``--colorspace`` name.
COLOUR_SPACES: Mapping[str, ColourSpace] = MappingProxyType({
    "srgb": ColourSpace("srgb", _SRGB_PRIMARIES, _D65_XY, "srgb", "sRGB (IEC 61966-2-1)"),
    "display-p3": ColourSpace(
        "display-p3", ((0.680, 0.320), (0.265, 0.690), (0.150, 0.060)), _D65_XY, "srgb",
        "Display P3"),
    "adobe-rgb": ColourSpace(
        "adobe-rgb", ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06)), _D65_XY, "adobe",
        "Adobe RGB (1998) compatible"),
    "prophoto": ColourSpace(
        "prophoto", ((0.7347, 0.2653), (0.1596, 0.8404), (0.0366, 0.0001)), _D50_XY,
        "prophoto", "ProPhoto RGB (ROMM RGB)"),
    "linear-srgb": ColourSpace(
        "linear-srgb", _SRGB_PRIMARIES, _D65_XY, "linear", "Linear sRGB (scene-referred)"),
})

#: Transfer functions: sRGB piecewise curve (also Display P3), Adobe RGB pure gamma
#: 563/256, ProPhoto (ROMM) gamma 1.8 with a linear toe below 1/512, and none.
TRANSFERS = ("srgb", "adobe", "prophoto", "linear")

_ADOBE_GAMMA = 563.0 / 256.0
_ROMM_LINEAR_BREAK = 1.0 / 512.0  # linear side; 16 / 512 = 1/32 on the encoded side


def colour_space(name: str) -> ColourSpace:
    """The :class:`ColourSpace` called ``name`` (case-insensitive); ValueError lists the known."""
    try:
        return COLOUR_SPACES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown colour space {name!r} (known: {', '.join(COLOUR_SPACES)})"
        ) from None


# --------------------------------------------------------------------------- XYZ maths


def xy_to_xyz(xy: Sequence[float], Y: float = 1.0) -> np.ndarray:
    """CIE xy chromaticity -> XYZ with luminance ``Y``."""
    x, y = float(xy[0]), float(xy[1])
    return np.array([x * Y / y, Y, (1.0 - x - y) * Y / y])


def rgb_to_xyz_matrix(primaries: Sequence[Sequence[float]], white: Sequence[float]) -> np.ndarray:
    """(3, 3) linear RGB -> XYZ for the given xy primaries and white; RGB (1,1,1) -> white (Y=1)."""
    columns = np.stack([xy_to_xyz(p) for p in primaries], axis=1)
    scale = np.linalg.solve(columns, xy_to_xyz(white))
    return columns * scale


def xyz_to_rgb_matrix(primaries: Sequence[Sequence[float]], white: Sequence[float]) -> np.ndarray:
    """Inverse of :func:`rgb_to_xyz_matrix`."""
    return np.linalg.inv(rgb_to_xyz_matrix(primaries, white))


_BRADFORD = np.array([
    [0.8951, 0.2664, -0.1614],
    [-0.7502, 1.7135, 0.0367],
    [0.0389, -0.0685, 1.0296],
])


def bradford(source_white: np.ndarray, target_white: np.ndarray) -> np.ndarray:
    """(3, 3) Bradford chromatic adaptation XYZ(source white) -> XYZ(target white)."""
    src = _BRADFORD @ np.asarray(source_white, dtype=np.float64)
    dst = _BRADFORD @ np.asarray(target_white, dtype=np.float64)
    return np.linalg.inv(_BRADFORD) @ np.diag(dst / src) @ _BRADFORD


# --------------------------------------------------------------------------- transfer


def encode_transfer(linear: np.ndarray, transfer: str, *, workers: int | None = None) -> np.ndarray:
    """Linear light -> encoded values with ``transfer`` (one of :data:`TRANSFERS`).

    Parameters
    ----------
    linear : ndarray, float
        Any shape; 1 is the reference white. Not clipped: values below 0 are encoded with
        the curve mirrored through 0, values above 1 with the curve extended.
    workers : int, optional
        Threads for a large array (:func:`nnip.core.parallel.for_each_strip`; default:
        the cores); 1 when the caller already works in parallel strips.

    Returns
    -------
    ndarray, float32
        Same shape, encoded: a new array, the input is left alone. The curve is worked in
        place on that one array (a 24-megapixel RGB image costs one more copy, not six).
    """
    _check_transfer(transfer)
    return _odd_curve(linear, lambda a: _encode_magnitude(a, transfer), workers)


def _encode_magnitude(a: np.ndarray, transfer: str) -> None:
    """:func:`encode_transfer` of values >= 0, in place."""
    if transfer == "srgb":
        low = a <= 0.0031308
        toe = a[low] * np.float32(12.92)
        np.power(a, 1 / 2.4, out=a)
        a *= np.float32(1.055)
        a -= np.float32(0.055)
        a[low] = toe
    elif transfer == "adobe":
        np.power(a, 1 / _ADOBE_GAMMA, out=a)
    elif transfer == "prophoto":
        low = a < _ROMM_LINEAR_BREAK
        toe = a[low] * np.float32(16.0)
        np.power(a, 1 / 1.8, out=a)
        a[low] = toe


def decode_transfer(encoded: np.ndarray, transfer: str, *, workers: int | None = None) -> np.ndarray:
    """Inverse of :func:`encode_transfer`: encoded values -> linear light (float32, a new
    array, worked in place and in strips as there)."""
    _check_transfer(transfer)
    return _odd_curve(encoded, lambda a: _decode_magnitude(a, transfer), workers)


def _decode_magnitude(a: np.ndarray, transfer: str) -> None:
    """:func:`decode_transfer` of values >= 0, in place."""
    if transfer == "srgb":
        low = a <= 0.04045
        toe = a[low] / np.float32(12.92)
        a += np.float32(0.055)
        a /= np.float32(1.055)
        np.power(a, 2.4, out=a)
        a[low] = toe
    elif transfer == "adobe":
        np.power(a, _ADOBE_GAMMA, out=a)
    elif transfer == "prophoto":
        low = a < 16.0 * _ROMM_LINEAR_BREAK
        toe = a[low] / np.float32(16.0)
        np.power(a, 1.8, out=a)
        a[low] = toe


def _check_transfer(transfer: str) -> None:
    if transfer not in TRANSFERS:
        raise ValueError(f"unknown transfer function {transfer!r} (known: {', '.join(TRANSFERS)})")


def _odd_curve(values: np.ndarray, curve: Callable[[np.ndarray], None], workers: int | None) -> np.ndarray:
    """``curve`` (in place, on magnitudes) applied with the sign of each value: a new
    float32 array; a large one in row strips on ``workers`` threads (bit-identical)."""
    v = np.asarray(values, dtype=np.float32)
    out = np.empty(v.shape, dtype=np.float32)
    # Strips along the first long axis: planes (3, H, W) are cut along H, images along H.
    axis = next((i for i, n in enumerate(v.shape) if n >= 64), None)
    if axis is None or v.size < PARALLEL_MIN_ELEMENTS:
        workers, axis = 1, 0

    def work(rows: slice) -> None:
        index = (slice(None),) * axis + (rows,)
        a, signs = (out, v) if out.ndim == 0 else (out[index], v[index])
        np.abs(signs, out=a)
        curve(a)
        np.copysign(a, signs, out=a)

    if out.ndim == 0:
        work(slice(None))
        return out[()]  # a numpy scalar for 0-d input, as numpy's own ufuncs give
    for_each_strip(v.shape[axis], work, strip_rows=_strip_rows(v.shape, axis), workers=workers)
    return out


def _strip_rows(shape: tuple[int, ...], axis: int) -> int:
    """Rows per strip: about a million values, at least one row."""
    per_row = max(1, int(np.prod(shape)) // max(1, shape[axis]))
    return max(1, PARALLEL_MIN_ELEMENTS // per_row)


def channel_max(pixels: np.ndarray) -> np.ndarray:
    """The largest channel of each pixel of ``pixels`` (..., C): shape (...), same dtype.

    Channel by channel with ``np.maximum``, not ``pixels.max(axis=-1)``: a reduction over
    a last axis of length 3 runs numpy's inner loop 3 values at a time (measured 3.5x
    slower on a 24 MP RGB image).
    """
    largest = np.array(pixels[..., 0])
    for c in range(1, pixels.shape[-1]):
        np.maximum(largest, pixels[..., c], out=largest)
    return largest


# --------------------------------------------------------------------------- camera


def camera_to_xyz_matrix(cam_from_xyz: np.ndarray) -> np.ndarray:
    """(3, 3) white-balanced camera RGB -> D65 scene XYZ, white mapping to white.

    With ``n = cam_from_xyz @ D65`` (the camera's response to D65 white, i.e. the daylight
    neutral), white balance multiplies camera RGB by ``1 / n``; this matrix undoes that
    and applies the inverse colour matrix, so camera (1, 1, 1) after daylight white balance
    maps exactly to D65 white (dcraw's row normalisation of ``cam_xyz @ xyz_rgb``, stated
    in XYZ). Other white balances adapt in camera space (von Kries), as LibRaw does.
    """
    cam_from_xyz = np.asarray(cam_from_xyz, dtype=np.float64)
    neutral = cam_from_xyz @ xy_to_xyz(_D65_XY)
    return np.linalg.inv(cam_from_xyz) @ np.diag(neutral)


def daylight_multipliers(cam_from_xyz: np.ndarray) -> np.ndarray:
    """White-balance multipliers (R, G, B), min 1, that make a D65-lit grey neutral."""
    return normalise_multipliers(1.0 / (np.asarray(cam_from_xyz) @ xy_to_xyz(_D65_XY)))


def normalise_multipliers(multipliers: Sequence[float]) -> np.ndarray:
    """(3,) float64 multipliers scaled so the smallest is 1; ValueError if any is not > 0."""
    m = np.asarray(multipliers, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(m)) or np.any(m <= 0):
        raise ValueError(f"white balance multipliers must be positive, got {m.tolist()}")
    return m / m.min()


def planckian_xy(kelvin: float) -> tuple[float, float]:
    """CIE 1931 xy of a black body at ``kelvin`` (Kim et al. 2002 cubic fit, 1667..25000 K)."""
    t = float(kelvin)
    if not 1667.0 <= t <= 25000.0:
        raise ValueError(f"colour temperature {t:g} K is outside 1667..25000 K")
    if t <= 4000.0:
        x = -0.2661239e9 / t**3 - 0.2343589e6 / t**2 + 0.8776956e3 / t + 0.179910
    else:
        x = -3.0258469e9 / t**3 + 2.1070379e6 / t**2 + 0.2226347e3 / t + 0.240390
    if t <= 2222.0:
        y = -1.1063814 * x**3 - 1.34811020 * x**2 + 2.18555832 * x - 0.20219683
    elif t <= 4000.0:
        y = -0.9549476 * x**3 - 1.37418593 * x**2 + 2.09137015 * x - 0.16748867
    else:
        y = 3.0817580 * x**3 - 5.87338670 * x**2 + 3.75112997 * x - 0.37001483
    return x, y


def kelvin_multipliers(kelvin: float, cam_from_xyz: np.ndarray) -> np.ndarray:
    """Multipliers that make a grey lit by a black body at ``kelvin`` neutral.

    Planckian xy -> XYZ -> camera neutral through ``cam_from_xyz`` -> 1 / neutral.
    """
    neutral = np.asarray(cam_from_xyz, dtype=np.float64) @ xy_to_xyz(planckian_xy(kelvin))
    return normalise_multipliers(1.0 / neutral)


def grey_world_multipliers(camera_rgb: np.ndarray, clip: float = 0.95) -> np.ndarray:
    """Robust grey-world estimate of the white balance of linear camera RGB.

    Parameters
    ----------
    camera_rgb : ndarray, float32, shape (H, W, 3)
        Linear camera RGB, black subtracted, 1 = white level (not white balanced). A
        half-resolution image (one pixel per Bayer cell) is plenty.
    clip : float
        Pixels with any channel at or above this are left out (their colour is lost), and
        so is the darkest 2 % (noise and black-level error dominate there).

    Returns
    -------
    ndarray, float64, shape (3,)
        Multipliers, smallest 1, that make the mean of the kept pixels neutral; (1, 1, 1)
        when nothing usable is left.
    """
    pixels = np.asarray(camera_rgb, dtype=np.float32).reshape(-1, 3)
    keep = np.all(pixels < clip, axis=1)
    brightness = pixels.sum(axis=1)
    if keep.any():
        keep &= brightness > np.percentile(brightness[keep], 2.0)
    means = pixels[keep].astype(np.float64).mean(axis=0) if keep.any() else np.zeros(3)
    if np.any(means <= 0):
        return np.ones(3)
    return normalise_multipliers(means[1] / means)


# --------------------------------------------------------------------------- WB modes

#: Named white balances besides ``camera`` (as shot) and ``auto``: the colour temperature
#: each stands for, as raw converters commonly set them; ``daylight`` is CIE D65, the
#: illuminant camera matrices are normalised to (LibRaw's daylight multipliers).
WB_PRESETS: Mapping[str, float | None] = MappingProxyType({
    "daylight": None,
    "cloudy": 6500.0,
    "shade": 7500.0,
    "tungsten": 2850.0,
    "fluorescent": 3800.0,
    "flash": 5500.0,
})

_KELVIN_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*k?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class WhiteBalance:
    """A parsed white-balance request: ``mode`` is camera, auto, daylight, preset, kelvin or
    multipliers; ``kelvin`` and ``multipliers`` hold the numbers where they apply."""

    mode: str
    kelvin: float | None = None
    multipliers: tuple[float, float, float] | None = None
    preset: str | None = None

    def __str__(self) -> str:
        if self.mode == "kelvin":
            return f"{self.kelvin:g}K"
        if self.mode == "multipliers":
            return ",".join(f"{m:g}" for m in self.multipliers or ())
        return self.preset or self.mode


WhiteBalanceLike = Union[str, int, float, Sequence[float], WhiteBalance]


def parse_white_balance(value: WhiteBalanceLike) -> WhiteBalance:
    """Parse ``camera|auto|daylight|<preset>|KELVIN|R,G,B`` (or a number, or 3 numbers).

    Raises
    ------
    ValueError
        With a message listing what is accepted (the CLI turns it into a usage error).
    """
    if isinstance(value, WhiteBalance):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        planckian_xy(value)  # range check
        return WhiteBalance("kelvin", kelvin=float(value))
    if not isinstance(value, str):
        return _multipliers_wb(list(value))
    text = value.strip().lower()
    if text in ("camera", "auto"):
        return WhiteBalance(text)
    if text == "daylight":
        return WhiteBalance("daylight", preset="daylight")
    if text in WB_PRESETS:
        return WhiteBalance("kelvin", kelvin=WB_PRESETS[text], preset=text)
    match = _KELVIN_TEXT.match(text)
    if match:
        kelvin = float(match.group(1))
        planckian_xy(kelvin)
        return WhiteBalance("kelvin", kelvin=kelvin)
    if "," in text:
        try:
            return _multipliers_wb([float(part) for part in text.split(",")])
        except ValueError:
            pass
    raise ValueError(
        f"white balance {value!r} is not one of camera, auto, {', '.join(WB_PRESETS)}, "
        "a temperature such as 5500K, or R,G,B multipliers such as 2.0,1,1.5"
    )


def _multipliers_wb(values: list[float]) -> WhiteBalance:
    if len(values) != 3:
        raise ValueError(f"white balance multipliers need 3 numbers (R,G,B), got {len(values)}")
    m = normalise_multipliers(values)
    return WhiteBalance("multipliers", multipliers=(float(m[0]), float(m[1]), float(m[2])))


# --------------------------------------------------------------------------- CIELAB, dE


def xyz_to_lab(xyz: np.ndarray, white: Sequence[float] = tuple(xy_to_xyz(_D65_XY))) -> np.ndarray:
    """CIE XYZ (..., 3) -> CIELAB (..., 3) relative to ``white`` (default D65, Y = 1)."""
    t = np.asarray(xyz, dtype=np.float64) / np.asarray(white, dtype=np.float64)
    delta = 6.0 / 29.0
    f = np.where(t > delta**3, np.cbrt(t), t / (3 * delta**2) + 4.0 / 29.0)
    L = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def delta_e_2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005) between Lab arrays (..., 3)."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    c_mean = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2.0
    g = 0.5 * (1.0 - np.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360.0
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360.0
    dLp, dCp = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180.0, dh - 360.0, np.where(dh < -180.0, dh + 360.0, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dHp = 2.0 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh) / 2.0)
    Lp, Cp = (L1 + L2) / 2.0, (c1p + c2p) / 2.0
    hsum = h1p + h2p
    hp = np.where(np.abs(h1p - h2p) > 180.0,
                  np.where(hsum < 360.0, hsum + 360.0, hsum - 360.0), hsum) / 2.0
    hp = np.where(c1p * c2p == 0, hsum, hp)
    t = (1.0 - 0.17 * np.cos(np.radians(hp - 30.0)) + 0.24 * np.cos(np.radians(2.0 * hp))
         + 0.32 * np.cos(np.radians(3.0 * hp + 6.0)) - 0.20 * np.cos(np.radians(4.0 * hp - 63.0)))
    d_theta = 30.0 * np.exp(-(((hp - 275.0) / 25.0) ** 2))
    rc = 2.0 * np.sqrt(Cp**7 / (Cp**7 + 25.0**7))
    sl = 1.0 + 0.015 * (Lp - 50.0) ** 2 / np.sqrt(20.0 + (Lp - 50.0) ** 2)
    sc = 1.0 + 0.045 * Cp
    sh = 1.0 + 0.015 * Cp * t
    rt = -np.sin(np.radians(2.0 * d_theta)) * rc
    return np.sqrt((dLp / sl) ** 2 + (dCp / sc) ** 2 + (dHp / sh) ** 2
                   + rt * (dCp / sc) * (dHp / sh))
