"""Write DNG 1.4 files that LibRaw (rawpy) and other raw developers understand.

Two kinds, one home:

* :func:`write_dng`: a Bayer mosaic (PhotometricInterpretation CFA), as a camera writes it;
  the simulator's output.
* :func:`write_linear_dng`: a *linear* DNG (PhotometricInterpretation LinearRaw): the
  demosaicked (and denoised, lens-corrected) camera RGB, 3 samples per pixel, still before
  white balance and colour matrix, as DxO PureRAW and Lightroom's Enhance write it. Another
  raw developer applies its own white balance (from AsShotNeutral), colour matrix and tone.

Each file is a little-endian TIFF with one IFD (the image, NewSubFileType 0, strips,
uncompressed 16-bit) written by tifffile, plus an Exif IFD appended after it (tifffile does
not write Exif IFDs), referenced from IFD 0 by tag 34665.

Tags of the mosaic DNG (IFD 0 unless noted), with the layout a reader should expect:

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
FocalPlaneX/YResolution     41486/7 RATIONAL    pixels per cm, when the pixel pitch is given
FocalPlaneResolutionUnit    41488   SHORT       3 (centimetres), with the two above
==========================  ======  ==========  ============================================

The linear DNG has the same camera tags (Make, Model, Orientation, DateTime, DNGVersion,
UniqueCameraModel, ColorMatrix1, CalibrationIlluminant1, AsShotNeutral, NoiseProfile, the
Exif IFD) and, instead of the CFA tags:

==========================  ======  ==========  ============================================
PhotometricInterpretation   262     SHORT       34892 (LinearRaw); SamplesPerPixel 3,
                                                BitsPerSample 16, PlanarConfiguration 1
BlackLevelRepeatDim         50713   SHORT x2    (1, 1)
BlackLevel                  50714   LONG x3     0, 0, 0 (one per sample)
WhiteLevel                  50717   LONG x3     the white level, 65535 by default
ColorMatrix2                50722   SRATIONAL   9, when a second illuminant is known
CalibrationIlluminant2      50779   SHORT       with ColorMatrix2
ForwardMatrix1/2            50964/5 SRATIONAL   9, white-balanced camera -> XYZ D50, if known
BaselineExposure            50730   SRATIONAL   stops a reader should add (0: none)
OriginalRawFileName         50827   ASCII       the source RAW's file name, when given
==========================  ======  ==========  ============================================

A DNG reader renders a linear DNG as it renders a mosaic one after demosaicking: the
values, black subtracted and divided by white - black, are linear camera RGB; it white
balances them with 1 / AsShotNeutral and converts with ColorMatrix (or ForwardMatrix).

What rawpy 0.28 (LibRaw 0.22) gives back for a mosaic DNG: ``raw_pattern`` + ``color_desc`` (the pattern),
``black_level_per_channel``, ``white_level``, ``camera_whitebalance`` (= 1 / AsShotNeutral),
``color_matrix`` (LibRaw's camera -> sRGB matrix derived from ColorMatrix1), ``other``
(ISO, aperture, focal length, shutter, timestamp), ``lens.model``. ``rgb_xyz_matrix`` stays
zero for cameras LibRaw does not know (LibRaw fills it from its own table only), and rawpy
does not expose NoiseProfile: read those two tags with tifffile (as ``nnip.raw.frame`` does).
For a linear DNG, ``raw_image`` is (H, W, 3) (rawpy's "RGB-type image"), ``raw_pattern``
is None and ``color_desc`` is ``b"RGBG"``; ``postprocess`` skips demosaicking.
"""

from __future__ import annotations

import datetime as _dt
import os
import struct
from fractions import Fraction
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnip.core.errors import OutputError

__all__ = ["write_dng", "write_linear_dng", "CFA_COLOR_INDEX"]

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


def _ascii(text: str | None) -> str | None:
    """``text`` with anything outside ASCII replaced by ``?`` (TIFF ASCII tags are 7-bit)."""
    return None if text is None else text.encode("ascii", "replace").decode("ascii")


def _matrix(value: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(value, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} must be a finite 3x3 matrix, got shape {matrix.shape}")
    return matrix


@dataclass(frozen=True)
class _CameraTags:
    """What both kinds of DNG say about the camera and the shot, checked.

    ``matrices`` holds (ColorMatrix, CalibrationIlluminant, ForwardMatrix or None) for
    illuminant 1 and, optionally, 2. ``original`` is DateTimeOriginal (None: unknown).
    """

    make: str
    model: str
    unique_camera_model: str
    orientation: int
    stamp: str
    original: str | None
    matrices: tuple[tuple[np.ndarray, int, np.ndarray | None], ...]
    as_shot_neutral: np.ndarray
    noise_profile: list[float] | None
    iso: float | None = None
    fnumber: float | None = None
    focal_length: float | None = None
    exposure_time: float | None = None
    lens_model: str | None = None
    original_raw_file_name: str | None = None
    pixel_pitch_um: float | None = None

    @classmethod
    def checked(
        cls,
        *,
        matrices: Sequence[tuple[np.ndarray, int, np.ndarray | None]],
        as_shot_neutral: Sequence[float],
        noise_profile: Sequence[float] | Sequence[Sequence[float]] | None,
        make: str,
        model: str,
        unique_camera_model: str | None,
        orientation: int,
        when: _dt.datetime | None,
        original: _dt.datetime | None,
        lens_model: str | None = None,
        original_raw_file_name: str | None = None,
        **shot: float | None,
    ) -> "_CameraTags":
        neutral = np.asarray(as_shot_neutral, dtype=np.float64).ravel()
        if neutral.shape != (3,) or not np.all(np.isfinite(neutral)) or np.any(neutral <= 0):
            raise ValueError("as_shot_neutral must be three positive numbers")
        if not 1 <= int(orientation) <= 8:
            raise ValueError(f"orientation must be 1..8, got {orientation}")
        checked = tuple(
            (_matrix(cm, f"color_matrix{i}"), int(ill),
             None if fm is None else _matrix(fm, f"forward_matrix{i}"))
            for i, (cm, ill, fm) in enumerate(matrices, 1)
        )
        return cls(
            make=_ascii(make) or "", model=_ascii(model) or "",
            unique_camera_model=_ascii(unique_camera_model or f"{make} {model}") or "",
            orientation=int(orientation), stamp=_timestamp(when),
            original=None if original is None else _timestamp(original),
            matrices=checked, as_shot_neutral=neutral,
            noise_profile=None if noise_profile is None else _noise_profile_values(noise_profile),
            lens_model=_ascii(lens_model), original_raw_file_name=_ascii(original_raw_file_name),
            **shot,  # type: ignore[arg-type]
        )


def _camera_tags(camera: _CameraTags) -> list[tuple]:
    """tifffile extratags common to both kinds (each: code, type, count, value, writeonce)."""
    tags = [
        (271, _ASCII, None, camera.make, True),
        (272, _ASCII, None, camera.model, True),
        (274, _SHORT, 1, (camera.orientation,), True),
        (306, _ASCII, None, camera.stamp, True),
        (_EXIF_PLACEHOLDER, _LONG, 1, (0,), True),  # becomes ExifIFD once that IFD is appended
        (50706, _BYTE, 4, (1, 4, 0, 0), True),
        (50707, _BYTE, 4, (1, 3, 0, 0), True),
        (50708, _ASCII, None, camera.unique_camera_model, True),
        (50728, _RATIONAL, 3, _fixed(camera.as_shot_neutral, _MATRIX_DENOMINATOR), True),
    ]
    codes = ((50721, 50778, 50964), (50722, 50779, 50965))  # matrix, illuminant, forward
    for (cm_code, ill_code, fm_code), (cm, illuminant, fm) in zip(codes, camera.matrices):
        tags.append((cm_code, _SRATIONAL, 9, _fixed(cm.ravel(), _MATRIX_DENOMINATOR), True))
        tags.append((ill_code, _SHORT, 1, (illuminant,), True))
        if fm is not None:
            tags.append((fm_code, _SRATIONAL, 9, _fixed(fm.ravel(), _MATRIX_DENOMINATOR), True))
    if camera.noise_profile is not None:
        tags.append((51041, _DOUBLE, len(camera.noise_profile), tuple(camera.noise_profile), True))
    if camera.original_raw_file_name:
        tags.append((50827, _ASCII, None, camera.original_raw_file_name, True))
    return tags


def _cfa_tags(pattern: str, black: np.ndarray, white_level: int) -> list[tuple]:
    """The mosaic DNG's own tags: CFA layout and levels."""
    cfa = tuple(CFA_COLOR_INDEX[c] for c in pattern)
    if np.all(black == np.round(black)):
        black_tag = (50714, _LONG, black.size, tuple(int(v) for v in black), True)
    else:
        black_tag = (50714, _RATIONAL, black.size, [n for v in black for n in _rational(v)], True)
    return [
        (33421, _SHORT, 2, (2, 2), True),
        (33422, _BYTE, 4, cfa, True),
        (50710, _BYTE, 3, (0, 1, 2), True),
        (50711, _SHORT, 1, (1,), True),
        (50713, _SHORT, 2, (2, 2) if black.size == 4 else (1, 1), True),
        black_tag,
        (50717, _LONG, 1, (int(white_level),), True),
    ]


def _linear_tags(white_level: int, baseline_exposure: float) -> list[tuple]:
    """The linear DNG's own tags: levels per sample (black 0) and BaselineExposure."""
    return [
        (50713, _SHORT, 2, (1, 1), True),
        (50714, _LONG, 3, (0, 0, 0), True),
        (50717, _LONG, 3, (int(white_level),) * 3, True),
        (50730, _SRATIONAL, 1, _rational(baseline_exposure, signed=True), True),
    ]


def _exif_entries(camera: _CameraTags) -> list[tuple[int, int, int, bytes]]:
    """Exif IFD entries as (tag, type, count, packed little-endian value bytes)."""
    entries = [(36864, _UNDEFINED, 4, b"0231")]
    if camera.original is not None:
        entries.append((36867, _ASCII, 20, camera.original.encode("ascii") + b"\0"))
    for tag, value in ((33434, camera.exposure_time), (33437, camera.fnumber),
                       (37386, camera.focal_length)):
        if value is not None:
            if value <= 0:
                raise ValueError(f"EXIF tag {tag} needs a positive value, got {value}")
            entries.append((tag, _RATIONAL, 1, struct.pack("<II", *_rational(value))))
    if camera.pixel_pitch_um is not None:  # what a reader derives the pixel pitch from
        if camera.pixel_pitch_um <= 0:
            raise ValueError(f"pixel_pitch_um must be positive, got {camera.pixel_pitch_um}")
        per_cm = struct.pack("<II", *_rational(10000.0 / camera.pixel_pitch_um))
        entries += [(41486, _RATIONAL, 1, per_cm), (41487, _RATIONAL, 1, per_cm),
                    (41488, _SHORT, 1, struct.pack("<H", 3))]
    if camera.iso is not None:
        iso = int(min(max(round(camera.iso), 1), 65535))
        entries.append((34855, _SHORT, 1, struct.pack("<H", iso)))
    if camera.lens_model:
        text = camera.lens_model.encode("ascii") + b"\0"
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


def _write(path: Path, pixels: np.ndarray, photometric: int, tags: list[tuple],
           camera: _CameraTags, software: str) -> None:
    """tifffile writes IFD 0 (tags sorted, as TIFF requires); the Exif IFD goes after it."""
    import tifffile  # heavy import, needed only here

    try:
        tifffile.imwrite(
            path, np.ascontiguousarray(pixels), byteorder="<", photometric=photometric,
            planarconfig="contig" if pixels.ndim == 3 else None,
            extratags=sorted(tags, key=lambda t: t[0]), metadata=None, software=software,
            subfiletype=0,
        )
        _append_exif(path, _exif_entries(camera))
    except OSError as exc:
        raise OutputError(f"cannot write DNG: {exc.strerror or exc}") from None


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
    pixel_pitch_um: float | None = None,
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
    pixel_pitch_um : float, optional
        Sensor pixel pitch, written as EXIF FocalPlaneX/YResolution in pixels per cm.

    Raises
    ------
    ValueError
        Inputs that cannot form a valid DNG (wrong dtype, pattern, levels, matrix).
    OutputError
        The file cannot be written.
    """
    mosaic = np.asarray(mosaic)
    pattern = str(pattern).upper()
    black = np.atleast_1d(np.asarray(black_level, dtype=np.float64))
    _check_inputs(mosaic, pattern, black, int(white_level))
    when = datetime or _dt.datetime.now()
    camera = _CameraTags.checked(
        matrices=[(color_matrix1, calibration_illuminant1, None)],
        as_shot_neutral=as_shot_neutral, noise_profile=noise_profile, make=make, model=model,
        unique_camera_model=unique_camera_model, orientation=orientation, when=when,
        original=when, iso=iso, fnumber=fnumber, focal_length=focal_length,
        exposure_time=exposure_time, lens_model=lens_model, pixel_pitch_um=pixel_pitch_um,
    )
    tags = _camera_tags(camera) + _cfa_tags(pattern, black, int(white_level))
    _write(Path(path), mosaic, 32803, tags, camera, "nnip")


def write_linear_dng(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    *,
    color_matrix1: np.ndarray,
    as_shot_neutral: Sequence[float],
    calibration_illuminant1: int = 21,
    color_matrix2: np.ndarray | None = None,
    calibration_illuminant2: int | None = None,
    forward_matrix1: np.ndarray | None = None,
    forward_matrix2: np.ndarray | None = None,
    white_level: int = 65535,
    baseline_exposure: float = 0.0,
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
    original_raw_file_name: str | None = None,
    software: str = "nnip",
) -> None:
    """Write demosaicked camera RGB as an uncompressed linear DNG 1.4 (LinearRaw).

    Parameters
    ----------
    path : path-like
        File to write (overwritten; the caller handles temporary names).
    rgb : ndarray, (H, W, 3), uint16
        Linear camera RGB, NOT white balanced and NOT converted by any colour matrix; black
        is 0 and ``white_level`` is the sensor's saturation (scale the raw range onto it).
        Stored orientation (``orientation`` says how to turn it for display).
    color_matrix1 : ndarray, (3, 3)
        XYZ -> camera RGB under ``calibration_illuminant1`` (the DNG ColorMatrix1).
    as_shot_neutral : 3 floats
        Camera RGB of the scene white; readers white balance with ``1 / neutral``.
    calibration_illuminant1 : int
        EXIF LightSource code of ``color_matrix1`` (21 = D65, 17 = Standard light A).
    color_matrix2, calibration_illuminant2 : optional
        A second matrix and its illuminant (both or neither).
    forward_matrix1, forward_matrix2 : ndarray (3, 3), optional
        White-balanced camera RGB -> XYZ D50 for illuminant 1 / 2 (DNG ForwardMatrix).
    white_level : int
        Value of the sensor's saturation, <= 65535 (one WhiteLevel per sample).
    baseline_exposure : float
        Stops a reader adds to its default exposure (DNG BaselineExposure; 0 = none).
    noise_profile : (a, b) or ((a, b),) * 3, optional
        Noise variance ``a * x + b`` of a value x in [0, 1] (divided by ``white_level``):
        leave it out once the data has been denoised, as it would no longer hold.
    make, model, unique_camera_model, iso, fnumber, focal_length, exposure_time, lens_model,
    orientation
        As for :func:`write_dng`.
    datetime : datetime, optional
        Capture time, written as DateTime and DateTimeOriginal; when None, DateTime is now
        and DateTimeOriginal is left out (an unknown capture time is not invented).
    original_raw_file_name : str, optional
        File name (no folder) of the RAW this was developed from (DNG OriginalRawFileName).
    software : str
        TIFF Software tag.

    Raises
    ------
    ValueError
        Inputs that cannot form a valid DNG (wrong dtype or shape, levels, matrices).
    OutputError
        The file cannot be written.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint16:
        raise ValueError(f"rgb must be an (H, W, 3) uint16 array, got {rgb.dtype} {rgb.shape}")
    if not 0 < int(white_level) <= 65535:
        raise ValueError(f"need 0 < white level <= 65535, got {white_level}")
    if (color_matrix2 is None) != (calibration_illuminant2 is None):
        raise ValueError("color_matrix2 and calibration_illuminant2 go together")
    if forward_matrix2 is not None and color_matrix2 is None:
        raise ValueError("forward_matrix2 needs color_matrix2")
    if not np.isfinite(baseline_exposure):
        raise ValueError("baseline_exposure must be a finite number of stops")
    matrices = [(color_matrix1, calibration_illuminant1, forward_matrix1)]
    if color_matrix2 is not None:
        matrices.append((color_matrix2, int(calibration_illuminant2), forward_matrix2))  # type: ignore[arg-type]
    camera = _CameraTags.checked(
        matrices=matrices, as_shot_neutral=as_shot_neutral, noise_profile=noise_profile,
        make=make, model=model, unique_camera_model=unique_camera_model,
        orientation=orientation, when=datetime, original=datetime, iso=iso, fnumber=fnumber,
        focal_length=focal_length, exposure_time=exposure_time, lens_model=lens_model,
        original_raw_file_name=original_raw_file_name,
    )
    tags = _camera_tags(camera) + _linear_tags(int(white_level), float(baseline_exposure))
    _write(Path(path), rgb, 34892, tags, camera, software)
