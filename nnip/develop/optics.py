"""The optics map: what the lens stage knows about the lens from the EXIF, as image planes.

The lens network (task ``lens``) is conditioned on an ``optics`` input of 4 channels, the
same height and width as the image, built here by :func:`optics_planes` - the one function
training (:mod:`nnip.train.lens_task`) and inference (:mod:`nnip.develop.lens`) both use:

====  ==================  ===========================================================
ch    name                value
====  ==================  ===========================================================
0     ``airy_radius_px``  Airy first-zero radius ``1.22 * 550 nm * N / pitch`` in
                          pixels, the same everywhere; :data:`BLIND_AIRY_PX` (-1, a
                          value no lens has) when the f-number or the pixel pitch is
                          unknown ("blind mode": the network judges the blur alone)
1     ``field_radius``    normalised distance from the optical centre, 0 at the centre,
                          1 at the frame corner (``rho``; aberrations grow with it)
2     ``cos_angle``       cosine of the direction from the centre, ``atan2(dy, dx)``
3     ``sin_angle``       sine of that direction (aberration blur is oriented along it,
                          lateral colour is displaced along it)
====  ==================  ===========================================================

The optical centre is taken as the frame centre. The pixel pitch comes, in order of trust,
from the EXIF focal-plane resolution (the file's own statement), from
:data:`SENSOR_WIDTH_MM` (a small table of common bodies), or from lensfun's crop factor
for the camera (when ``lensfunpy`` is installed); a pitch outside 0.8..15 um is not
believed (a thumbnail-sized simulated DNG named after a real body, say). Nothing here
opens a file: the EXIF values come from :class:`~nnip.raw.frame.RawFrame`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from nnip.raw.frame import RawFrame

__all__ = [
    "WAVELENGTH_NM",
    "BLIND_AIRY_PX",
    "OPTICS_CHANNELS",
    "SENSOR_WIDTH_MM",
    "PITCH_RANGE_UM",
    "FOCAL_PLANE_UNIT_UM",
    "OpticsMap",
    "airy_radius_px",
    "camera_key",
    "sensor_width_mm",
    "pixel_pitch_um",
    "optics_from_exif",
    "optics_for_frame",
    "optics_planes",
]

#: Wavelength of the diffraction radius (green, the middle of the visible band).
WAVELENGTH_NM = 550.0
#: ``airy_radius_px`` in blind mode: impossible for a real lens, so the network can tell.
BLIND_AIRY_PX = -1.0
#: The channels of the ``optics`` input, in order.
OPTICS_CHANNELS = ("airy_radius_px", "field_radius", "cos_angle", "sin_angle")
#: Pixel pitches believed, micrometres (phones ~0.8, medium format backs ~15).
PITCH_RANGE_UM = (0.8, 15.0)
#: EXIF FocalPlaneResolutionUnit -> micrometres per unit (1 = none: not usable).
FOCAL_PLANE_UNIT_UM: Mapping[int, float] = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}

_FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)

#: Sensor width in millimetres of common bodies, keyed by :func:`camera_key`
#: (manufacturers' specifications). Bodies not here fall back to lensfun's crop factor.
SENSOR_WIDTH_MM: Mapping[str, float] = {
    # Canon full frame
    "canon eos5dmarkii": 36.0, "canon eos5dmarkiii": 36.0, "canon eos5dmarkiv": 36.0,
    "canon eos5ds": 36.0, "canon eos5dsr": 36.0, "canon eos6d": 35.8,
    "canon eos6dmarkii": 35.9, "canon eos1dx": 36.0, "canon eos1dxmarkii": 35.9,
    "canon eos1dxmarkiii": 36.0, "canon eosr": 36.0, "canon eosrp": 35.9,
    "canon eosr3": 36.0, "canon eosr5": 36.0, "canon eosr6": 35.9, "canon eosr6markii": 35.9,
    "canon eosr8": 35.9,
    # Canon APS-C
    "canon eos7d": 22.3, "canon eos7dmarkii": 22.4, "canon eos80d": 22.5, "canon eos90d": 22.3,
    "canon eos800d": 22.3, "canon eos250d": 22.3, "canon eosm50": 22.3,
    "canon eosm6markii": 22.3, "canon eosr7": 22.3, "canon eosr10": 22.3, "canon eosr50": 22.3,
    "canon eosd30": 22.7, "canon eosd60": 22.7,
    # Nikon
    "nikon d610": 35.9, "nikon d750": 35.9, "nikon d780": 35.9, "nikon d800": 35.9,
    "nikon d810": 35.9, "nikon d850": 35.9, "nikon z5": 35.9, "nikon z6": 35.9,
    "nikon z62": 35.9, "nikon z7": 35.9, "nikon z72": 35.9, "nikon z8": 35.9, "nikon z9": 35.9,
    "nikon d500": 23.5, "nikon d7200": 23.5, "nikon d7500": 23.5, "nikon z50": 23.5,
    "nikon zfc": 23.5,
    # Sony
    "sony ilce7m3": 35.6, "sony ilce7m4": 35.9, "sony ilce7rm2": 35.9, "sony ilce7rm3": 35.9,
    "sony ilce7rm4": 35.7, "sony ilce7rm5": 35.7, "sony ilce9": 35.6, "sony ilce1": 35.9,
    "sony ilce6000": 23.5, "sony ilce6400": 23.5, "sony ilce6600": 23.5,
    # Fujifilm
    "fujifilm xt3": 23.5, "fujifilm xt4": 23.5, "fujifilm xt5": 23.5, "fujifilm xh2": 23.5,
    "fujifilm xt30": 23.5, "fujifilm x100v": 23.5, "fujifilm gfx100s": 43.8,
    "fujifilm gfx50s": 43.8,
    # Micro Four Thirds
    "panasonic dcg9": 17.3, "panasonic dcgh5": 17.3, "panasonic dcgh6": 17.3,
    "olympus em1markii": 17.3, "olympus em1markiii": 17.3, "olympus em5markiii": 17.3,
    "olympus em10markiv": 17.3,
}

# EXIF / LibRaw maker strings -> the table's maker word.
_MAKERS = (
    ("nikon", "nikon"), ("canon", "canon"), ("sony", "sony"), ("fujifilm", "fujifilm"),
    ("panasonic", "panasonic"), ("olympus", "olympus"), ("om digital", "olympus"),
)


# --------------------------------------------------------------------------- numbers


def airy_radius_px(
    fnumber: float, pixel_pitch_um: float, wavelength_nm: float = WAVELENGTH_NM
) -> float:
    """Radius of the Airy disk's first dark ring, ``1.22 * lambda * N``, in pixels.

    Parameters
    ----------
    fnumber : float
        Working f-number N (> 0).
    pixel_pitch_um : float
        Pixel pitch in micrometres (> 0).
    wavelength_nm : float
        Wavelength in nanometres (550 by default).
    """
    if fnumber <= 0 or pixel_pitch_um <= 0 or wavelength_nm <= 0:
        raise ValueError("fnumber, pixel_pitch_um and wavelength_nm must be > 0")
    return 1.22 * wavelength_nm * 1e-3 * fnumber / pixel_pitch_um


def _words(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def camera_key(make: str, model: str) -> str:
    """``"maker model"`` normalised for :data:`SENSOR_WIDTH_MM`: lower case, model without
    the maker's name and without spaces or punctuation (``Canon``, ``Canon EOS 5D Mark
    III`` -> ``canon eos5dmarkiii``; ``NIKON CORPORATION``, ``NIKON D850`` -> ``nikon d850``).
    """
    lowered = make.strip().lower()
    maker = next((short for prefix, short in _MAKERS if lowered.startswith(prefix)), _words(make))
    name = model.strip().lower()
    for word in (lowered, maker):
        if word and name.startswith(word):
            name = name[len(word):]
    return f"{maker} {_words(name)}"


def sensor_width_mm(make: str, model: str) -> float | None:
    """Sensor width of a body of :data:`SENSOR_WIDTH_MM`, or None when it is not listed."""
    return SENSOR_WIDTH_MM.get(camera_key(make, model))


def _lensfun_width_mm(make: str, model: str, width: int, height: int) -> float | None:
    """Sensor width from lensfun's crop factor of the body (None: no lensfunpy, no match)."""
    from nnip.develop.lens import find_camera  # lensfun lives with the profile corrections

    camera = find_camera(make, model)
    if camera is None or not camera.crop_factor or camera.crop_factor <= 0:
        return None
    diagonal_mm = _FULL_FRAME_DIAGONAL_MM / float(camera.crop_factor)
    return diagonal_mm * width / math.hypot(width, height)


def pixel_pitch_um(
    width: int,
    height: int,
    *,
    make: str = "",
    model: str = "",
    focal_plane_x_resolution: float | None = None,
    focal_plane_resolution_unit: int | None = None,
    use_lensfun: bool = True,
) -> tuple[float | None, str]:
    """The pixel pitch (um) of a ``width x height`` sensor image, and where it came from.

    Returns
    -------
    pitch : float or None
        None when no source gives a pitch within :data:`PITCH_RANGE_UM`.
    source : str
        ``"focal-plane resolution"``, ``"camera table"``, ``"lensfun crop factor"``, or a
        short reason why there is none.
    """
    low, high = PITCH_RANGE_UM
    rejected = ""
    unit_um = FOCAL_PLANE_UNIT_UM.get(int(focal_plane_resolution_unit or 0))
    if focal_plane_x_resolution and focal_plane_x_resolution > 0 and unit_um:
        pitch = unit_um / float(focal_plane_x_resolution)
        if low <= pitch <= high:
            return pitch, "focal-plane resolution"
        rejected = f"focal-plane resolution gives an implausible {pitch:.3g} um pitch"
    candidates = [("camera table", sensor_width_mm(make, model))]
    if use_lensfun and (make or model):
        candidates.append(("lensfun crop factor", None))
    for source, width_mm in candidates:
        if source == "lensfun crop factor":
            width_mm = _lensfun_width_mm(make, model, width, height)
        if width_mm is None:
            continue
        pitch = width_mm * 1000.0 / max(int(width), 1)
        if low <= pitch <= high:
            return pitch, source
        rejected = rejected or f"{source} gives an implausible {pitch:.3g} um pitch"
    return None, rejected or "camera not known"


# --------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class OpticsMap:
    """What is known about the optics of one image; :meth:`planes` makes the network input.

    Attributes
    ----------
    height, width : int
        Size of the frame (pixels) the map describes.
    fnumber, focal_length_mm, pixel_pitch_um : float or None
        From the EXIF; None when unknown.
    pitch_source : str
        Where the pitch came from (see :func:`pixel_pitch_um`).
    notice : str or None
        One line for the user when the map is blind (what was missing).
    """

    height: int
    width: int
    fnumber: float | None = None
    focal_length_mm: float | None = None
    pixel_pitch_um: float | None = None
    pitch_source: str = ""
    notice: str | None = None

    @property
    def blind(self) -> bool:
        """True when the diffraction radius is unknown (no f-number or no pixel pitch)."""
        return self.fnumber is None or self.pixel_pitch_um is None

    @property
    def airy_radius_px(self) -> float | None:
        """Airy first-zero radius at 550 nm in pixels; None in blind mode."""
        if self.blind:
            return None
        return airy_radius_px(float(self.fnumber), float(self.pixel_pitch_um))  # type: ignore[arg-type]

    @property
    def centre(self) -> tuple[float, float]:
        """Optical centre (row, column): the frame centre, pixel centres at integers."""
        return (self.height - 1) / 2.0, (self.width - 1) / 2.0

    @property
    def r_corner(self) -> float:
        """Distance from the centre to the frame corner, pixels (``field_radius`` 1)."""
        return math.hypot(self.height / 2.0, self.width / 2.0)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, H, W) of :meth:`planes`: with :meth:`region`, the map is a
        ``nnip.core.tiling.TileSource``, made tile by tile instead of held whole."""
        return (len(OPTICS_CHANNELS), self.height, self.width)

    def region(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """:meth:`planes` of a rectangle (the ``TileSource`` interface)."""
        return self.planes(top, left, height, width)

    def planes(
        self, top: int = 0, left: int = 0, height: int | None = None, width: int | None = None
    ) -> np.ndarray:
        """The ``optics`` input for the region at (``top``, ``left``) of the frame.

        Returns
        -------
        ndarray, float32, shape (4, height, width)
            Channels :data:`OPTICS_CHANNELS`; the whole frame by default.
        """
        airy = self.airy_radius_px
        cy, cx = self.centre
        return optics_planes(
            self.height - top if height is None else height,
            self.width - left if width is None else width,
            BLIND_AIRY_PX if airy is None else airy,
            cy - top, cx - left, self.r_corner,
        )

    def describe(self) -> str:
        """One line for ``--verbose``: f-number, pitch and diffraction radius, or blind."""
        if self.blind:
            return "optics: blind (diffraction radius unknown)"
        return (f"optics: f/{self.fnumber:.2g}, pitch {self.pixel_pitch_um:.2f} um "
                f"({self.pitch_source}), Airy radius {self.airy_radius_px:.2f} px")


def optics_planes(
    height: int, width: int, airy_px: float, cy: float, cx: float, r_corner: float
) -> np.ndarray:
    """The 4-channel ``optics`` input (module notes) of an image region.

    Parameters
    ----------
    height, width : int
        Size of the region in pixels.
    airy_px : float
        Channel 0, constant (:data:`BLIND_AIRY_PX` in blind mode).
    cy, cx : float
        Optical centre in the region's pixel coordinates (may lie outside it: a crop).
    r_corner : float
        Distance from the centre to the full frame's corner, pixels (> 0).

    Returns
    -------
    ndarray, float32, shape (4, height, width)
        ``airy_radius_px``, ``field_radius`` (>= 0), ``cos_angle``, ``sin_angle`` (at the
        centre pixel itself the angle is 0: cos 1, sin 0).
    """
    if r_corner <= 0:
        raise ValueError("r_corner must be > 0")
    # float32 and in place: on 24 MP this runs once per image, beside the network.
    dy = (np.arange(height, dtype=np.float64) - cy).astype(np.float32)[:, None]
    dx = (np.arange(width, dtype=np.float64) - cx).astype(np.float32)[None, :]
    out = np.empty((4, height, width), dtype=np.float32)
    out[0] = np.float32(airy_px)
    radius, cos, sin = out[1], out[2], out[3]
    radius[...] = dy * dy
    radius += dx * dx
    np.sqrt(radius, out=radius)
    at_centre = radius == 0
    inverse = np.divide(np.float32(1.0), radius, out=np.zeros_like(radius), where=~at_centre)
    np.multiply(inverse, dx, out=cos)
    np.multiply(inverse, dy, out=sin)
    del inverse
    cos[at_centre] = 1.0  # the angle at the centre itself is taken as 0
    radius *= np.float32(1.0 / r_corner)
    return out


def optics_from_exif(
    *,
    height: int,
    width: int,
    make: str = "",
    model: str = "",
    fnumber: float | None = None,
    focal_length_mm: float | None = None,
    focal_plane_x_resolution: float | None = None,
    focal_plane_resolution_unit: int | None = None,
    use_lensfun: bool = True,
) -> OpticsMap:
    """The :class:`OpticsMap` of an image from its EXIF values (blind when they fall short).

    Parameters
    ----------
    height, width : int
        The sensor image's size (the visible raw area).
    make, model : str
        EXIF or LibRaw camera names (either spelling: ``Canon`` + ``EOS 5D Mark III`` or
        ``Canon EOS 5D Mark III``).
    fnumber, focal_length_mm : float, optional
        EXIF FNumber and FocalLength (0 or negative counts as unknown).
    focal_plane_x_resolution, focal_plane_resolution_unit : optional
        EXIF FocalPlaneXResolution (pixels per unit) and FocalPlaneResolutionUnit.
    use_lensfun : bool
        Allow lensfun's crop factor as the last source of the pitch.

    Returns
    -------
    OpticsMap
        ``notice`` is set (one line) when the map is blind.
    """
    fnumber = fnumber if fnumber and fnumber > 0 else None
    focal = focal_length_mm if focal_length_mm and focal_length_mm > 0 else None
    pitch, source = pixel_pitch_um(
        width, height, make=make, model=model,
        focal_plane_x_resolution=focal_plane_x_resolution,
        focal_plane_resolution_unit=focal_plane_resolution_unit, use_lensfun=use_lensfun,
    )
    missing = []
    if fnumber is None:
        missing.append("no f-number in EXIF")
    if pitch is None:
        missing.append(f"pixel pitch unknown ({source})")
    notice = None
    if missing:
        notice = ("lens: diffraction radius unknown (" + "; ".join(missing)
                  + "), deblurring blind")
    return OpticsMap(height=int(height), width=int(width), fnumber=fnumber,
                     focal_length_mm=focal, pixel_pitch_um=pitch,
                     pitch_source=source if pitch is not None else "", notice=notice)


def optics_for_frame(raw: "RawFrame", *, use_lensfun: bool = True) -> OpticsMap:
    """:func:`optics_from_exif` with a :class:`~nnip.raw.frame.RawFrame`'s fields.

    The focal-plane resolution is taken from the frame's ``focal_plane_x_resolution`` and
    ``focal_plane_resolution_unit`` fields when the frame has them.
    """
    return optics_from_exif(
        height=raw.height, width=raw.width, make=raw.make, model=raw.model,
        fnumber=raw.fnumber, focal_length_mm=raw.focal_length,
        focal_plane_x_resolution=getattr(raw, "focal_plane_x_resolution", None),
        focal_plane_resolution_unit=getattr(raw, "focal_plane_resolution_unit", None),
        use_lensfun=use_lensfun,
    )
