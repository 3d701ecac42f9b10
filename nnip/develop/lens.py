"""The lens stage's work: lensfun profile corrections, then the neural deblur.

``--lens`` modes (:data:`LENS_MODES`): ``off`` (the stage is disabled: the pipeline is
exactly the pipeline without it), ``profile`` (lensfun only), ``deblur`` (network only; a
missing model is an error), ``auto`` (both where possible; a missing profile or model is a
one-line notice). Both parts work on the demosaicked, linear, NOT white-balanced camera RGB
(1 = the sensor's white level), where a sensor clip is at 1 in every channel.

Lateral CA (TCA) is not corrected here but on the Bayer mosaic, before the demosaic, by
the ``lateral-ca`` stage (:mod:`nnip.develop.tca`: the profile's TCA for a known lens, or
with ``deblur`` measured in the image), which ``--lens`` drives too: a demosaic absorbs part of a
misregistration, frequency by frequency, so no resampling of demosaicked RGB can realign
it (0.27 px left on the lens benchmark's checkerboard, against 0.05 px on the mosaic).
The network (trained for lateral CA from none up to 1.5 px) sees what is left.

Order inside the stage: vignetting, then one resampling for distortion, then the network.
lensfun's vignetting model is defined on the captured geometry, so it goes first.

Profile corrections (:func:`find_lens_profile`, :func:`apply_profile`) use the lensfun
database shipped in the ``lensfunpy`` wheel for the *data*: the camera's crop factor and the
lens's calibration interpolated at the shot's focal length, f-number and distance. The
models themselves are evaluated here (lensfun's own coordinate output jitters by up to
0.5 px from pixel to pixel in lensfunpy 1.18): with ``n`` = half the shorter image side
(between the outermost pixel centres, as lensfun measures it) times ``crop(camera) /
crop(calibration)``, ``r = distance from the centre / n``:

* distortion ``poly3``: ``r_d = r (1 - k1 + k1 r^2)``; ``poly5``: ``r_d = r (1 + k1 r^2 +
  k2 r^4)``; ``ptlens``: ``r_d = r (a r^3 + b r^2 + c r + 1 - a - b - c)``;
* TCA ``linear``: ``r_c = k_c r``; ``poly3``: ``r_c = r (b_c r^2 + c_c r + v_c)`` for the red
  and blue images, taken at the distorted position of the green one;
* vignetting ``pa``: gain ``1 / (1 + k1 r^2 + k2 r^4 + k3 r^6)`` with ``r`` normalised to
  the half *diagonal* between corner pixel centres (times the same crop ratio).

These match lensfunpy's own output to its jitter (tests/develop/test_lens.py). The output
keeps the frame size; a zoom (``scale``, lensfun's "auto scale") is chosen so that no pixel
of the output samples outside the captured image. Resampling is a cubic spline (scipy).

The neural deblur (task ``lens``) - model contract:

- input ``image`` (layout ``rgb``, 3 channels, transfer ``srgb``): the linear camera RGB
  above encoded with the sRGB curve (mirrored through 0 for negative noise), not clipped;
- input ``optics`` (layout ``optics``, 4 channels): :func:`nnip.develop.optics.optics_planes`
  of the frame (Airy radius, field radius, cos and sin of the field angle);
- output ``rgb`` (3 channels): the corrected image, same encoding, not clipped.

Where a channel of the input is clipped (at or above :data:`CLIP_LEVEL`), the input value is
kept (the network does the same inside, so training and inference agree): what the sensor
lost cannot be recovered, and leaving it untouched keeps the highlight stage's view of
clipped pixels and cannot ring. Around clipped pixels, within the blur's reach
(:func:`clip_guard_px`), the correction may darken but not brighten: the halo there is
light spilled from a source whose true brightness and shape the clip hid, so the network
cannot know how much of it to pull back in, and raising it is exactly the overshoot
deconvolution is known for (issue 7's highlight bar). The guard is full up to that reach
and fades out over as much again, so it leaves no seam.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from nnip.core.errors import ModelError
from nnip.core.models import find_model
from nnip.core.parallel import for_each_strip
from nnip.develop.colour import channel_max, decode_transfer, encode_transfer
from nnip.develop.optics import OpticsMap, optics_for_frame

if TYPE_CHECKING:
    from nnip.core.engine import Engine
    from nnip.core.models import ModelSpec, Registry
    from nnip.develop.pipeline import DevelopFrame

__all__ = [
    "LENS_MODES",
    "CLIP_LEVEL",
    "clip_guard_px",
    "clip_guard_weight",
    "clipped_rows",
    "LENS_SCORE_MIN",
    "parse_lens",
    "lensfun_database",
    "find_camera",
    "LensProfile",
    "ProfileCorrection",
    "find_lens_profile",
    "profile_correction",
    "vignetting_gain",
    "source_coordinates",
    "apply_profile",
    "check_lens_model",
    "deblur",
    "Lens",
]

#: Every ``--lens`` value.
LENS_MODES = ("auto", "off", "deblur", "profile")
#: Linear camera value from which a channel counts as clipped (demosaicking spreads the
#: sensor's clip at 1 a little below it).
CLIP_LEVEL = 0.98
#: Smallest lensfun match score accepted for a lens name (an exact name scores 85, Canon's
#: own ``EF24-70mm f/2.8L II USM`` spelling about 52, a bare ``50mm`` under 40).
LENS_SCORE_MIN = 50
#: Focus distance (m) assumed for vignetting: EXIF rarely has it; lensfun's own default.
DEFAULT_DISTANCE_M = 1000.0

#: Airy radius (px) the highlight guard assumes when the optics map is blind.
_BLIND_GUARD_AIRY_PX = 4.0
_STRIP_ROWS = 256  # rows resampled at once (bounds the coordinate arrays' memory)
_SPLINE_MARGIN = 20  # rows of context for a strip's cubic-spline prefilter


def parse_lens(value: str | None) -> str:
    """``--lens`` value -> one of :data:`LENS_MODES` (None -> ``off``).

    Raises
    ------
    ValueError
        Anything else (the CLI turns it into a usage error).
    """
    text = "off" if value is None else str(value).strip().lower()
    if text not in LENS_MODES:
        raise ValueError(f"lens {value!r} is not one of {', '.join(LENS_MODES)}")
    return text


# --------------------------------------------------------------------------- lensfun


@functools.lru_cache(maxsize=1)
def lensfun_database() -> Any:
    """The lensfun database of the ``lensfunpy`` wheel (read once per process, ~0.3 s);
    None when ``lensfunpy`` is not installed."""
    try:
        import lensfunpy
    except ImportError:
        return None
    return lensfunpy.Database()


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def find_camera(make: str, model: str) -> Any:
    """The lensfun camera for EXIF/LibRaw ``make`` and ``model``, or None.

    LibRaw drops the maker from the model (``Canon`` + ``EOS 5D Mark III``) while lensfun
    keeps it (``Canon EOS 5D Mark III``): both spellings are tried, then a loose search
    whose result must name the same model once punctuation and the maker are ignored.
    """
    database = lensfun_database()
    if database is None or not model.strip():
        return None
    maker = make.strip() or None
    for name in (model.strip(), f"{make.strip()} {model.strip()}".strip()):
        found = database.find_cameras(maker, name)
        if found:
            return found[0]
    wanted = _norm(model)
    for camera in database.find_cameras(maker, model.strip(), loose_search=True):
        found_name = _norm(camera.model)
        if found_name == wanted or found_name == _norm(camera.maker) + wanted:
            return camera
    return None


@dataclass(frozen=True, eq=False)
class LensProfile:
    """A matched lensfun camera + lens.

    Attributes
    ----------
    camera_name, lens_name : str
        lensfun's names.
    crop_ratio : float
        ``crop(camera) / crop(lens calibration)``: how much of the calibrated field the
        image covers.
    centre : (float, float)
        Lens centre offset (x, y) in normalised units (lensfun's ``center_x/y``).
    lens : lensfunpy.Lens
        For interpolating the calibration.
    """

    camera_name: str
    lens_name: str
    crop_ratio: float
    centre: tuple[float, float]
    lens: Any = field(repr=False)

    def describe(self) -> str:
        return f"{self.lens_name} on {self.camera_name}"


def find_lens_profile(
    make: str, model: str, lens: str, focal_length_mm: float | None = None
) -> tuple[LensProfile | None, str]:
    """Match EXIF names against the lensfun database.

    Parameters
    ----------
    make, model, lens : str
        Camera maker and model, lens model (EXIF LensModel as LibRaw reads it).
    focal_length_mm : float, optional
        Rejects a lens whose focal range does not hold it (a mis-match).

    Returns
    -------
    profile : LensProfile or None
    reason : str
        Empty on a match; else why there is none (one line, for a notice).
    """
    if lensfun_database() is None:
        return None, "lensfunpy is not installed"
    camera = find_camera(make, model)
    shown = f"{make} {model}".strip() or "unknown camera"
    if camera is None:
        return None, f"camera {shown!r} is not in the lensfun database"
    if not lens.strip():
        return None, "no lens name in EXIF"
    candidates = lensfun_database().find_lenses(camera, None, lens.strip())
    if not candidates or candidates[0].score < LENS_SCORE_MIN:
        return None, f"no lensfun profile for lens {lens.strip()!r}"
    best = candidates[0]
    if len(candidates) > 1 and candidates[1].score == best.score:
        return None, f"lens {lens.strip()!r} matches several lensfun profiles"
    if focal_length_mm and not (best.min_focal * 0.99 <= focal_length_mm <= best.max_focal * 1.01):
        return None, (f"lensfun's {best.model!r} does not cover {focal_length_mm:g} mm "
                      "(wrong match)")
    crop_ratio = float(camera.crop_factor) / float(best.crop_factor or camera.crop_factor)
    return LensProfile(
        camera_name=str(camera.model), lens_name=str(best.model), crop_ratio=crop_ratio,
        centre=(float(best.center_x), float(best.center_y)), lens=best,
    ), ""


# --------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class ProfileCorrection:
    """The lens calibration at one focal length / f-number, ready to evaluate.

    ``distortion``: (model name, terms) or None; ``tca``: (model name, terms) or None;
    ``vignetting``: (k1, k2, k3) or None; ``crop_ratio`` and ``centre`` as in
    :class:`LensProfile`.
    """

    distortion: tuple[str, tuple[float, ...]] | None
    tca: tuple[str, tuple[float, ...]] | None
    vignetting: tuple[float, float, float] | None
    crop_ratio: float = 1.0
    centre: tuple[float, float] = (0.0, 0.0)

    @property
    def geometric(self) -> bool:
        """True when there is something to resample for."""
        return self.distortion is not None or self.tca is not None


def profile_correction(
    profile: LensProfile,
    focal_length_mm: float,
    fnumber: float | None,
    *,
    distance_m: float = DEFAULT_DISTANCE_M,
    distortion: bool = True,
    tca: bool = True,
    vignetting: bool = True,
) -> ProfileCorrection:
    """Interpolate ``profile``'s calibration at the shot's settings.

    Vignetting needs the f-number (None -> no vignetting correction). Models this module
    does not evaluate (none so far in lensfun's database) are left out.
    """
    lens = profile.lens
    dist = lens.interpolate_distortion(float(focal_length_mm)) if distortion else None
    ca = lens.interpolate_tca(float(focal_length_mm)) if tca else None
    vig = None
    if vignetting and fnumber:
        vig = lens.interpolate_vignetting(float(focal_length_mm), float(fnumber), float(distance_m))
    dist_model = _model_name(dist)
    tca_model = _model_name(ca)
    vig_ok = vig is not None and _model_name(vig) == "pa"
    return ProfileCorrection(
        distortion=(dist_model, tuple(float(t) for t in dist.terms))
        if dist_model in ("poly3", "poly5", "ptlens") else None,
        tca=(tca_model, tuple(float(t) for t in ca.terms))
        if tca_model in ("linear", "poly3") else None,
        vignetting=tuple(float(t) for t in vig.terms[:3]) if vig_ok else None,  # type: ignore[arg-type]
        crop_ratio=profile.crop_ratio,
        centre=profile.centre,
    )


def _model_name(calibration: Any) -> str:
    if calibration is None:
        return ""
    return str(getattr(calibration.model, "name", calibration.model)).lower()


def _distort(r: np.ndarray, model: str, terms: Sequence[float]) -> np.ndarray:
    """Distorted radius / undistorted radius (lensfun's models; module notes)."""
    if model == "poly3":
        k1 = np.float32(terms[0])
        return (np.float32(1.0) - k1) + k1 * r * r
    if model == "poly5":
        k1, k2 = np.float32(terms[0]), np.float32(terms[1])
        r2 = r * r
        return np.float32(1.0) + (k1 + k2 * r2) * r2
    a, b, c = (np.float32(t) for t in terms[:3])
    return ((a * r + b) * r + c) * r + (np.float32(1.0) - a - b - c)


def _tca_factor(r: np.ndarray, model: str, terms: Sequence[float], channel: int) -> np.ndarray:
    """Radius factor of the red (channel 0) or blue (2) image against green."""
    index = 0 if channel == 0 else 1
    if model == "linear":
        return np.full_like(r, terms[index])
    v, c, b = (np.float32(terms[i]) for i in (index, 2 + index, 4 + index))
    return (b * r + c) * r + v


def _geometry(height: int, width: int, correction: ProfileCorrection) -> tuple[float, float, float]:
    """Centre (x, y) in pixels and ``n`` (pixels per normalised distortion unit)."""
    n = (min(height, width) - 1) / 2.0 * correction.crop_ratio
    cx = (width - 1) / 2.0 + correction.centre[0] * n
    cy = (height - 1) / 2.0 + correction.centre[1] * n
    return cx, cy, n


def vignetting_gain(
    rows: np.ndarray, cols: np.ndarray, height: int, width: int, correction: ProfileCorrection
) -> np.ndarray:
    """The brightening (>= 1 where the lens darkens) at pixels (rows, cols), float32."""
    if correction.vignetting is None:
        return np.ones(np.broadcast(rows, cols).shape, dtype=np.float32)
    k1, k2, k3 = correction.vignetting
    cx, cy, _ = _geometry(height, width, correction)
    n = math.hypot(height - 1, width - 1) / 2.0 * correction.crop_ratio
    r2 = ((np.asarray(cols, np.float64) - cx) ** 2 + (np.asarray(rows, np.float64) - cy) ** 2) / n**2
    falloff = 1.0 + k1 * r2 + k2 * r2**2 + k3 * r2**3
    return (1.0 / np.maximum(falloff, 1e-3)).astype(np.float32)


def source_coordinates(
    rows: np.ndarray, cols: np.ndarray, height: int, width: int,
    correction: ProfileCorrection, scale: float = 1.0,
) -> np.ndarray:
    """Where output pixels (rows, cols) sample the captured image, per channel.

    Parameters
    ----------
    rows, cols : ndarray
        Output pixel coordinates, broadcastable (a column of rows and a row of columns).
    scale : float
        Zoom of the output about the centre (> 1 magnifies).

    Returns
    -------
    ndarray, float32, shape (3, 2) + broadcast shape
        ``[channel, (row, col), ...]``: green (and red/blue without TCA) at the distorted
        position of the output pixel; red and blue further scaled by their TCA factor
        about the centre. float32 holds positions to 1/2000 px on a 10000 px image.
    """
    cx, cy, n = _geometry(height, width, correction)
    ux = ((np.asarray(cols, np.float64) - cx) / (n * scale)).astype(np.float32)
    uy = ((np.asarray(rows, np.float64) - cy) / (n * scale)).astype(np.float32)
    shape = np.broadcast(ux, uy).shape
    if correction.distortion is not None:
        factor = _distort(np.sqrt(ux * ux + uy * uy), *correction.distortion)
        ux, uy = ux * factor, uy * factor
    ux, uy = np.broadcast_to(ux, shape), np.broadcast_to(uy, shape)
    out = np.empty((3, 2) + shape, dtype=np.float32)
    r = np.sqrt(ux * ux + uy * uy) if correction.tca is not None else None
    for channel in range(3):
        if r is not None and channel != 1:
            f = _tca_factor(r, correction.tca[0], correction.tca[1], channel) * np.float32(n)
            np.multiply(uy, f, out=out[channel, 0])
            np.multiply(ux, f, out=out[channel, 1])
        else:
            np.multiply(uy, np.float32(n), out=out[channel, 0])
            np.multiply(ux, np.float32(n), out=out[channel, 1])
        out[channel, 0] += np.float32(cy)
        out[channel, 1] += np.float32(cx)
    return out


def _auto_scale(height: int, width: int, correction: ProfileCorrection) -> float:
    """Smallest zoom (0.5..2) for which every output border pixel samples inside the image
    (lensfun's "auto scale": no empty corners, as much of the field as fits)."""
    ys = np.concatenate([np.zeros(64), np.full(64, height - 1.0), np.linspace(0, height - 1, 64),
                         np.linspace(0, height - 1, 64)])
    xs = np.concatenate([np.linspace(0, width - 1, 64), np.linspace(0, width - 1, 64),
                         np.zeros(64), np.full(64, width - 1.0)])

    def inside(scale: float) -> bool:
        c = source_coordinates(ys, xs, height, width, correction, scale)
        return bool((c[:, 0] >= -0.01).all() and (c[:, 0] <= height - 0.99).all()
                    and (c[:, 1] >= -0.01).all() and (c[:, 1] <= width - 0.99).all())

    low, high = 0.5, 2.0
    if inside(low):
        return low
    for _ in range(40):
        mid = 0.5 * (low + high)
        low, high = (low, mid) if inside(mid) else (mid, high)
    return high


def apply_profile(
    rgb: np.ndarray, correction: ProfileCorrection, *, order: int = 3,
    scale: float | None = None,
) -> np.ndarray:
    """Vignetting, then distortion (and TCA, if ``correction`` has it) in one resampling.

    Parameters
    ----------
    rgb : ndarray, float32, shape (H, W, 3)
        Linear camera RGB (any white balance), not clipped.
    correction : ProfileCorrection
    order : int
        Spline order of the resampling (3 cubic, 1 bilinear).
    scale : float, optional
        Zoom about the centre; None: the smallest that samples no pixel outside the image
        (outside samples mirror the border).

    Returns
    -------
    ndarray, float32, shape (H, W, 3)
        Corrected, same size; not clipped (vignetting correction can exceed 1).
    """
    from scipy import ndimage

    image = np.asarray(rgb, dtype=np.float32)
    height, width = image.shape[:2]
    if correction.vignetting is not None:
        rows = np.arange(height, dtype=np.float64)[:, None]
        cols = np.arange(width, dtype=np.float64)[None, :]
        image = image * vignetting_gain(rows, cols, height, width, correction)[..., None]
    if not correction.geometric:
        return np.ascontiguousarray(image, dtype=np.float32)
    scale = _auto_scale(height, width, correction) if scale is None else float(scale)
    out = np.empty((height, width, 3), dtype=np.float32)
    cols = np.arange(width, dtype=np.float64)[None, :]
    for top in range(0, height, _STRIP_ROWS):
        rows = np.arange(top, min(top + _STRIP_ROWS, height), dtype=np.float64)[:, None]
        coords = source_coordinates(rows, cols, height, width, correction, scale)
        # The spline coefficients of just the source rows this strip reads, plus a margin
        # over which the prefilter's recursion decays to float precision (0.27^20 < 1e-11):
        # the result equals the whole image's, with memory of a strip, not of the image.
        low = max(0, int(np.floor(coords[:, 0].min())) - _SPLINE_MARGIN)
        high = min(height, int(np.ceil(coords[:, 0].max())) + _SPLINE_MARGIN + 1)
        coords[:, 0] -= np.float32(low)
        for channel in range(3):
            plane = image[low:high, :, channel]
            if order > 1:
                plane = ndimage.spline_filter(plane, order=order, output=np.float32,
                                              mode="mirror")
            out[top:top + rows.shape[0], :, channel] = ndimage.map_coordinates(
                plane, coords[channel], order=order, mode="mirror", prefilter=False)
    return out


# --------------------------------------------------------------------------- the network


def check_lens_model(spec: "ModelSpec") -> tuple[int, int]:
    """Positions of the ``rgb`` image input and the ``optics`` input of a lens model.

    Raises
    ------
    ModelError
        The spec does not follow the lens contract (module notes).
    """
    layouts = [t.layout for t in spec.inputs]
    problems = []
    if "lens" not in spec.tasks:
        problems.append("task 'lens'")
    if len(layouts) != 2 or "rgb" not in layouts or "optics" not in layouts:
        problems.append("two inputs, rgb and optics")
    else:
        if spec.inputs[layouts.index("rgb")].channels != 3:
            problems.append("a 3-channel rgb input")
        if spec.inputs[layouts.index("optics")].channels != 4:
            problems.append("a 4-channel optics input")
    if spec.outputs[0].channels != 3 or spec.scale != 1:
        problems.append("a 3-channel output at scale 1")
    if problems:
        raise ModelError(f"model {spec.name!r} cannot correct lenses here: the lens stage "
                         "needs " + " and ".join(problems))
    return layouts.index("rgb"), layouts.index("optics")


def clip_guard_px(airy_radius_px: float | None) -> int:
    """How far (px) from a clipped pixel the correction may not brighten: two Airy radii
    (the diffraction halo's first rings) plus 4 px for aberration blur; a blind map
    assumes the f/16-f/22 diffraction of a small-pixel camera."""
    airy = _BLIND_GUARD_AIRY_PX if airy_radius_px is None else float(airy_radius_px)
    return int(math.ceil(2.0 * airy)) + 4


def clipped_rows(image: np.ndarray) -> np.ndarray:
    """bool (H,): whether row y of ``image`` (H, W, C) holds a clipped value (>= CLIP_LEVEL)."""
    # One reduction along each contiguous row of W * C values (a reduction over the last
    # axis of length 3 runs numpy's inner loop 3 values at a time: ~10x slower).
    rows = np.ascontiguousarray(image).reshape(image.shape[0], -1)
    return rows.max(axis=1, initial=-np.inf) >= CLIP_LEVEL


def clip_guard_weight(
    image: np.ndarray, rows: slice, guard_px: int, row_clipped: np.ndarray | None = None
) -> np.ndarray | None:
    """Rows ``rows`` of the guard around clipped pixels (module notes), float32 (h, W).

    1 within ``guard_px`` (Chebyshev distance) of a pixel with a clipped channel, fading to
    0 at about twice that; None when no clipped pixel is near (the common case). Works on a
    window of the rows plus a margin, so a strip's guard equals the whole image's.
    ``row_clipped``: :func:`clipped_rows` of ``image`` when the caller has it (a strip far
    from any clipped row then costs nothing).
    """
    from scipy import ndimage

    half = guard_px // 2  # the fade: a box of 2 half + 1 over the mask dilated by guard + half
    reach = guard_px + half
    margin = reach + half + 1
    top, bottom = max(0, rows.start - margin), min(image.shape[0], rows.stop + margin)
    if row_clipped is not None and not row_clipped[top:bottom].any():
        return None
    clipped = channel_max(image[top:bottom]) >= CLIP_LEVEL
    if not clipped.any():
        return None
    near = ndimage.maximum_filter(clipped.view(np.uint8), size=2 * reach + 1, mode="constant")
    weight = ndimage.uniform_filter(near.astype(np.float32), size=2 * half + 1, mode="nearest")
    return weight[rows.start - top:rows.stop - top]


def deblur(
    rgb: np.ndarray,
    optics: OpticsMap,
    engine: "Engine",
    spec: "ModelSpec",
    *,
    tile: int | None = None,
) -> np.ndarray:
    """Correct lens blur and residual lateral CA with the network ``spec``.

    Parameters
    ----------
    rgb : ndarray, float32, shape (H, W, 3)
        Linear camera RGB, not white balanced, 1 = white level, not clipped.
    optics : OpticsMap
        Of this frame (its size must be H x W).
    engine, spec
        The engine and a model following the lens contract (module notes).
    tile : int, optional
        Engine tile edge.

    Returns
    -------
    ndarray, float32, shape (H, W, 3)
        Same units, not clipped; clipped input values (>= :data:`CLIP_LEVEL`) kept, and
        no pixel near them brighter than it was (module notes).
    """
    image = np.asarray(rgb, dtype=np.float32)
    if (optics.height, optics.width) != image.shape[:2]:
        raise ValueError(f"optics map of {optics.width}x{optics.height} for an image of "
                         f"{image.shape[1]}x{image.shape[0]}")
    image_at, optics_at = check_lens_model(spec)
    height = image.shape[0]
    encoded = np.empty((3,) + image.shape[:2], dtype=np.float32)
    # Encoding and decoding go strip by strip (on 24 MP each full-size temporary is 290 MB),
    # the strips shared out over the cores (nnip.core.parallel).
    in_transfer, out_transfer = spec.inputs[image_at].transfer, spec.outputs[0].transfer

    def encode(rows: slice) -> None:
        encoded[:, rows] = np.moveaxis(encode_transfer(image[rows], in_transfer, workers=1), -1, 0)

    for_each_strip(height, encode, strip_rows=_STRIP_ROWS)
    inputs: list[Any] = [None, None]
    # The optics map goes in as a TileSource: made per tile, never whole (384 MB on 24 MP).
    inputs[image_at], inputs[optics_at] = encoded, optics
    del encoded
    output = engine.run(spec, inputs, tile=tile)
    del inputs
    corrected = np.empty_like(image)
    guard_px = clip_guard_px(optics.airy_radius_px)
    row_clipped = clipped_rows(image)

    def decode(rows: slice) -> None:
        # Decoded on the planes as the engine returns them (contiguous rows: several times
        # faster than on an interleaved view), then seen as (h, W, 3).
        block = np.moveaxis(decode_transfer(output[:, rows], out_transfer, workers=1), 0, -1)
        before = image[rows]
        guard = clip_guard_weight(image, rows, guard_px, row_clipped)
        if guard is not None:
            block -= np.maximum(block - before, 0.0) * guard[..., None]
        if row_clipped[rows].any():
            clipped = before >= CLIP_LEVEL
            block[clipped] = before[clipped]
        corrected[rows] = block

    for_each_strip(height, decode, strip_rows=_STRIP_ROWS)
    return corrected


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True, eq=False)
class Lens:
    """The pipeline's lens stage: demosaicked camera RGB, before white balance.

    ``requested`` is what ``--lens`` said (:data:`LENS_MODES`). ``off`` disables the stage,
    so the pipeline is then exactly the pipeline without it. The frame's ``optics`` field
    receives the :class:`~nnip.develop.optics.OpticsMap` used.
    """

    requested: str = "off"
    engine: "Engine | None" = None
    registry: "Registry | None" = None
    model: str | None = None
    tile: int | None = None
    name: str = "lens"

    def __post_init__(self) -> None:
        object.__setattr__(self, "requested", parse_lens(self.requested))

    @property
    def enabled(self) -> bool:
        return self.requested != "off"

    @property
    def wants_profile(self) -> bool:
        return self.requested in ("auto", "profile")

    @property
    def wants_deblur(self) -> bool:
        return self.requested in ("auto", "deblur")

    def describe(self) -> str:
        if not self.enabled:
            return "lens: off"
        parts = []
        if self.wants_profile:
            parts.append("lensfun profile (vignetting, distortion)")
        if self.wants_deblur:
            parts.append(f"nn deblur (model {self.model or 'first installed for task lens'})")
        return f"lens: {self.requested}: " + " + ".join(parts)

    def apply(self, frame: "DevelopFrame") -> "DevelopFrame":
        if frame.space != "camera" or frame.pixels.ndim != 3:
            raise RuntimeError(f"stage lens expects camera RGB pixels, got {frame.space!r}")
        raw = frame.raw
        pixels = frame.pixels
        if self.wants_profile:
            pixels, notice = self._profile(frame)
            # auto (the default) corrects where a profile matches and says nothing where
            # none does: a batch of an unlisted lens would print a line per file.
            if notice and self.requested == "profile":
                frame = frame.with_notice(notice)
        optics = optics_for_frame(raw)
        if self.wants_deblur:
            spec = self._spec(optics)
            if spec is not None:  # None: plain auto without a model or an engine
                if optics.notice:
                    frame = frame.with_notice(optics.notice)
                pixels = deblur(pixels, optics, self.engine, spec, tile=self.tile)
        return frame.replace(pixels=pixels, optics=optics)

    def _profile(self, frame: "DevelopFrame") -> tuple[np.ndarray, str]:
        raw = frame.raw
        profile, reason = find_lens_profile(raw.make, raw.model, raw.lens, raw.focal_length)
        if profile is None:
            return frame.pixels, f"lens profile: {reason}; profile corrections skipped"
        if not raw.focal_length:
            return frame.pixels, ("lens profile: no focal length in EXIF; profile corrections "
                                  "skipped")
        # TCA was corrected on the mosaic (the lateral-ca stage).
        correction = profile_correction(profile, raw.focal_length, raw.fnumber, tca=False)
        notice = "" if raw.fnumber else "lens profile: no f-number in EXIF; vignetting not corrected"
        return apply_profile(frame.pixels, correction), notice

    def _spec(self, optics: OpticsMap) -> "ModelSpec | None":
        """The lens model; None when the mode is ``auto`` and none is installed, there is no
        engine, or the optics map is blind."""
        if self.requested == "auto" and optics.blind:
            # Blind deblurring is opt-in (--lens deblur): without the f-number and pixel
            # pitch the network assumes a typical blur, and on a sharp frame that is
            # over-sharpening (an optics-free simulated DNG: 40.4 -> 32.1 dB).
            return None
        optional = self.requested == "auto" and self.model is None
        spec = find_model("lens", self.model, self.registry, optional=optional)
        if spec is None:
            return None
        if self.engine is None:
            if self.requested == "auto":
                return None
            raise ValueError("lens deblur needs an Engine")
        return spec
