"""Write a Bayer mosaic as a DNG 1.4 file that LibRaw (rawpy) and DNG readers understand.

The file is a little-endian TIFF with one IFD (the raw image, NewSubFileType 0, strips,
uncompressed 16-bit) written by tifffile, plus an Exif IFD appended after it (tifffile does
not write Exif IFDs), referenced from IFD 0 by tag 34665.

Tags written (IFD 0 unless noted), with the layout a reader should expect:

==========================  ======  ==========  ============================================
tag                         code    type        value
==========================  ======  ==========  ============================================
NewSubFileType              254     LONG        0 (main image)
PhotometricInterpretation   262     SHORT       32803 (CFA)
Make / Model                271/272 ASCII
Orientation                 274     SHORT       1..8 (EXIF convention)
DateTime                    306     ASCII       ``YYYY:MM:DD HH:MM:SS``
CFARepeatPatternDim         33421   SHORT x2    (2, 2)
CFAPattern                  33422   BYTE x4     row-major colour indices, 0 R 1 G 2 B
DNGVersion / Backward       50706/7 BYTE x4     1.4.0.0 / 1.3.0.0
UniqueCameraModel           50708   ASCII
CFAPlaneColor / CFALayout   50710/1 BYTE x3 /   (0, 1, 2) / 1 (rectangular)
                                    SHORT
BlackLevelRepeatDim         50713   SHORT x2    (1, 1), or (2, 2) for per-position levels
BlackLevel                  50714   LONG or     1 value, or 4 in CFA row-major order;
                                    RATIONAL    RATIONAL when not whole numbers
WhiteLevel                  50717   LONG
ColorMatrix1                50721   SRATIONAL   9, row-major XYZ -> camera, denominator 1e6
AsShotNeutral               50728   RATIONAL    3, camera R, G, B of the scene white
CalibrationIlluminant1      50778   SHORT       EXIF LightSource code (21 = D65)
NoiseProfile                51041   DOUBLE      2 (S, O) for all planes, or 6 = (S, O) for
                                                the R, G, B planes; noise variance of a
                                                signal x in [0, 1] (black subtracted, over
                                                white - black) is ``S * x + O``
ExifIFD                     34665   LONG        offset of the Exif IFD
-- in the Exif IFD --
ExposureTime                33434   RATIONAL    seconds
FNumber                     33437   RATIONAL
ISOSpeedRatings             34855   SHORT       (capped at 65535)
ExifVersion                 36864   UNDEFINED   "0231"
DateTimeOriginal            36867   ASCII
FocalLength                 37386   RATIONAL    millimetres
LensModel                   42036   ASCII
==========================  ======  ==========  ============================================

What rawpy 0.28 (LibRaw 0.22) gives back: ``raw_pattern`` + ``color_desc`` (the pattern),
``black_level_per_channel``, ``white_level``, ``camera_whitebalance`` (= 1 / AsShotNeutral),
``color_matrix`` (LibRaw's camera -> sRGB matrix derived from ColorMatrix1), ``other``
(ISO, aperture, focal length, shutter, timestamp), ``lens.model``. ``rgb_xyz_matrix`` stays
zero for cameras LibRaw does not know (LibRaw fills it from its own table only), and rawpy
does not expose NoiseProfile: read those two tags with tifffile (as ``nnip.raw.frame`` does).
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from nnip.core.errors import OutputError

__all__ = ["write_dng", "CFA_COLOR_INDEX"]

#: CFAPattern colour codes (TIFF/EP): 0 red, 1 green, 2 blue.
CFA_COLOR_INDEX = {"R": 0, "G": 1, "B": 2}

_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_MATRIX_DENOMINATOR = 1_000_000
# tifffile refuses to write tag 34665 (ExifIFD) itself; IFD 0 gets this placeholder instead,
# which sorts at the same place among the tags written, and is renamed when the Exif IFD is
# appended.
_EXIF_TAG, _EXIF_PLACEHOLDER = 34665, 34666

# TIFF field types
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _UNDEFINED, _SRATIONAL, _DOUBLE = 1, 2, 3, 4, 5, 7, 10, 12


def _rational(value: float, signed: bool = False) -> tuple[int, int]:
    """(numerator, denominator) of ``value`` within 32-bit limits."""
    limit = 2**31 - 1 if signed else 2**32 - 1
    frac = Fraction(float(value)).limit_denominator(1_000_000)
    while abs(frac.numerator) > limit or frac.denominator > limit:
        frac = Fraction(float(value)).limit_denominator(max(1, frac.denominator // 10))
    return frac.numerator, frac.denominator


def _fixed(values: Sequence[float], denominator: int) -> list[int]:
    """Flat (num, den) pairs with a fixed denominator (how Adobe writes colour matrices)."""
    out: list[int] = []
    for v in values:
        out += [int(round(float(v) * denominator)), denominator]
    return out


def _check_inputs(mosaic: np.ndarray, pattern: str, black: np.ndarray, white_level: int) -> None:
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise ValueError(f"mosaic must be a 2-D uint16 array, got {mosaic.dtype} {mosaic.shape}")
    if pattern not in _PATTERNS:
        raise ValueError(f"unknown Bayer pattern {pattern!r}; allowed: {', '.join(_PATTERNS)}")
    if black.size not in (1, 4):
        raise ValueError("black_level must be one value or four (CFA row-major order)")
    if not 0 < white_level <= 65535 or np.any(black < 0) or np.any(black >= white_level):
        levels = f"{black.tolist()} / {white_level}"
        raise ValueError(f"need 0 <= black level < white level <= 65535, got {levels}")


def _noise_profile_values(noise_profile: Sequence[float] | Sequence[Sequence[float]]) -> list[float]:
    values = [float(v) for v in np.ravel(np.asarray(noise_profile, dtype=np.float64))]
    if len(values) not in (2, 6) or not all(np.isfinite(values)) or min(values) < 0:
        raise ValueError("noise_profile must be (a, b) or three (a, b) pairs, finite and >= 0")
    return values


def _timestamp(when: _dt.datetime | None) -> str:
    return (when or _dt.datetime.now()).strftime("%Y:%m:%d %H:%M:%S")


def _main_tags(
    pattern: str,
    black: np.ndarray,
    white_level: int,
    color_matrix1: np.ndarray,
    calibration_illuminant1: int,
    as_shot_neutral: np.ndarray,
    noise_profile: list[float] | None,
    make: str,
    model: str,
    unique_camera_model: str,
    orientation: int,
    stamp: str,
) -> list[tuple]:
    """tifffile extratags for IFD 0 (each: code, type, count, value, writeonce)."""
    cfa = tuple(CFA_COLOR_INDEX[c] for c in pattern)
    if np.all(black == np.round(black)):
        black_tag = (50714, _LONG, black.size, tuple(int(v) for v in black), True)
    else:
        black_tag = (50714, _RATIONAL, black.size, [n for v in black for n in _rational(v)], True)
    tags = [
        (271, _ASCII, None, make, True),
        (272, _ASCII, None, model, True),
        (274, _SHORT, 1, (orientation,), True),
        (306, _ASCII, None, stamp, True),
        (33421, _SHORT, 2, (2, 2), True),
        (33422, _BYTE, 4, cfa, True),
        (_EXIF_PLACEHOLDER, _LONG, 1, (0,), True),  # becomes ExifIFD once that IFD is appended
        (50706, _BYTE, 4, (1, 4, 0, 0), True),
        (50707, _BYTE, 4, (1, 3, 0, 0), True),
        (50708, _ASCII, None, unique_camera_model, True),
        (50710, _BYTE, 3, (0, 1, 2), True),
        (50711, _SHORT, 1, (1,), True),
        (50713, _SHORT, 2, (2, 2) if black.size == 4 else (1, 1), True),
        black_tag,
        (50717, _LONG, 1, (int(white_level),), True),
        (50721, _SRATIONAL, 9, _fixed(color_matrix1.ravel(), _MATRIX_DENOMINATOR), True),
        (50728, _RATIONAL, 3, _fixed(as_shot_neutral, _MATRIX_DENOMINATOR), True),
        (50778, _SHORT, 1, (int(calibration_illuminant1),), True),
    ]
    if noise_profile is not None:
        tags.append((51041, _DOUBLE, len(noise_profile), tuple(noise_profile), True))
    return sorted(tags, key=lambda t: t[0])


def _exif_entries(
    iso: float | None,
    fnumber: float | None,
    focal_length: float | None,
    exposure_time: float | None,
    lens_model: str | None,
    stamp: str,
) -> list[tuple[int, int, int, bytes]]:
    """Exif IFD entries as (tag, type, count, packed little-endian value bytes)."""
    entries = [(36864, _UNDEFINED, 4, b"0231"), (36867, _ASCII, 20, stamp.encode("ascii") + b"\0")]
    for tag, value in ((33434, exposure_time), (33437, fnumber), (37386, focal_length)):
        if value is not None:
            if value <= 0:
                raise ValueError(f"EXIF tag {tag} needs a positive value, got {value}")
            entries.append((tag, _RATIONAL, 1, struct.pack("<II", *_rational(value))))
    if iso is not None:
        entries.append((34855, _SHORT, 1, struct.pack("<H", int(min(max(round(iso), 1), 65535)))))
    if lens_model:
        text = lens_model.encode("ascii") + b"\0"
        entries.append((42036, _ASCII, len(text), text))
    return sorted(entries)


def _ifd_bytes(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
    """A classic TIFF IFD placed at file ``offset``, values over 4 bytes after it."""
    head = struct.pack("<H", len(entries))
    data_start = offset + 2 + 12 * len(entries) + 4
    body, data = b"", b""
    for tag, typ, count, value in entries:
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, typ, count) + value.ljust(4, b"\0")
        else:
            body += struct.pack("<HHII", tag, typ, count, data_start + len(data))
            data += value + (b"\0" if len(value) % 2 else b"")  # values start on word boundaries
    return head + body + struct.pack("<I", 0) + data


def _point_to_exif(handle, offset: int) -> None:
    """Turn IFD 0's placeholder entry into ExifIFD (LONG) = ``offset``, in the open file."""
    handle.seek(4)
    (ifd0,) = struct.unpack("<I", handle.read(4))
    handle.seek(ifd0)
    (count,) = struct.unpack("<H", handle.read(2))
    for index in range(count):
        entry = ifd0 + 2 + 12 * index
        handle.seek(entry)
        (code,) = struct.unpack("<H", handle.read(2))
        if code == _EXIF_PLACEHOLDER:
            handle.seek(entry)
            handle.write(struct.pack("<HHII", _EXIF_TAG, _LONG, 1, offset))
            return
    raise RuntimeError("the Exif placeholder tag is missing from IFD 0")  # a tifffile change


def _append_exif(path: Path, entries: list[tuple[int, int, int, bytes]]) -> None:
    with open(path, "r+b") as handle:
        handle.seek(0, os.SEEK_END)
        offset = handle.tell()
        if offset % 2:
            handle.write(b"\0")
            offset += 1
        handle.write(_ifd_bytes(entries, offset))
        _point_to_exif(handle, offset)


def write_dng(
    path: str | os.PathLike[str],
    mosaic: np.ndarray,
    *,
    pattern: str,
    black_level: float | Sequence[float],
    white_level: int,
    color_matrix1: np.ndarray,
    as_shot_neutral: Sequence[float],
    calibration_illuminant1: int = 21,
    noise_profile: Sequence[float] | Sequence[Sequence[float]] | None = None,
    make: str = "nnip",
    model: str = "Simulated camera",
    unique_camera_model: str | None = None,
    iso: float | None = None,
    fnumber: float | None = None,
    focal_length: float | None = None,
    exposure_time: float | None = None,
    lens_model: str | None = None,
    orientation: int = 1,
    datetime: _dt.datetime | None = None,
) -> None:
    """Write a Bayer mosaic as an uncompressed DNG 1.4 file.

    Parameters
    ----------
    path : path-like
        File to write (overwritten; the caller handles temporary names).
    mosaic : ndarray, (H, W), uint16
        Raw values, black level not subtracted; H and W even for a whole number of cells
        (LibRaw refuses images under about 22 pixels a side).
    pattern : str
        Bayer phase of the top-left 2x2 cell: ``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``.
    black_level : float or 4 floats
        Black level (raw units), one value or four in the cell's row-major order.
    white_level : int
        Saturation level (raw units), <= 65535.
    color_matrix1 : ndarray, (3, 3)
        XYZ -> camera RGB under ``calibration_illuminant1`` (the DNG ColorMatrix1).
    as_shot_neutral : 3 floats
        Camera RGB of the white of the scene (e.g. green = 1); readers use ``1 / neutral``
        as the as-shot white balance.
    calibration_illuminant1 : int
        EXIF LightSource code of ``color_matrix1`` (21 = D65, 17 = Standard light A).
    noise_profile : (a, b) or ((a, b),) * 3, optional
        Noise variance ``a * x + b`` of a signal x in [0, 1] (black subtracted, divided by
        ``white - black``), one pair for all planes or one per R, G, B plane.
    make, model, unique_camera_model : str
        Camera names (ASCII); the unique model defaults to ``make + " " + model``.
    iso, fnumber, focal_length, exposure_time : float, optional
        Shooting data for the Exif IFD (ISO, f-number, millimetres, seconds).
    lens_model : str, optional
        EXIF LensModel.
    orientation : int
        EXIF orientation 1..8 of the picture.
    datetime : datetime, optional
        Capture time (default: now), written as DateTime and DateTimeOriginal.

    Raises
    ------
    ValueError
        Inputs that cannot form a valid DNG (wrong dtype, pattern, levels, matrix).
    OutputError
        The file cannot be written.
    """
    import tifffile  # heavy import, needed only here

    mosaic = np.asarray(mosaic)
    pattern = str(pattern).upper()
    black = np.atleast_1d(np.asarray(black_level, dtype=np.float64))
    _check_inputs(mosaic, pattern, black, int(white_level))
    matrix = np.asarray(color_matrix1, dtype=np.float64)
    neutral = np.asarray(as_shot_neutral, dtype=np.float64).ravel()
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"color_matrix1 must be a finite 3x3 matrix, got shape {matrix.shape}")
    if neutral.shape != (3,) or np.any(neutral <= 0):
        raise ValueError("as_shot_neutral must be three positive numbers")
    if not 1 <= int(orientation) <= 8:
        raise ValueError(f"orientation must be 1..8, got {orientation}")
    profile = None if noise_profile is None else _noise_profile_values(noise_profile)
    stamp = _timestamp(datetime)
    tags = _main_tags(
        pattern, black, int(white_level), matrix, calibration_illuminant1, neutral, profile,
        make, model, unique_camera_model or f"{make} {model}", int(orientation), stamp,
    )
    exif = _exif_entries(iso, fnumber, focal_length, exposure_time, lens_model, stamp)
    path = Path(path)
    try:
        tifffile.imwrite(
            path, np.ascontiguousarray(mosaic), byteorder="<", photometric=32803,
            extratags=tags, metadata=None, software="nnip", subfiletype=0,
        )
        _append_exif(path, exif)
    except OSError as exc:
        raise OutputError(f"cannot write DNG: {exc.strerror or exc}") from None
