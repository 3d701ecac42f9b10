"""Sensor side of the simulation: OLPF, pixel integration, Bayer CFA, noise, quantisation.

Signal units. Between :func:`scene_to_camera <nnip.simulate.color.scene_to_camera>` and
:func:`quantize`, the signal is linear camera RGB *normalised to the white level*: 0 is the
black level, 1 the raw value at which the sensor clips. :class:`NoiseModel` is expressed in
the same units, exactly as the DNG ``NoiseProfile`` tag is (variance = S * x + O for a
black-subtracted signal x scaled to [0, 1]).

Bayer vocabulary. A pattern is the four-letter row-major string of the top-left 2x2 cell
(``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``), as colour-demosaicing and our RawFrame use.
:func:`pack_bayer` reorders each 2x2 cell into the planes R, G1, G2, B where G1 is the green
on R's row and G2 the green on B's row; the cells are not moved. For every pattern R and B
are diagonal neighbours, but the diagonal's direction depends on the pattern; a model that
needs the RGGB geometry should first bring the mosaic to RGGB with :func:`to_rggb` (exact
flips, no cropping) and undo it on its output with :func:`from_rggb`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np
from scipy import fft as sfft

__all__ = [
    "PATTERNS",
    "check_pattern",
    "cfa_channels",
    "olpf",
    "pixel_integrate",
    "mosaic_bayer",
    "pack_bayer",
    "unpack_bayer",
    "bayer_flips",
    "to_rggb",
    "from_rggb",
    "NoiseModel",
    "SensorModel",
    "SENSORS",
    "noise_model_for_iso",
    "random_noise_model",
    "add_noise",
    "quantize",
    "normalize_raw",
]

#: The four Bayer phases, as row-major strings of the top-left 2x2 cell.
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

_CHANNEL = {"R": 0, "G": 1, "B": 2}


def check_pattern(pattern: str) -> str:
    """Validate a Bayer pattern string; returns it upper-cased.

    Raises
    ------
    ValueError
        Naming the allowed values when ``pattern`` is not one of :data:`PATTERNS`.
    """
    p = str(pattern).upper()
    if p not in PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; allowed: {', '.join(PATTERNS)}")
    return p


def cfa_channels(pattern: str) -> np.ndarray:
    """(2, 2) int array: the RGB channel index (0 R, 1 G, 2 B) at each position of the cell."""
    p = check_pattern(pattern)
    return np.array([_CHANNEL[c] for c in p]).reshape(2, 2)


def _plane_positions(pattern: str) -> list[tuple[int, int]]:
    """Cell positions (dy, dx) of R, G1 (green on R's row), G2 (green on B's row), B."""
    chans = cfa_channels(pattern)
    (ry, rx), = np.argwhere(chans == 0)
    (by, bx), = np.argwhere(chans == 2)
    return [(int(ry), int(rx)), (int(ry), int(bx)), (int(by), int(rx)), (int(by), int(bx))]


def olpf(image: np.ndarray, strength_px: float) -> np.ndarray:
    """Optical low-pass filter: the four-spot split of two crossed birefringent plates.

    Each point becomes four points of a quarter of its energy at (+-d/2, +-d/2), ``d =
    strength_px``: frequency response ``cos(pi fx d) * cos(pi fy d)``, which is zero at the
    Nyquist frequency for ``d = 1`` (a filter matched to the pixel pitch). The split is
    applied in the Fourier domain on a reflect-padded copy, which is exact for band-limited
    content and allows fractional ``d``; next to hard edges this interpolation can dip
    slightly below 0 (a fraction of a percent), like any band-limited resampling.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), float
        Linear light at the sensor's sampling.
    strength_px : float
        Spot separation in pixels (0 = no filter; ~1 for a typical DSLR, ~0.7 for a weak one).

    Returns
    -------
    ndarray, same shape, float32
    """
    img = np.asarray(image, dtype=np.float32)
    if strength_px < 0:
        raise ValueError(f"OLPF strength must be >= 0, got {strength_px}")
    if strength_px == 0:
        return img.copy()
    pad = int(math.ceil(strength_px)) + 4
    widths = ((pad, pad), (pad, pad)) + ((0, 0),) * (img.ndim - 2)
    padded = np.pad(img, widths, mode="reflect" if min(img.shape[:2]) > pad else "edge")
    h, w = padded.shape[:2]
    resp_y = np.cos(np.pi * sfft.fftfreq(h) * strength_px)
    resp_x = np.cos(np.pi * sfft.rfftfreq(w) * strength_px)
    response = (resp_y[:, None] * resp_x[None, :]).reshape((h, w // 2 + 1) + (1,) * (img.ndim - 2))
    spectrum = sfft.rfft2(padded, axes=(0, 1)) * response
    out = sfft.irfft2(spectrum, s=(h, w), axes=(0, 1))
    return out[pad:-pad, pad:-pad].astype(np.float32)


def pixel_integrate(image: np.ndarray, factor: int) -> np.ndarray:
    """Integrate over ``factor x factor`` blocks: what pixels ``factor`` times larger record.

    Parameters
    ----------
    image : ndarray, (H, W) or (H, W, C), float
        Linear light sampled ``factor`` times finer than the sensor; H and W multiples of
        ``factor``.
    factor : int
        Pixel size in input samples (a 100 % fill-factor square aperture).

    Returns
    -------
    ndarray, (H / factor, W / factor[, C]), float32
        The block means (signal per pixel area, so levels are unchanged).
    """
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    if factor < 1 or h % factor or w % factor:
        raise ValueError(f"image size {h}x{w} is not a multiple of the pixel factor {factor}")
    shape = (h // factor, factor, w // factor, factor) + img.shape[2:]
    return img.reshape(shape).mean(axis=(1, 3)).astype(np.float32)


def mosaic_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample an RGB image through a Bayer colour filter array.

    Parameters
    ----------
    rgb : ndarray, (H, W, 3)
        Linear camera RGB (any dtype).
    pattern : str
        One of :data:`PATTERNS`: the colours of the top-left 2x2 cell, row-major.

    Returns
    -------
    ndarray, (H, W), the input dtype
        Each pixel keeps only the channel its filter passes.
    """
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"mosaic_bayer expects an (H, W, 3) image, got shape {img.shape}")
    chans = cfa_channels(pattern)
    h, w = img.shape[:2]
    index = np.tile(chans, ((h + 1) // 2, (w + 1) // 2))[:h, :w]
    return np.take_along_axis(img, index[..., None], axis=2)[..., 0]


def pack_bayer(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """Split a mosaic into four half-resolution planes R, G1, G2, B (see the module note).

    Parameters
    ----------
    mosaic : ndarray, (H, W), H and W even
    pattern : str
        One of :data:`PATTERNS`.

    Returns
    -------
    ndarray, (4, H/2, W/2), the input dtype
        Planes in the order R, G1 (on R's row), G2 (on B's row), B.
    """
    m = np.asarray(mosaic)
    if m.ndim != 2 or m.shape[0] % 2 or m.shape[1] % 2:
        raise ValueError(f"pack_bayer expects an (H, W) mosaic with even sides, got shape {m.shape}")
    return np.stack([m[dy::2, dx::2] for dy, dx in _plane_positions(pattern)])


def unpack_bayer(packed: np.ndarray, pattern: str) -> np.ndarray:
    """Inverse of :func:`pack_bayer`: (4, h, w) planes -> (2h, 2w) mosaic."""
    p = np.asarray(packed)
    if p.ndim != 3 or p.shape[0] != 4:
        raise ValueError(f"unpack_bayer expects (4, h, w) planes, got shape {p.shape}")
    out = np.empty((2 * p.shape[1], 2 * p.shape[2]), dtype=p.dtype)
    for plane, (dy, dx) in zip(p, _plane_positions(pattern)):
        out[dy::2, dx::2] = plane
    return out


def bayer_flips(pattern: str) -> tuple[bool, bool]:
    """(flip rows, flip columns) that turn an even-sized mosaic of ``pattern`` into RGGB."""
    chans = cfa_channels(pattern)
    (ry, rx), = np.argwhere(chans == 0)
    return bool(ry), bool(rx)


def to_rggb(image: np.ndarray, pattern: str) -> np.ndarray:
    """Flip an even-sized mosaic (or any (H, W, ...) array aligned with it) to RGGB phase."""
    arr = np.asarray(image)
    if arr.shape[0] % 2 or arr.shape[1] % 2:
        raise ValueError(f"phase flips need even sides, got shape {arr.shape}")
    flip_y, flip_x = bayer_flips(pattern)
    if flip_y:
        arr = arr[::-1]
    if flip_x:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def from_rggb(image: np.ndarray, pattern: str) -> np.ndarray:
    """Inverse of :func:`to_rggb` (the flips are their own inverse)."""
    return to_rggb(image, pattern)


@dataclass(frozen=True)
class NoiseModel:
    """Heteroscedastic raw noise: ``variance = a * x + b`` for a signal x in white-level units.

    ``a`` is the shot-noise (Poisson) scale: the signal of one photo-electron, in white-level
    units; ``b`` the signal-independent (read) variance. These are the two numbers of the
    DNG NoiseProfile tag for one colour plane.
    """

    a: float
    b: float

    def variance(self, x: np.ndarray) -> np.ndarray:
        """Noise variance at (clean) signal ``x``; the shot part is 0 below black."""
        return self.a * np.clip(x, 0.0, None) + self.b

    def std(self, x: np.ndarray) -> np.ndarray:
        """Noise standard deviation at signal ``x`` (the ``noise_sigma`` a model is given)."""
        return np.sqrt(self.variance(x))

    def with_quantization(self, black_level: float, white_level: float) -> "NoiseModel":
        """The same model plus the rounding variance (1/12 DN^2) of a raw with these levels."""
        span = float(white_level) - float(black_level)
        return NoiseModel(self.a, self.b + 1.0 / (12.0 * span * span))


@dataclass(frozen=True)
class SensorModel:
    """Photon-transfer description of a real sensor, from which :class:`NoiseModel` follows.

    Attributes
    ----------
    base_iso, max_analog_iso : float
        Lowest native ISO and the ISO above which the gain is only digital (a push of
        both signal and noise, or metadata only: the same noise in white-level units).
    dn_per_electron : float
        Conversion gain at ``base_iso``, raw numbers (DN) per photo-electron.
    white_span_dn : float
        White level minus black level, DN.
    read_noise_e : float
        Input-referred read noise in electrons before the ISO amplifier (pixel and
        source-follower noise); scales with the conversion gain.
    adc_noise_dn : float
        Read noise after the amplifier (downstream electronics, ADC), in DN.
    hcg_iso, hcg_read_noise_e : float
        Dual conversion gain: from ``hcg_iso`` up, the upstream read noise is
        ``hcg_read_noise_e`` instead (0 = single-gain sensor).
    source : str
        Where the numbers come from.
    """

    name: str
    base_iso: float
    max_analog_iso: float
    dn_per_electron: float
    white_span_dn: float
    read_noise_e: float
    adc_noise_dn: float
    hcg_iso: float = 0.0
    hcg_read_noise_e: float = 0.0
    source: str = ""

    @property
    def full_well_e(self) -> float:
        """Electrons at the white level at base ISO."""
        return self.white_span_dn / self.dn_per_electron

    def noise_model(self, iso: float) -> NoiseModel:
        """a, b in white-level units at ``iso`` (see :func:`noise_model_for_iso`)."""
        analog_iso = min(max(iso, self.base_iso), self.max_analog_iso)
        gain = self.dn_per_electron * analog_iso / self.base_iso  # DN per electron
        digital = iso / analog_iso  # push (>1) above max_analog_iso, pull (<1) below base
        upstream = self.read_noise_e
        if self.hcg_iso and iso >= self.hcg_iso:
            upstream = self.hcg_read_noise_e
        read_dn2 = (upstream * gain) ** 2 + self.adc_noise_dn**2
        span = self.white_span_dn
        return NoiseModel(a=gain * digital / span, b=read_dn2 * digital**2 / span**2)


# Sources, all photon-transfer measurements of production cameras (14-bit raw):
# - Sony A7R II: Bill Claff, "Sony A7RM2 DR-Pix Read Noise" (photonstophotos.net, 2015):
#   0.315 DN/e- at ISO 100; ADC noise 1.223 DN; low-conversion-gain input noise 3.050 e-,
#   high conversion gain (x6.35) from ISO 640 with 6.553 / 6.35 = 1.032 e-; black 512.
#   The model gives his modelled read noise exactly and his measurements within 3 % from
#   ISO 200 to 3200 (10 % high at ISO 100).
# - Nikon D800: Bill Claff, "D800 Read Noise" (photonstophotos.net, 2012): 3.75 e-/DN at
#   ISO 100; 4.7 e- read noise at ISO 400 and 4.2 e- from ISO 800, where the gain stops
#   rising (0.34 e-/DN from ISO 1600: max analogue ISO 1600). Upstream 4.2 e-; downstream
#   sqrt(4.7^2 - 4.2^2) e- at 0.86 e-/DN = 2.45 DN. Black 0, white 16383.
# - Canon EOS 5D Mark III: electrons at saturation 67684 (ISO 100) ... 1085 (ISO 6400),
#   halving per stop, measured by the Magic Lantern project (forum topic 10111, dual ISO
#   thread); black 2048, white 15488 (LibRaw's maximum for this body) -> 0.1986 DN/e-. Canon's
#   ISO-variant read noise (about 30 e- at ISO 100, 2 to 3 e- from ISO 1600, as
#   R. N. Clark's clarkvision.com evaluation of this camera shows) is approximated by an
#   upstream 1.6 e- plus 6.0 DN downstream; treat these two as indicative (within ~20 %).
_SENSOR_LIST = (
    SensorModel(
        name="sony-a7rm2", base_iso=100, max_analog_iso=3200, dn_per_electron=0.315,
        white_span_dn=16383 - 512, read_noise_e=3.050, adc_noise_dn=1.223,
        hcg_iso=640, hcg_read_noise_e=1.032,
        source="B. Claff, Sony A7RM2 DR-Pix Read Noise, photonstophotos.net (2015)",
    ),
    SensorModel(
        name="nikon-d800", base_iso=100, max_analog_iso=1600, dn_per_electron=1 / 3.75,
        white_span_dn=16383, read_noise_e=4.2, adc_noise_dn=2.45,
        source="B. Claff, D800 Read Noise, photonstophotos.net (2012)",
    ),
    SensorModel(
        name="canon-5d3", base_iso=100, max_analog_iso=6400, dn_per_electron=(15488 - 2048) / 67684,
        white_span_dn=15488 - 2048, read_noise_e=1.6, adc_noise_dn=6.0,
        source="Magic Lantern forum (full well per ISO); R. N. Clark, clarkvision.com (read noise)",
    ),
)

#: Sensor models by name (read-only).
SENSORS: Mapping[str, SensorModel] = MappingProxyType({s.name: s for s in _SENSOR_LIST})

_ISO_RANGE = (50.0, 204800.0)


def noise_model_for_iso(iso: float, sensor: str = "sony-a7rm2") -> NoiseModel:
    """Raw noise of a real sensor at an ISO setting, in white-level units.

    With conversion gain ``g`` (DN/e-) at the ISO, digital gain ``d`` and white span ``W``
    (DN), a signal x holds ``x W / (g d)`` electrons, so

    - ``a = g d / W`` (Poisson: variance a * x), and
    - ``b = ((r_up g)^2 + r_adc^2) d^2 / W^2`` (read noise r_up e- before the amplifier,
      r_adc DN after it).

    See :data:`SENSORS` and the source notes beside them for the measured figures.

    Parameters
    ----------
    iso : float
        ISO setting, 50 to 204800 (ISO 100..25600 is the range the figures cover well).
    sensor : str
        A key of :data:`SENSORS`: ``"sony-a7rm2"`` (dual gain, ISO-invariant),
        ``"nikon-d800"``, ``"canon-5d3"`` (ISO-variant, high base-ISO read noise).

    Returns
    -------
    NoiseModel
        Without quantisation; add it with :meth:`NoiseModel.with_quantization`.
    """
    if sensor not in SENSORS:
        raise ValueError(f"unknown sensor {sensor!r}; known: {', '.join(SENSORS)}")
    if not _ISO_RANGE[0] <= iso <= _ISO_RANGE[1]:
        raise ValueError(f"ISO must be {_ISO_RANGE[0]:g}..{_ISO_RANGE[1]:g}, got {iso:g}")
    return SENSORS[sensor].noise_model(float(iso))


def random_noise_model(
    rng: np.random.Generator, iso_range: tuple[float, float] = (100.0, 25600.0)
) -> tuple[NoiseModel, float, str]:
    """A random sensor and an ISO drawn log-uniformly from ``iso_range``.

    Returns
    -------
    (NoiseModel, iso, sensor name)
    """
    names = sorted(SENSORS)
    name = names[int(rng.integers(len(names)))]
    iso = float(2.0 ** rng.uniform(math.log2(iso_range[0]), math.log2(iso_range[1])))
    return SENSORS[name].noise_model(iso), iso, name


def add_noise(
    x: np.ndarray, model: NoiseModel, rng: np.random.Generator, *, method: str = "poisson"
) -> np.ndarray:
    """Add Poisson-Gaussian raw noise.

    Parameters
    ----------
    x : ndarray, any shape, float
        Clean signal in white-level units (not clipped; values below 0 get read noise only).
    model : NoiseModel
        Variance ``a * x + b``.
    rng : numpy.random.Generator
    method : {"poisson", "gaussian"}
        ``"poisson"``: ``a * Poisson(x / a)`` plus ``N(0, b)``, the physical counting noise
        (skewed at a few electrons). ``"gaussian"``: ``x + N(0, a x + b)``, the usual
        approximation; both have exactly the variance ``a x + b``.

    Returns
    -------
    ndarray, same shape, float32
        Noisy signal, not clipped (clipping happens in :func:`quantize`).
    """
    clean = np.asarray(x, dtype=np.float64)
    if method == "gaussian" or model.a <= 0:
        noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(model.variance(clean))
    elif method == "poisson":
        electrons = rng.poisson(np.clip(clean, 0.0, None) / model.a)
        noisy = electrons * model.a + np.where(clean < 0, clean, 0.0)
        noisy = noisy + rng.standard_normal(clean.shape) * math.sqrt(model.b)
    else:
        raise ValueError(f"unknown noise method {method!r}; allowed: poisson, gaussian")
    return noisy.astype(np.float32)


def _check_levels(bits: int, black_level: float, white_level: float) -> None:
    if bits not in (10, 12, 14, 16):
        raise ValueError(f"bits must be 10, 12, 14 or 16, got {bits}")
    if not 0 <= black_level < white_level <= 2**bits - 1:
        raise ValueError(
            f"need 0 <= black ({black_level}) < white ({white_level}) <= {2**bits - 1} for {bits} bits"
        )


def quantize(x: np.ndarray, bits: int, black_level: float, white_level: float) -> np.ndarray:
    """Analogue-to-digital conversion: white-level units -> raw numbers.

    Parameters
    ----------
    x : ndarray, float
        Noisy signal, 0 = black, 1 = white (not clipped).
    bits : int
        ADC depth, 12 or 14 for cameras (10 and 16 accepted).
    black_level, white_level : float
        Raw value of zero signal (the offset that keeps negative read noise) and the
        saturation value; ``white_level <= 2**bits - 1``.

    Returns
    -------
    ndarray, same shape, uint16
        ``round(black + x (white - black))`` clipped to [0, white]: highlights above white
        are blown, noise below black is kept down to 0.
    """
    _check_levels(bits, black_level, white_level)
    dn = np.rint(black_level + np.asarray(x, dtype=np.float64) * (white_level - black_level))
    return np.clip(dn, 0, white_level).astype(np.uint16)


def normalize_raw(raw: np.ndarray, black_level: float, white_level: float) -> np.ndarray:
    """Raw numbers -> white-level units: ``(raw - black) / (white - black)``, float32.

    Values below black become negative (kept: they carry the read noise).
    """
    span = float(white_level) - float(black_level)
    if span <= 0:
        raise ValueError(f"white level {white_level} must exceed black level {black_level}")
    values = np.asarray(raw, dtype=np.float32)
    return ((values - np.float32(black_level)) / np.float32(span)).astype(np.float32)
