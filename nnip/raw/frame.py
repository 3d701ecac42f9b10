"""Read a camera RAW file into a :class:`RawFrame` through rawpy (LibRaw).

One home for everything the develop pipeline needs from a RAW file: the sensor data, the
colour filter layout at the visible origin, levels, white balances, the colour matrix, the
shooting data and, for DNG, the NoiseProfile tag. Nothing else in the project opens a RAW
file for these (the classical demosaic reopens the file only to hand LibRaw its own pixels).

What is handled, and how
------------------------
* Pattern: rawpy's ``raw_pattern`` is relative to the *full* raw area (rawpy's
  ``raw_color(y, x)`` calls LibRaw's ``COLOR(y - top_margin, x - left_margin)``). The frame's
  :attr:`RawFrame.cfa_indices` and :attr:`RawFrame.pattern` are rolled to the *visible*
  area's (0, 0), which is where :attr:`RawFrame.mosaic` starts. (LibRaw itself rounds odd DNG
  ActiveArea offsets to even ones and shifts its pattern to match; the roll covers formats
  whose margins are odd.)
* Black level: rawpy's ``black_level_per_channel`` (LibRaw ``black`` + ``cblack[0..3]``, with
  a 2x2 ``cblack[6..]`` repeat folded in, exactly as LibRaw's ``adjust_bl`` does), indexed by
  colour index (R, G, B, G2). Larger black-level repeats (LibRaw ``cblack[4..5]`` > 2) are not
  exposed by rawpy and are not applied.
* Make and model: rawpy does not expose them; they are read from LibRaw's own
  ``libraw_iparams_t`` through the bundled library (ctypes), guarded by a layout check.
* DNG: ColorMatrix1/2 (with CameraCalibration and AnalogBalance) and NoiseProfile are read
  with tifffile, since LibRaw keeps only a table matrix for known cameras.
* Failures: anything LibRaw cannot decode raises :class:`RawDecodeError` with a one-line
  reason. LibRaw's own stderr chatter ("Unexpected end of file", "data corrupted at ...") is
  captured and folded into that reason; it never reaches the user's terminal.
* Partial decodes are refused: a file where LibRaw reported a data error, or whose pixel data
  is missing (every pixel equal, or most pixels exactly 0 although the black level is above
  0: stripped test files, truncated uploads) raises :class:`RawDecodeError` rather than
  developing into a silently broken picture.
* A header that claims far more pixels than the file could hold (more than
  :data:`MAX_PIXELS_PER_BYTE` per byte) is refused before LibRaw unpacks anything: a damaged
  12 kB file must not make LibRaw allocate and scan hundreds of megapixels.
* File names that are not valid UTF-8 (rawpy passes names to LibRaw as UTF-8) are read
  through an in-memory copy of the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from nnip.core.errors import InputError, RawDecodeError

__all__ = [
    "BAYER_PATTERNS",
    "MAX_PIXELS_PER_BYTE",
    "RawFrame",
    "bayer_letters",
    "read_raw",
    "open_libraw",
    "libraw_version",
    "orientation_from_flip",
]

#: The four Bayer phases, row-major letters of the 2x2 cell at the visible (0, 0).
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

#: Raw pixels one byte of file may hold at most (0.01 bit per pixel): far beyond what any
#: raw codec reaches on sensor data, whose noise alone costs bits. A header claiming more
#: is corrupt (the same bound as the DNG strip check below).
MAX_PIXELS_PER_BYTE = 800

# What LibRaw puts before its messages when it reads from memory instead of a named file.
_BUFFER_NAME = "unknown file"

# LibRaw's ``flip`` (dcraw's) -> EXIF Orientation. dcraw maps EXIF o to flip "50132467"[o & 7].
_EXIF_FROM_FLIP = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}

# LibRaw prints to the C stderr, which is shared by every thread of the process: while one
# read captures it, the others wait.
_STDERR_LOCK = threading.Lock()

# Byte offsets in LibRaw's libraw_iparams_t (stable since LibRaw 0.20): guard[4], make[64],
# model[64], software[64], normalized_make[64], normalized_model[64], 6 unsigned, xtrans
# [6][6] twice, cdesc[5].
_IPARAMS_MAKE, _IPARAMS_MODEL, _IPARAMS_DNG_VERSION, _IPARAMS_CDESC = 4, 68, 332, 420

# DNG CalibrationIlluminant (EXIF LightSource) -> correlated colour temperature in kelvin.
_ILLUMINANT_CCT = {
    1: 5500, 2: 4150, 3: 2850, 4: 5500, 9: 5500, 10: 6500, 11: 7500, 12: 6430, 13: 5000,
    14: 4150, 15: 3450, 17: 2856, 18: 4874, 19: 6774, 20: 5503, 21: 6504, 22: 7504, 23: 5003,
    24: 3200,
}


@dataclass(frozen=True, eq=False)
class RawFrame:
    """The sensor data and metadata of one RAW file, independent of the open file.

    Field names follow rawpy where rawpy has the thing. Colour-index order everywhere is
    LibRaw's: 0 R, 1 G, 2 B, 3 second G.

    Attributes
    ----------
    mosaic : ndarray, uint16, shape (H, W) or (H, W, C)
        Copy of rawpy's ``raw_image_visible``: raw sensor values, black level not
        subtracted, linear. (H, W) for a colour-filter mosaic (Bayer, X-Trans) or a
        monochrome sensor; (H, W, C) for Foveon and linear DNG. Read-only.
    pattern : str
        Bayer phase at the visible (0, 0), row-major (one of :data:`BAYER_PATTERNS`);
        ``""`` when the frame is not Bayer.
    cfa_indices : ndarray, uint8, shape (n, n), or None
        Colour index of each pixel of the repeating cell starting at the visible (0, 0)
        (n = 2 Bayer, 6 X-Trans, 1 monochrome, 4 or 16 exotic); None for (H, W, C) data.
    color_desc : str
        Letters of the colour indices, e.g. ``"RGBG"``.
    black_level_per_channel : tuple of 4 float
        Black level by colour index, raw units.
    white_level : float
        Saturation, raw units.
    camera_whitebalance : tuple of 3 float, or None
        As-shot multipliers (R, G, B) normalised to G = 1; None when the file has none.
    daylight_whitebalance : tuple of 3 float, or None
        LibRaw's daylight multipliers (R, G, B), G = 1; None when unknown.
    cam_from_xyz : ndarray, float64, shape (3, 3), or None
        CIE XYZ (D65 scene white) -> camera RGB, rows R, G, B (rawpy's ``rgb_xyz_matrix``, or
        the DNG's own ColorMatrix for the illuminant nearest D65); None when LibRaw knows no
        matrix for this camera.
    noise_profile : tuple of 2 float, or None
        DNG NoiseProfile (a, b) of the first plane: variance = a * x + b for a signal x in
        [0, 1] (black subtracted, divided by white - black); None when absent.
    focal_plane_x_resolution, focal_plane_resolution_unit : float, int, or None
        A DNG's EXIF FocalPlaneXResolution (pixels per unit) and FocalPlaneResolutionUnit
        (2 inch, 3 cm, ...): the pixel pitch as the file states it; None when absent.
    is_bayer : bool
        True for a 2x2 R/G/G/B mosaic; False for X-Trans, Foveon, linear DNG, monochrome.
    num_colors : int
        LibRaw's number of colours (3 for RGB sensors, 4 for CMYG).
    orientation : int
        EXIF Orientation (1..8) from LibRaw's ``flip``: how to rotate for display.
    capture_time : datetime or None
        Local capture time as LibRaw reads it.
    """

    mosaic: np.ndarray
    pattern: str
    cfa_indices: np.ndarray | None
    color_desc: str
    black_level_per_channel: tuple[float, float, float, float]
    white_level: float
    camera_whitebalance: tuple[float, float, float] | None
    daylight_whitebalance: tuple[float, float, float] | None
    cam_from_xyz: np.ndarray | None
    is_bayer: bool
    num_colors: int = 3
    make: str = ""
    model: str = ""
    lens: str = ""
    iso: float | None = None
    fnumber: float | None = None
    focal_length: float | None = None
    exposure_time: float | None = None
    orientation: int = 1
    capture_time: datetime | None = None
    noise_profile: tuple[float, float] | None = None
    focal_plane_x_resolution: float | None = None
    focal_plane_resolution_unit: int | None = None
    path: Path | None = None
    notices: tuple[str, ...] = field(default=())

    @property
    def height(self) -> int:
        return int(self.mosaic.shape[0])

    @property
    def width(self) -> int:
        return int(self.mosaic.shape[1])


def libraw_version() -> str:
    """LibRaw's version as ``"0.22.2"`` (for ``--version``)."""
    import rawpy

    return ".".join(str(v) for v in rawpy.libraw_version)


def orientation_from_flip(flip: int) -> int:
    """EXIF Orientation (1..8) for LibRaw's ``sizes.flip``; unknown values give 1."""
    return _EXIF_FROM_FLIP.get(int(flip) & 7, 1)


# --------------------------------------------------------------------------- read_raw


def read_raw(path: str | os.PathLike[str]) -> RawFrame:
    """Decode a RAW file (every format LibRaw reads) into a :class:`RawFrame`.

    Parameters
    ----------
    path : path-like
        The RAW file.

    Returns
    -------
    RawFrame
        Pixel data copied out of LibRaw, so the frame outlives the file.

    Raises
    ------
    InputError
        The path is missing, a directory, unreadable or empty.
    RawDecodeError
        LibRaw cannot decode the file (unsupported format or codec, truncated, corrupt,
        stripped of its pixel data), with a one-line reason.
    """
    path = Path(path)
    size = _check_input(path)
    failure: Exception | None = None
    source, name = _rawpy_source(path)
    with _captured_stderr(name) as chatter:
        try:
            frame = _read_with_rawpy(path, source, size)
        except Exception as exc:  # rawpy raises its own classes, not OSError
            failure = exc
    if isinstance(failure, RawDecodeError):
        raise failure
    if failure is not None:
        raise RawDecodeError(_decode_reason(failure, path, chatter.text())) from None
    if chatter.text():
        # LibRaw reported a data error but went on: the picture would be silently broken.
        raise RawDecodeError(f"truncated or corrupt RAW data ({_first_message(chatter.text())})")
    _check_pixel_data(frame)
    return frame


def _check_input(path: Path) -> int:
    """The file's size in bytes, after the checks that make it readable at all."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError("file not found") from None
    except OSError as exc:  # a name too long, a loop of links, ...
        raise InputError(f"cannot access the file ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError("is a directory, not a RAW file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror or exc})") from None
    if info.st_size == 0:
        raise InputError("empty file (0 bytes)")
    return int(info.st_size)


def _rawpy_source(path: Path) -> tuple[str | BinaryIO, str]:
    """What ``rawpy.imread`` gets for ``path``, and the name LibRaw prefixes messages with.

    rawpy hands LibRaw the name encoded as UTF-8, which a name holding other bytes (a
    Latin-1 name from an old card reader) cannot be: such a file is read into memory.
    """
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        try:
            return io.BytesIO(path.read_bytes()), _BUFFER_NAME
        except OSError as exc:
            raise InputError(f"cannot read file ({exc.strerror or exc})") from None
    return str(path), str(path)


def open_libraw(path: str | os.PathLike[str]):
    """``rawpy.imread`` for any file name, including names that are not valid UTF-8.

    For code that must hand LibRaw the file itself (the classical demosaic); use it as
    ``with open_libraw(path) as raw:``. Errors are rawpy's.
    """
    import rawpy

    return rawpy.imread(_rawpy_source(Path(path))[0])


def _check_plausible_size(raw, file_size: int) -> None:
    """Refuse a header claiming more pixels than ``file_size`` bytes can hold (before unpack)."""
    width, height = int(raw.sizes.raw_width), int(raw.sizes.raw_height)
    if width * height > MAX_PIXELS_PER_BYTE * file_size:
        raise RawDecodeError(
            f"truncated or corrupt RAW data (the header says {width}x{height} pixels, "
            f"too many for a file of {file_size} bytes)"
        )


def _read_with_rawpy(path: Path, source: str | BinaryIO, file_size: int) -> RawFrame:
    import rawpy

    with rawpy.imread(source) as raw:
        _check_plausible_size(raw, file_size)
        mosaic = np.array(raw.raw_image_visible, copy=True)  # the view dies with the file
        mosaic.setflags(write=False)
        color_desc = raw.color_desc.decode("ascii", "replace")
        cfa = _visible_cfa(raw)
        pattern = bayer_letters(cfa, color_desc) if cfa is not None else ""
        iparams = _libraw_iparams(path, color_desc)
        dng = _read_dng_tags(path) if iparams.get("dng_version", 0) or _is_tiff(path) else {}
        if dng.get("missing_data"):
            # LibRaw does not notice short DNG strips and returns uninitialised memory.
            raise RawDecodeError(f"truncated or stripped RAW file ({dng['missing_data']})")
        cam_from_xyz = dng.get("cam_from_xyz")
        if cam_from_xyz is None:
            cam_from_xyz = _matrix_or_none(raw.rgb_xyz_matrix[:3])
        for array in (cfa, cam_from_xyz):
            if array is not None:
                array.setflags(write=False)  # the frame is shared between stages
        other = raw.other
        lens = getattr(raw, "lens", None)  # rawpy >= 0.25
        return RawFrame(
            mosaic=mosaic,
            pattern=pattern,
            cfa_indices=cfa,
            color_desc=color_desc,
            black_level_per_channel=tuple(float(v) for v in raw.black_level_per_channel),
            white_level=float(raw.white_level),
            camera_whitebalance=_multipliers_or_none(raw.camera_whitebalance),
            daylight_whitebalance=_multipliers_or_none(raw.daylight_whitebalance),
            cam_from_xyz=cam_from_xyz,
            is_bayer=bool(pattern) and mosaic.ndim == 2,
            num_colors=int(raw.num_colors),
            make=iparams.get("make", ""),
            model=iparams.get("model", ""),
            lens=(lens.model.strip() if lens is not None else ""),
            iso=_positive_or_none(other.iso_speed),
            fnumber=_positive_or_none(other.aperture),
            focal_length=_positive_or_none(other.focal_length),
            exposure_time=_positive_or_none(other.shutter_speed),
            orientation=orientation_from_flip(raw.sizes.flip),
            capture_time=(other.timestamp if other.timestamp.timestamp() > 0 else None),
            noise_profile=dng.get("noise_profile"),
            focal_plane_x_resolution=dng.get("focal_plane_x_resolution"),
            focal_plane_resolution_unit=dng.get("focal_plane_resolution_unit"),
            path=path,
        )


def _visible_cfa(raw) -> np.ndarray | None:
    """Colour indices of the repeating cell at the *visible* (0, 0), or None (no CFA)."""
    import rawpy

    if raw.raw_type != rawpy.RawType.Flat:
        return None
    try:
        full = raw.raw_pattern  # relative to the full raw area's (0, 0)
    except NotImplementedError:  # a filter layout rawpy cannot describe
        return None
    if full is None:
        return None
    top, left = raw.sizes.top_margin, raw.sizes.left_margin
    return np.roll(full, (-top, -left), axis=(0, 1)).astype(np.uint8)


def bayer_letters(cfa: np.ndarray, color_desc: str) -> str:
    """Four-letter Bayer phase of a 2x2 colour-index cell, or ``""`` if it is not Bayer.

    ``color_desc`` names each colour index (LibRaw's ``"RGBG"``: index 3 is the second green).
    """
    if cfa.shape != (2, 2):
        return ""
    letters = "".join(color_desc[i] if i < len(color_desc) else "?" for i in cfa.ravel())
    return letters if letters in BAYER_PATTERNS else ""


def _multipliers_or_none(values) -> tuple[float, float, float] | None:
    # LibRaw marks "no as-shot white balance" with cam_mul[0] = -1 or zeros.
    r, g, b = (float(v) for v in list(values)[:3])
    if min(r, g, b) <= 0 or not np.isfinite([r, g, b]).all():
        return None
    return (r / g, 1.0, b / g)


def _matrix_or_none(matrix: np.ndarray) -> np.ndarray | None:
    m = np.asarray(matrix, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(m).all() or abs(np.linalg.det(m)) < 1e-9:
        return None
    return m


def _positive_or_none(value: float) -> float | None:
    value = float(value)
    return value if value > 0 and np.isfinite(value) else None


def _check_pixel_data(frame: RawFrame) -> None:
    data = frame.mosaic
    if data.size == 0 or np.all(data == data.flat[0]):
        raise RawDecodeError("no image data in RAW file (stripped or truncated)")
    if min(frame.black_level_per_channel) > 0:
        zero_fraction = 1.0 - np.count_nonzero(data) / data.size
        if zero_fraction > 0.5:  # real sensor noise sits around the black level, never at 0
            raise RawDecodeError(
                f"no image data in RAW file ({zero_fraction:.0%} of pixels are 0: "
                "stripped or truncated)"
            )


# --------------------------------------------------------------------------- errors


def _decode_reason(exc: Exception, path: Path, chatter: str) -> str:
    """One line saying why LibRaw refused the file."""
    import rawpy

    detail = f" ({_first_message(chatter)})" if chatter else ""
    if isinstance(exc, (rawpy.LibRawFileUnsupportedError, rawpy.NotSupportedError,
                        rawpy.LibRawNotImplementedError)):
        return _not_raw_hint(path) or "unsupported RAW format or codec"
    if isinstance(exc, rawpy.LibRawIOError):
        return _not_raw_hint(path) or f"truncated or corrupt RAW data{detail or ' (cannot read pixel data)'}"
    if isinstance(exc, rawpy.LibRawDataError):
        return f"truncated or corrupt RAW data{detail}"
    if isinstance(exc, rawpy.LibRawTooBigError):
        return "RAW header gives impossible image dimensions (corrupt or truncated file)"
    if isinstance(exc, rawpy.LibRawBadCropError):
        return "RAW header gives an invalid crop (corrupt file)"
    if isinstance(exc, (rawpy.LibRawUnsufficientMemoryError, rawpy.LibRawMemPoolOverflowError,
                        MemoryError)):
        return "not enough memory to decode this RAW file"
    if isinstance(exc, rawpy.LibRawError):
        return f"LibRaw cannot decode this file ({_first_message(str(exc)) or type(exc).__name__})"
    raise exc  # not LibRaw's: a bug, let it show


def _first_message(text: str) -> str:
    """First LibRaw message without the file name LibRaw puts in front of it."""
    text = text.strip().strip("b'\"")
    line = text.splitlines()[0] if text else ""
    head, sep, tail = line.partition(": ")
    return (tail if sep else line).strip()


_MAGIC_NAMES = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)


def _not_raw_hint(path: Path) -> str:
    """``"not a RAW file (looks like ...)"`` when the content is plainly something else."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return ""
    for magic, name in _MAGIC_NAMES:
        if head.startswith(magic):
            return f"not a RAW file (looks like {name})"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "not a RAW file (looks like a WebP image)"
    if _looks_like_text(head):
        return "not a RAW file (looks like text)"
    return ""


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


class _Chatter:
    """What LibRaw wrote to stderr during a read."""

    def __init__(self) -> None:
        self._text = ""

    def text(self) -> str:
        return self._text


@contextlib.contextmanager
def _captured_stderr(prefix: str) -> Iterator[_Chatter]:
    """Capture the process's C-level stderr (fd 2); give back lines LibRaw did not write.

    LibRaw prefixes its messages with the file name it was given (``prefix``); those are
    kept for the error reason. Anything else written meanwhile (another thread's progress
    bar) is written back to stderr afterwards.
    """
    chatter = _Chatter()
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):
            yield chatter  # no real fd 2 (embedded interpreter): nothing to capture
            return
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield chatter
            finally:
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", "replace")
        ours = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        others = [ln for ln in text.splitlines() if not ln.startswith(prefix)]
        chatter._text = "\n".join(ours)
        if others:
            sys.stderr.write("\n".join(others) + "\n")


# --------------------------------------------------------------------------- LibRaw iparams


def _libraw_iparams(path: Path, color_desc: str) -> dict:
    """Make, model and DNG version from LibRaw's own parser (rawpy does not expose them).

    Returns an empty dict when the bundled library or its struct layout cannot be used
    (checked against ``color_desc`` that rawpy read through the same parser).
    """
    lib = _libraw_library()
    if lib is None:
        return {}
    handle = lib.libraw_init(0)
    if not handle:
        return {}
    try:
        if lib.libraw_open_file(handle, os.fsencode(path)) != 0:
            return {}
        raw = ctypes.string_at(lib.libraw_get_iparams(handle), _IPARAMS_CDESC + 5)
    finally:
        lib.libraw_close(handle)
    text = lambda offset, size=64: raw[offset:offset + size].split(b"\0")[0].decode(  # noqa: E731
        "utf-8", "replace").strip()
    if text(_IPARAMS_CDESC, 5) != color_desc:
        return {}  # a different struct layout: trust nothing read here
    return {
        "make": text(_IPARAMS_MAKE),
        "model": text(_IPARAMS_MODEL),
        "dng_version": int.from_bytes(raw[_IPARAMS_DNG_VERSION:_IPARAMS_DNG_VERSION + 4],
                                      sys.byteorder),
    }


def _libraw_library() -> ctypes.CDLL | None:
    import rawpy

    folder = Path(rawpy.__file__).parent
    for name in ("libraw_r.so", "libraw_r.dylib", "libraw_r.dll", "libraw.dll"):
        candidate = folder / name
        if not candidate.exists():
            continue
        try:
            lib = ctypes.CDLL(str(candidate))
        except OSError:
            continue
        lib.libraw_init.restype = ctypes.c_void_p
        lib.libraw_init.argtypes = [ctypes.c_uint]
        lib.libraw_open_file.restype = ctypes.c_int
        lib.libraw_open_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.libraw_get_iparams.restype = ctypes.c_void_p
        lib.libraw_get_iparams.argtypes = [ctypes.c_void_p]
        lib.libraw_close.restype = None
        lib.libraw_close.argtypes = [ctypes.c_void_p]
        return lib
    return None


# --------------------------------------------------------------------------- DNG tags


def _is_tiff(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in (b"II*\x00", b"MM\x00*")
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    # tifffile logs every damaged tag of a truncated file; the read goes on without them.
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _read_dng_tags(path: Path) -> dict:
    """``cam_from_xyz`` and ``noise_profile`` from a DNG's own tags (empty dict if not DNG)."""
    import tifffile

    try:
        with _quiet_logger("tifffile"), tifffile.TiffFile(path) as tif:
            ifd0 = tif.pages[0]
            if 50706 not in ifd0.tags:  # DNGVersion
                return {}
            tags = {code: tag.value for code, tag in ifd0.tags.items()}
            raw_page = _raw_ifd(ifd0)
            raw_tags = {c: t.value for c, t in raw_page.tags.items()} if raw_page else {}
            missing = _missing_data(raw_page, path.stat().st_size) if raw_page else ""
    except Exception:  # a damaged TIFF structure: LibRaw has already decided on the pixels
        return {}
    found: dict = {"missing_data": missing} if missing else {}
    try:
        found.update(_dng_colour_tags(tags, raw_tags))
    except (ValueError, TypeError, IndexError, OverflowError):
        pass  # damaged colour tags (text where numbers belong): LibRaw's own matrix is used
    try:
        found.update(_dng_focal_plane(tags.get(34665)))
    except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError):
        pass  # a damaged Exif IFD: the pitch then comes from the camera tables
    return found


def _dng_focal_plane(exif: object) -> dict:
    """``focal_plane_x_resolution`` and ``_unit`` from the Exif IFD tifffile parsed."""
    if not isinstance(exif, dict) or "FocalPlaneXResolution" not in exif:
        return {}
    value = exif["FocalPlaneXResolution"]  # tifffile: (numerator, denominator)
    resolution = float(value[0]) / float(value[1]) if isinstance(value, tuple) else float(value)
    unit = exif.get("FocalPlaneResolutionUnit", 2)  # EXIF's default unit is the inch
    return {"focal_plane_x_resolution": resolution,
            "focal_plane_resolution_unit": int(getattr(unit, "value", unit))}


def _dng_colour_tags(tags: dict, raw_tags: dict) -> dict:
    """``cam_from_xyz`` and ``noise_profile`` where the DNG's tags give them."""
    found: dict = {}
    matrix = _dng_cam_from_xyz(tags)
    if matrix is not None:
        found["cam_from_xyz"] = matrix
    noise = raw_tags.get(51041, tags.get(51041))
    if noise is not None and len(np.ravel(noise)) >= 2:
        a, b = (float(v) for v in np.ravel(noise)[:2])
        found["noise_profile"] = (a, b)
    return found


def _raw_ifd(ifd0):
    """The raw image's IFD (NewSubfileType 0), which may be a SubIFD of IFD 0; or None."""
    candidates = [ifd0] + list(getattr(ifd0, "pages", None) or [])
    for page in candidates:
        subfile = page.tags.get(254)
        if subfile is None or int(subfile.value) == 0:
            return page
    return None


def _missing_data(page, file_size: int) -> str:
    """Why the raw IFD's pixel data cannot all be in the file, or ``""``."""
    offsets, counts = page.dataoffsets, page.databytecounts
    if not offsets:
        return "no pixel data"
    end = max(int(o) + int(c) for o, c in zip(offsets, counts))
    if end > file_size:
        return f"pixel data ends at byte {end}, the file has {file_size}"
    stored = sum(int(c) for c in counts)
    pixels = int(page.imagewidth) * int(page.imagelength)
    if page.is_tiled:
        across = -(-int(page.imagewidth) // int(page.tilewidth))
        down = -(-int(page.imagelength) // int(page.tilelength))
        if len(offsets) < across * down:
            return f"{len(offsets)} tiles of pixel data for {across * down} needed"
    if page.compression == 1 and not page.is_tiled:
        bits = int(np.max(page.bitspersample)) * int(page.samplesperpixel)
        needed = (page.imagewidth * bits + 7) // 8 * page.imagelength
        if stored < needed:
            return f"{stored} bytes of pixel data for {needed} needed"
    elif stored * 8 < 0.01 * pixels:  # far below what any codec achieves on sensor data
        return f"{stored} bytes of compressed pixel data for {pixels} pixels"
    return ""


def _rationals(value, count: int) -> np.ndarray | None:
    """DNG (S)RATIONAL tag values as floats; tifffile gives flat (num, den) pairs."""
    flat = np.asarray(value, dtype=np.float64).ravel()
    if flat.size == 2 * count:
        den = flat[1::2]
        if np.any(den == 0):
            return None
        return flat[0::2] / den
    if flat.size == count:
        return flat
    return None


def _dng_cam_from_xyz(tags: dict) -> np.ndarray | None:
    """AnalogBalance @ CameraCalibration @ ColorMatrix for the illuminant nearest D65."""
    choices = []
    for cm_tag, cc_tag, ill_tag in ((50721, 50723, 50778), (50722, 50724, 50779)):
        if cm_tag not in tags:
            continue
        cm = _rationals(tags[cm_tag], 9)
        if cm is None:
            continue
        cct = _ILLUMINANT_CCT.get(int(np.ravel(tags.get(ill_tag, 21))[0]), 5000)
        cc = _rationals(tags[cc_tag], 9) if cc_tag in tags else None
        choices.append((abs(cct - 6504), cm.reshape(3, 3), cc))
    if not choices:
        return None
    _, cm, cc = min(choices, key=lambda item: item[0])
    matrix = cm
    if cc is not None:
        matrix = cc.reshape(3, 3) @ matrix
    if 50727 in tags:
        ab = _rationals(tags[50727], 3)
        if ab is not None:
            matrix = np.diag(ab) @ matrix
    return _matrix_or_none(matrix)
