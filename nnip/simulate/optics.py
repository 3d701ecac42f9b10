"""Lens side of the simulation: diffraction, field-varying aberrations, lateral CA, vignetting.

All functions take linear-light images, float32 ``(H, W, C)``, and return the same shape and
dtype; none of them clips. Positions in the field are measured by :class:`Field`: the
normalised radius ``rho`` is the distance from the optical centre divided by the distance
from the centre to the corner of the *full frame*, so a training patch cropped from a frame
can be given the optics of where it lay (:meth:`Field.of_crop`).

The field-varying blur is applied by zones: the PSF is computed at the nodes of a
``zones x zones`` grid spanning the image, the image is convolved (FFT) with each node's
PSF over that node's support only, and the results are blended with bilinear weights. The
effective PSF at a pixel is therefore the bilinear interpolation of the neighbouring node
PSFs: smooth across the field and exact at the nodes, with a cost of ``zones**2`` FFT
convolutions of image regions a few hundred pixels wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal, special

__all__ = [
    "WAVELENGTHS_NM",
    "Field",
    "LensParams",
    "airy_profile",
    "airy_psf",
    "diffraction_psfs",
    "aberration_psf",
    "field_blur",
    "lateral_ca",
    "vignetting",
    "apply_lens",
    "random_lens_params",
]

#: Representative wavelengths of the camera's R, G, B channels, in nanometres.
WAVELENGTHS_NM = (610.0, 540.0, 465.0)

_AIRY_FIRST_ZERO = 3.8317059702075125  # first zero of the Bessel function J1
_MAX_RADIUS_PX = 24  # PSF kernels are cut at this radius (px); the energy beyond is negligible


@dataclass(frozen=True)
class Field:
    """Where an image lies in the lens's field.

    Attributes
    ----------
    cy, cx : float
        Optical centre in this image's pixel coordinates (row, column; pixel centres are
        integers, so the centre of an ``H x W`` image is ``((H - 1) / 2, (W - 1) / 2)``).
    r_corner : float
        Distance in pixels from the optical centre to the corner of the full frame: the
        field radius ``rho = 1``.
    """

    cy: float
    cx: float
    r_corner: float

    @classmethod
    def of_image(cls, height: int, width: int) -> "Field":
        """The image is the whole frame, centred on the optical axis."""
        return cls((height - 1) / 2.0, (width - 1) / 2.0, math.hypot(height / 2.0, width / 2.0))

    @classmethod
    def of_crop(cls, frame_height: int, frame_width: int, top: int, left: int) -> "Field":
        """The image is the crop at (``top``, ``left``) of a centred frame of the given size."""
        frame = cls.of_image(frame_height, frame_width)
        return cls(frame.cy - top, frame.cx - left, frame.r_corner)

    def rho(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Normalised field radius (0 at the centre, 1 at the frame corner) of pixels (y, x)."""
        return np.hypot(np.asarray(y) - self.cy, np.asarray(x) - self.cx) / self.r_corner

    def angle(self, y: float, x: float) -> float:
        """Direction (radians, atan2(dy, dx)) from the optical centre to pixel (y, x)."""
        return math.atan2(y - self.cy, x - self.cx)


@dataclass(frozen=True)
class LensParams:
    """A lens + sensor geometry, in physical units.

    Attributes
    ----------
    fnumber : float
        Working f-number N; sets diffraction (Airy first-zero radius 1.22 * lambda * N).
    pixel_pitch_um : float
        Sensor pixel pitch in micrometres.
    aberration_px : float
        Standard deviation (px) of the elliptical aberration blur along the radial direction
        at the frame corner; it grows as ``rho ** 2`` from 0 at the centre, and the
        tangential axis is half as wide (astigmatism/coma-like, oriented along the radius).
    defocus_px : float
        Radius (px) of the defocus disk, the same over the whole field (0 = in focus).
    ca_red_px, ca_blue_px : float
        Lateral chromatic aberration: radial displacement (px, + = outwards) of the red and
        blue images relative to green at the frame corner; proportional to the radius.
    vignetting_ev : float
        Light fall-off at the frame corner in stops, with the cos^4-like profile of
        :func:`vignetting`.
    decenter_px : float
        Largest offset (px) of the optical centre from the frame centre, drawn at random by
        :func:`apply_lens` (a decentred element makes the blur asymmetric); 0 = centred.
    """

    fnumber: float = 5.6
    pixel_pitch_um: float = 4.0
    aberration_px: float = 0.0
    defocus_px: float = 0.0
    ca_red_px: float = 0.0
    ca_blue_px: float = 0.0
    vignetting_ev: float = 0.0
    decenter_px: float = 0.0

    def __post_init__(self) -> None:
        if self.fnumber <= 0 or self.pixel_pitch_um <= 0:
            raise ValueError("fnumber and pixel_pitch_um must be > 0")
        if min(self.aberration_px, self.defocus_px, self.vignetting_ev, self.decenter_px) < 0:
            raise ValueError("aberration_px, defocus_px, vignetting_ev and decenter_px must be >= 0")


def airy_profile(r_um: np.ndarray, fnumber: float, wavelength_nm: float) -> np.ndarray:
    """Airy pattern intensity ``(2 J1(v) / v) ** 2``, ``v = pi r / (lambda N)``, peak 1.

    Parameters
    ----------
    r_um : ndarray
        Distance from the centre in the image plane, micrometres.
    fnumber, wavelength_nm : float
        Working f-number and wavelength; the first zero lies at ``1.22 * lambda * N``.
    """
    lam_um = wavelength_nm * 1e-3
    v = np.pi * np.asarray(r_um, dtype=np.float64) / (lam_um * fnumber)
    safe = np.where(v == 0.0, 1.0, v)
    return np.where(v == 0.0, 1.0, (2.0 * special.j1(safe) / safe) ** 2)


def _default_radius(fnumber: float, wavelength_nm: float, pixel_pitch_um: float) -> int:
    """Kernel radius (px) covering the Airy disk and its first two bright rings."""
    first_zero_px = 1.22 * wavelength_nm * 1e-3 * fnumber / pixel_pitch_um
    return int(min(_MAX_RADIUS_PX, max(1, math.ceil(2.7 * first_zero_px) + 1)))


def _subpixel_grid(radius: int, oversample: int) -> np.ndarray:
    """Sample positions (px) of an oversampled grid, ``oversample`` per pixel, centred on 0."""
    n = 2 * radius + 1
    return (np.arange(n * oversample) + 0.5) / oversample - n / 2.0


def _bin(fine: np.ndarray, oversample: int) -> np.ndarray:
    """Sum ``oversample x oversample`` blocks: integration over each pixel's aperture."""
    n = fine.shape[0] // oversample
    return fine.reshape(n, oversample, n, oversample).sum(axis=(1, 3))


def airy_psf(
    fnumber: float,
    wavelength_nm: float,
    pixel_pitch_um: float,
    size: int | None = None,
    oversample: int = 8,
) -> np.ndarray:
    """Diffraction PSF of a circular aperture, integrated over square pixels of 100 % fill.

    Parameters
    ----------
    fnumber : float
        Working f-number N.
    wavelength_nm : float
        Wavelength in nanometres.
    pixel_pitch_um : float
        Pixel pitch in micrometres.
    size : int, optional
        Odd kernel width in pixels; by default wide enough for the first two rings.
    oversample : int
        Sub-samples per pixel and axis used to integrate over the pixel aperture.

    Returns
    -------
    ndarray, (size, size), float64
        Non-negative kernel centred on the middle pixel, summing to 1.
    """
    if fnumber <= 0 or wavelength_nm <= 0 or pixel_pitch_um <= 0 or oversample < 1:
        raise ValueError("fnumber, wavelength_nm, pixel_pitch_um and oversample must be > 0")
    radius = _default_radius(fnumber, wavelength_nm, pixel_pitch_um) if size is None else size // 2
    if size is not None and size % 2 == 0:
        raise ValueError(f"PSF size must be odd, got {size}")
    u = _subpixel_grid(radius, oversample) * pixel_pitch_um
    fine = airy_profile(np.hypot(u[:, None], u[None, :]), fnumber, wavelength_nm)
    psf = _bin(fine, oversample)
    return psf / psf.sum()


def diffraction_psfs(
    fnumber: float, pixel_pitch_um: float, size: int | None = None, oversample: int = 8
) -> np.ndarray:
    """Per-channel diffraction PSFs at :data:`WAVELENGTHS_NM` (R 610, G 540, B 465 nm).

    Returns
    -------
    ndarray, (3, size, size), float64
        One kernel per channel, each summing to 1; all the size of the red (widest) one.
    """
    if size is None:
        size = 2 * _default_radius(fnumber, max(WAVELENGTHS_NM), pixel_pitch_um) + 1
    return np.stack([airy_psf(fnumber, lam, pixel_pitch_um, size, oversample) for lam in WAVELENGTHS_NM])


def aberration_psf(
    sigma_radial: float,
    sigma_tangential: float,
    angle: float,
    defocus_radius: float = 0.0,
    size: int | None = None,
    oversample: int = 5,
) -> np.ndarray:
    """Elliptical Gaussian blur (oriented along ``angle``) convolved with a defocus disk.

    Parameters
    ----------
    sigma_radial, sigma_tangential : float
        Standard deviations in pixels along the radial direction ``angle`` and across it.
    angle : float
        Direction of the radial axis, radians (``atan2(dy, dx)``).
    defocus_radius : float
        Radius of the uniform defocus disk in pixels (0 = none).
    size : int, optional
        Odd kernel width; by default ``2 * ceil(3 sigma + radius) + 1``.
    oversample : int
        Sub-samples per pixel used to integrate the continuous kernel over each pixel.

    Returns
    -------
    ndarray, (size, size), float64
        Kernel summing to 1; the unit impulse when all blur parameters are 0.
    """
    smax = max(sigma_radial, sigma_tangential)
    if size is None:
        size = 2 * min(_MAX_RADIUS_PX, math.ceil(3.0 * smax + defocus_radius)) + 1
    radius = size // 2
    if smax < 1e-3 and defocus_radius < 1e-3:
        delta = np.zeros((size, size))
        delta[radius, radius] = 1.0
        return delta
    u = _subpixel_grid(radius, oversample)
    yy, xx = np.meshgrid(u, u, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    along = xx * c + yy * s
    across = -xx * s + yy * c
    fine = np.ones_like(along)
    if smax >= 1e-3:
        u = along / max(sigma_radial, 1e-3)
        v = across / max(sigma_tangential, 1e-3)
        fine = np.exp(-0.5 * (u * u + v * v))
    if defocus_radius >= 1e-3:
        disk = (np.hypot(yy, xx) <= defocus_radius).astype(np.float64)
        if disk.sum() == 0:  # radius below the sub-sample spacing: a point
            disk[disk.shape[0] // 2, disk.shape[1] // 2] = 1.0
        fine = disk if smax < 1e-3 else signal.fftconvolve(fine, disk, mode="same")
    psf = _bin(np.clip(fine, 0.0, None), oversample)
    return psf / psf.sum()


def _tent(coords: np.ndarray, nodes: np.ndarray, i: int) -> np.ndarray:
    """Bilinear (hat) weight of node ``i`` at ``coords``; the weights of all nodes sum to 1."""
    step = nodes[1] - nodes[0]
    return np.clip(1.0 - np.abs(coords - nodes[i]) / step, 0.0, 1.0)


def _node_support(nodes: np.ndarray, i: int, n: int) -> tuple[int, int]:
    """Pixel range [start, stop) where node ``i``'s hat weight is non-zero."""
    lo = 0 if i == 0 else int(math.floor(nodes[i - 1])) + 1
    hi = n if i == len(nodes) - 1 else int(math.ceil(nodes[i + 1]))
    return lo, hi


def field_blur(image: np.ndarray, psfs: np.ndarray) -> np.ndarray:
    """Spatially varying convolution by zones with bilinear blending.

    Parameters
    ----------
    image : ndarray, (H, W, C), float
        Linear-light image.
    psfs : ndarray, (G, G, k, k) or (G, G, k, k, C)
        PSF of each node of a ``G x G`` grid whose nodes sit at ``linspace(0, H - 1, G)`` x
        ``linspace(0, W - 1, G)`` (corners included); ``k`` odd; per-channel kernels in the
        last axis if given. ``G = 1`` is a plain (spatially invariant) convolution.

    Returns
    -------
    ndarray, (H, W, C), float32
        The blurred image. Borders are extended by reflection, as the scene continues.
    """
    img = np.asarray(image, dtype=np.float32)
    h, w, ch = img.shape
    if psfs.ndim == 4:
        psfs = psfs[..., None]
    g, k = psfs.shape[0], psfs.shape[2]
    r = k // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect" if min(h, w) > r else "edge")
    if g == 1:
        kernel = psfs[0, 0].astype(np.float32)
        return signal.fftconvolve(padded, kernel, mode="valid", axes=(0, 1)).astype(np.float32)
    ys, xs = np.linspace(0, h - 1, g), np.linspace(0, w - 1, g)
    out = np.zeros_like(img)
    for i in range(g):
        y0, y1 = _node_support(ys, i, h)
        if y1 <= y0:  # nodes closer than a pixel (tiny images): this one covers no pixel
            continue
        wy = _tent(np.arange(y0, y1, dtype=np.float64), ys, i).astype(np.float32)
        for j in range(g):
            x0, x1 = _node_support(xs, j, w)
            if x1 <= x0:
                continue
            wx = _tent(np.arange(x0, x1, dtype=np.float64), xs, j).astype(np.float32)
            crop = padded[y0 : y1 + 2 * r, x0 : x1 + 2 * r]
            conv = signal.fftconvolve(crop, psfs[i, j].astype(np.float32), mode="valid", axes=(0, 1))
            out[y0:y1, x0:x1] += wy[:, None, None] * wx[None, :, None] * conv
    return out


def lateral_ca(
    image: np.ndarray, scale_r: float, scale_b: float, field: Field | None = None
) -> np.ndarray:
    """Lateral chromatic aberration: magnify the red and blue images about the optical centre.

    Parameters
    ----------
    image : ndarray, (H, W, 3), float
        Linear RGB (green is the reference and is left unchanged).
    scale_r, scale_b : float
        Magnification of the red and blue images relative to green (1 = none; 1.001 moves
        a point at 1000 px from the centre 1 px outwards).
    field : Field, optional
        Optical centre; the image centre by default.

    Returns
    -------
    ndarray, (H, W, 3), float32
        Resampled with cubic splines; borders reflect.
    """
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape[:2]
    field = field or Field.of_image(h, w)
    out = img.copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for c, scale in ((0, scale_r), (2, scale_b)):
        if scale == 1.0:
            continue
        coords = [field.cy + (yy - field.cy) / scale, field.cx + (xx - field.cx) / scale]
        out[..., c] = ndimage.map_coordinates(img[..., c], coords, order=3, mode="reflect")
    return out


def vignetting(image: np.ndarray, strength_ev: float, field: Field | None = None) -> np.ndarray:
    """Darken towards the corners: ``(1 + k rho^2) ** -2`` with the corner ``strength_ev`` stops down.

    The profile is the cos^4 law of a lens whose corner field angle satisfies
    ``tan^2 = k = 2 ** (strength_ev / 2) - 1`` (natural vignetting; optical vignetting of
    a wide-open lens has a similar shape).

    Parameters
    ----------
    image : ndarray, (H, W, C), float
        Linear-light image.
    strength_ev : float
        Light loss at the frame corner in stops (0 = none).
    field : Field, optional
        Optical centre and frame size; the image itself by default.
    """
    img = np.asarray(image, dtype=np.float32)
    if strength_ev == 0:
        return img.copy()
    h, w = img.shape[:2]
    field = field or Field.of_image(h, w)
    yy, xx = np.mgrid[0:h, 0:w]
    k = 2.0 ** (strength_ev / 2.0) - 1.0
    gain = (1.0 + k * field.rho(yy, xx) ** 2) ** -2
    return img * gain.astype(np.float32)[..., None]


def _zone_psfs(params: LensParams, field: Field, height: int, width: int, zones: int) -> np.ndarray:
    """(G, G, k, k, 3) node PSFs: per-channel diffraction convolved with the node's aberration.

    Both kernels are integrated over the pixel aperture, so the aperture is counted twice
    for the aberration part: an extra 1/12 px^2 of variance per axis, small next to the blur
    it comes with, and absent where the aberration is 0 (its kernel is then the unit impulse).
    """
    diffraction = diffraction_psfs(params.fnumber, params.pixel_pitch_um)
    aber_radius = min(_MAX_RADIUS_PX, math.ceil(3.0 * params.aberration_px + params.defocus_px))
    size = diffraction.shape[-1] + 2 * aber_radius
    ys = np.linspace(0, height - 1, zones) if zones > 1 else np.array([(height - 1) / 2.0])
    xs = np.linspace(0, width - 1, zones) if zones > 1 else np.array([(width - 1) / 2.0])
    out = np.empty((len(ys), len(xs), size, size, 3))
    for i, y in enumerate(ys):
        for j, x in enumerate(xs):
            rho = float(field.rho(y, x))
            sigma = params.aberration_px * rho**2
            angle = field.angle(y, x)
            aber = aberration_psf(sigma, 0.5 * sigma, angle, params.defocus_px, 2 * aber_radius + 1)
            for c in range(3):
                out[i, j, :, :, c] = signal.fftconvolve(diffraction[c], aber, mode="full")
    return out


def apply_lens(
    image: np.ndarray,
    params: LensParams,
    rng: np.random.Generator | None = None,
    *,
    field: Field | None = None,
    zones: int = 5,
) -> np.ndarray:
    """The whole lens: lateral CA, diffraction + field-varying aberration blur, vignetting.

    Parameters
    ----------
    image : ndarray, (H, W, 3), float
        Linear camera (or scene) RGB, not clipped.
    params : LensParams
        The lens; see its attributes for units.
    rng : numpy.random.Generator, optional
        Needed only when ``params.decenter_px > 0`` (draws the decentring).
    field : Field, optional
        Where the image lies in the frame; the whole frame by default.
    zones : int
        Nodes per axis of the PSF grid (3 to 5 is plenty; 1 = spatially invariant).

    Returns
    -------
    ndarray, (H, W, 3), float32
        Linear RGB, not clipped.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"apply_lens expects an (H, W, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    field = field or Field.of_image(h, w)
    if params.decenter_px > 0:
        if rng is None:
            raise ValueError("LensParams.decenter_px > 0 needs an rng")
        offset = params.decenter_px * math.sqrt(rng.uniform())
        theta = rng.uniform(0.0, 2.0 * math.pi)
        cy, cx = field.cy + offset * math.sin(theta), field.cx + offset * math.cos(theta)
        field = Field(cy, cx, field.r_corner)
    if params.ca_red_px or params.ca_blue_px:
        scale_r = 1.0 + params.ca_red_px / field.r_corner
        scale_b = 1.0 + params.ca_blue_px / field.r_corner
        img = lateral_ca(img, scale_r, scale_b, field)
    img = field_blur(img, _zone_psfs(params, field, h, w, zones))
    return vignetting(img, params.vignetting_ev, field)


def random_lens_params(rng: np.random.Generator) -> LensParams:
    """A random, plausible lens for training.

    f/1.4 to f/16 (log-uniform), 3 to 6 um pixels, corner aberration up to 2.5 px, a little
    defocus in a quarter of the draws, lateral CA up to 1.5 px per channel with either sign,
    vignetting up to 1.5 EV.
    """
    return LensParams(
        fnumber=float(2.0 ** rng.uniform(math.log2(1.4), math.log2(16.0))),
        pixel_pitch_um=float(rng.uniform(3.0, 6.0)),
        aberration_px=float(rng.uniform(0.0, 2.5)),
        defocus_px=float(rng.uniform(0.0, 1.0)) if rng.uniform() < 0.25 else 0.0,
        ca_red_px=float(rng.uniform(-1.5, 1.5)),
        ca_blue_px=float(rng.uniform(-1.5, 1.5)),
        vignetting_ev=float(rng.uniform(0.0, 1.5)),
    )
