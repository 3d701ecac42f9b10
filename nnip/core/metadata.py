"""EXIF, ICC and XMP carried from an input file to an output file; orientation.

The one home for metadata. EXIF travels between modules as raw bytes in the form
Pillow's ``Image.Exif().tobytes()`` gives (a TIFF structure behind an ``Exif\\0\\0``
prefix, the payload of a JPEG APP1 segment); ICC profiles and XMP packets as raw bytes.

Orientation: readers apply the EXIF orientation to the pixels (:func:`apply_orientation`),
so every output is written with orientation 1 (:func:`update_exif`, :func:`update_xmp`).

TIFF files keep their EXIF differently: camera fields sit in IFD0 as ordinary TIFF tags and
the Exif and GPS sub-IFDs hang off pointer tags 34665 and 34853. tifffile cannot write
sub-IFDs, so :func:`tiff_ifd0_tags` gives the IFD0 tags plus placeholder pointers for the
writer, and :func:`append_tiff_sub_ifds` appends the sub-IFDs to the written file and patches
the pointers. MakerNote and the Interoperability IFD are dropped from TIFF output: both hold
offsets that are only valid inside the original file.
"""

from __future__ import annotations

import io
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any

import numpy as np
from PIL import Image as PILImage
from PIL import TiffImagePlugin

__all__ = [
    "TAG_ORIENTATION",
    "TAG_EXIF_IFD",
    "TAG_GPS_IFD",
    "CameraInfo",
    "load_exif",
    "read_orientation",
    "valid_orientation",
    "orientation_swaps_axes",
    "apply_orientation",
    "update_exif",
    "update_xmp",
    "camera_info",
    "fit_exif",
    "exif_from_tiff",
    "tiff_ifd0_tags",
    "append_tiff_sub_ifds",
]

# IFD0 tags.
TAG_IMAGE_WIDTH = 0x0100
TAG_IMAGE_LENGTH = 0x0101
TAG_IMAGE_DESCRIPTION = 0x010E
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_ORIENTATION = 0x0112
TAG_SOFTWARE = 0x0131
TAG_DATETIME = 0x0132
TAG_ARTIST = 0x013B
TAG_HOST_COMPUTER = 0x013C
TAG_COPYRIGHT = 0x8298
TAG_EXIF_IFD = 0x8769
TAG_GPS_IFD = 0x8825
# Exif sub-IFD tags.
TAG_EXPOSURE_TIME = 0x829A
TAG_F_NUMBER = 0x829D
TAG_ISO = 0x8827
TAG_DATETIME_ORIGINAL = 0x9003
TAG_FOCAL_LENGTH = 0x920A
TAG_MAKER_NOTE = 0x927C
TAG_PIXEL_X_DIMENSION = 0xA002
TAG_PIXEL_Y_DIMENSION = 0xA003
TAG_INTEROP_IFD = 0xA005
TAG_BODY_SERIAL = 0xA431
TAG_LENS_MODEL = 0xA434

#: IFD0 tags copied into a TIFF output as plain TIFF tags (Software, DateTime and the
#: image-structure tags are written by the TIFF writer itself).
TIFF_IFD0_TAGS = (TAG_MAKE, TAG_MODEL, TAG_ARTIST, TAG_HOST_COMPUTER, TAG_COPYRIGHT)
#: Sub-IFD tags dropped from TIFF output (their offsets point into the original file).
_TIFF_DROPPED_SUB_TAGS = (TAG_MAKER_NOTE, TAG_INTEROP_IFD)

#: Tag codes that stand in for the sub-IFD pointers while tifffile writes IFD0.
_TIFF_POINTER_STAND_INS = MappingProxyType({TAG_EXIF_IFD: TAG_EXIF_IFD - 1, TAG_GPS_IFD: TAG_GPS_IFD - 1})


@dataclass(frozen=True)
class CameraInfo:
    """Camera fields of an EXIF block; ``None`` where the field is absent.

    ``exposure_time`` is in seconds, ``focal_length`` in millimetres (as recorded, not
    35 mm equivalent), ``datetime_original`` as EXIF writes it (``YYYY:MM:DD HH:MM:SS``).
    """

    make: str | None = None
    model: str | None = None
    lens_model: str | None = None
    body_serial: str | None = None
    iso: int | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    focal_length: float | None = None
    datetime_original: str | None = None


def load_exif(exif: bytes | None) -> PILImage.Exif:
    """Parse EXIF bytes (with or without the ``Exif\\0\\0`` prefix); empty when absent or corrupt.

    A corrupt EXIF block is not worth failing a photo for: its pixels are still good.
    """
    parsed = PILImage.Exif()
    if exif:
        try:
            parsed.load(exif)
        except (SyntaxError, ValueError, struct.error, EOFError, OSError):
            return PILImage.Exif()
    return parsed


def read_orientation(exif: bytes | None) -> int:
    """EXIF orientation (1..8) of ``exif``; 1 when absent or out of range."""
    value = load_exif(exif).get(TAG_ORIENTATION, 1)
    return _valid_orientation(value)


def valid_orientation(value: Any) -> int:
    """``value`` as an orientation 1..8, or 1 when it is not one (any type accepted)."""
    return _valid_orientation(value)


def _valid_orientation(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 1
    return number if 1 <= number <= 8 else 1


def orientation_swaps_axes(orientation: int) -> bool:
    """True when applying ``orientation`` swaps height and width (values 5 to 8)."""
    return orientation in (5, 6, 7, 8)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels into display orientation, as a viewer honouring EXIF would.

    Parameters
    ----------
    array : np.ndarray
        Shape (H, W) or (H, W, C), any dtype, as stored in the file.
    orientation : int
        EXIF orientation 1..8 (TIFF tag 274 has the same meaning); other values act as 1.

    Returns
    -------
    np.ndarray
        Same dtype; (H, W, ...) or, for 5 to 8, (W, H, ...). C-contiguous. Matches
        ``PIL.ImageOps.exif_transpose``.
    """
    orientation = _valid_orientation(orientation)
    if orientation == 2:  # mirrored left-right
        out = array[:, ::-1]
    elif orientation == 3:  # rotated 180
        out = array[::-1, ::-1]
    elif orientation == 4:  # mirrored top-bottom
        out = array[::-1]
    elif orientation == 5:  # transposed (mirror along the main diagonal)
        out = np.swapaxes(array, 0, 1)
    elif orientation == 6:  # camera turned clockwise: rotate 90 degrees clockwise
        out = np.rot90(array, k=-1)
    elif orientation == 7:  # transversed (mirror along the anti-diagonal)
        out = np.rot90(array, k=2).swapaxes(0, 1)
    elif orientation == 8:  # rotate 90 degrees counter-clockwise
        out = np.rot90(array, k=1)
    else:
        out = array
    return np.ascontiguousarray(out)


def update_exif(
    exif: bytes | None,
    *,
    width: int,
    height: int,
    software: str | None = None,
    orientation: int = 1,
) -> bytes | None:
    """EXIF for an output of ``width`` x ``height`` whose pixels are already upright.

    Sets Orientation (default 1), PixelXDimension/PixelYDimension in the Exif IFD (always)
    and ImageWidth/ImageLength in IFD0 (only where present), and Software when given. The
    IFD1 thumbnail is dropped: it shows the old pixels. Without usable input EXIF the
    result holds just those tags. ``None`` only if nothing could be serialised.
    """
    parsed = load_exif(exif)
    parsed[TAG_ORIENTATION] = int(orientation)
    if software:
        parsed[TAG_SOFTWARE] = software
    for tag, value in ((TAG_IMAGE_WIDTH, width), (TAG_IMAGE_LENGTH, height)):
        if tag in parsed:
            parsed[tag] = int(value)
    exif_ifd = parsed.get_ifd(TAG_EXIF_IFD)
    exif_ifd[TAG_PIXEL_X_DIMENSION] = int(width)
    exif_ifd[TAG_PIXEL_Y_DIMENSION] = int(height)
    parsed[TAG_EXIF_IFD] = exif_ifd
    return _serialise(parsed)


def _serialise(exif: PILImage.Exif) -> bytes | None:
    """``exif.tobytes()``, or without the tags Pillow reads but cannot write back."""
    try:
        return exif.tobytes()
    except (ValueError, struct.error, TypeError, KeyError, AttributeError):
        return _rebuild_exif(exif)


def _rebuild_exif(parsed: PILImage.Exif) -> bytes | None:
    """EXIF bytes keeping only the tags that serialise one by one."""
    clean = PILImage.Exif()
    for tag, value in parsed.items():
        if tag in (TAG_EXIF_IFD, TAG_GPS_IFD):
            continue
        _try_set(clean, tag, value)
    for ifd_tag in (TAG_EXIF_IFD, TAG_GPS_IFD):
        try:
            values = parsed.get_ifd(ifd_tag).items()
        except (ValueError, struct.error, TypeError, KeyError, AttributeError, OSError):
            continue  # Pillow reads a sub-IFD it has no file for: drop it, keep the rest
        sub = {t: v for t, v in values if _serialises(t, v, ifd_tag)}
        if sub:
            clean[ifd_tag] = sub
    try:
        return clean.tobytes()
    except (ValueError, struct.error, TypeError, KeyError, AttributeError):
        return None


def _try_set(exif: PILImage.Exif, tag: int, value: Any) -> None:
    probe = PILImage.Exif()
    probe[tag] = value
    try:
        probe.tobytes()
    except (ValueError, struct.error, TypeError, KeyError, AttributeError):
        return
    exif[tag] = value


def _serialises(tag: int, value: Any, group: int) -> bool:
    ifd = TiffImagePlugin.ImageFileDirectory_v2(group=group)
    try:
        ifd[tag] = value
        ifd.tobytes()
    except (ValueError, struct.error, TypeError, KeyError, AttributeError):
        return False
    return True


def fit_exif(exif: bytes | None, limit: int) -> bytes | None:
    """``exif`` if it fits in ``limit`` bytes, else without MakerNote, else ``None``.

    A JPEG APP1 segment holds at most 65533 bytes; a large maker note is the usual excess.
    """
    if exif is None or len(exif) <= limit:
        return exif
    parsed = load_exif(exif)
    sub = parsed.get_ifd(TAG_EXIF_IFD)
    if TAG_MAKER_NOTE in sub:
        parsed[TAG_EXIF_IFD] = {t: v for t, v in sub.items() if t != TAG_MAKER_NOTE}
        smaller = _serialise(parsed)
        if smaller is not None and len(smaller) <= limit:
            return smaller
    return None


def update_xmp(xmp: bytes | None, *, width: int, height: int, orientation: int = 1) -> bytes | None:
    """XMP with ``tiff:Orientation`` and the pixel dimensions rewritten where present.

    Only existing properties are changed (attribute or element form); an XMP packet that
    says orientation 6 would otherwise make viewers rotate the already upright pixels again.
    """
    if not xmp:
        return None
    for name, value in (
        (b"tiff:Orientation", orientation),
        (b"exif:PixelXDimension", width),
        (b"exif:PixelYDimension", height),
        (b"tiff:ImageWidth", width),
        (b"tiff:ImageLength", height),
    ):
        xmp = _xmp_set(xmp, name, int(value))
    return xmp


def _xmp_set(xmp: bytes, name: bytes, value: int) -> bytes:
    number = str(value).encode()
    attribute = re.compile(rb"(" + re.escape(name) + rb"\s*=\s*[\"'])\s*\d+\s*([\"'])")
    element = re.compile(rb"(<" + re.escape(name) + rb">)\s*\d+\s*(</" + re.escape(name) + rb">)")
    xmp = attribute.sub(lambda m: m.group(1) + number + m.group(2), xmp)
    return element.sub(lambda m: m.group(1) + number + m.group(2), xmp)


def camera_info(exif: bytes | None) -> CameraInfo:
    """Make, model, lens, ISO, exposure and date from EXIF bytes (``None`` where absent)."""
    parsed = load_exif(exif)
    sub = parsed.get_ifd(TAG_EXIF_IFD) if TAG_EXIF_IFD in parsed else {}
    iso = sub.get(TAG_ISO)
    if isinstance(iso, (tuple, list)):
        iso = iso[0] if iso else None
    return CameraInfo(
        make=_text(parsed.get(TAG_MAKE)),
        model=_text(parsed.get(TAG_MODEL)),
        lens_model=_text(sub.get(TAG_LENS_MODEL)),
        body_serial=_text(sub.get(TAG_BODY_SERIAL)),
        iso=_number(iso, int),
        exposure_time=_number(sub.get(TAG_EXPOSURE_TIME), float),
        f_number=_number(sub.get(TAG_F_NUMBER), float),
        focal_length=_number(sub.get(TAG_FOCAL_LENGTH), float),
        datetime_original=_text(sub.get(TAG_DATETIME_ORIGINAL)),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value).strip("\x00 ").strip()
    return text or None


def _number(value: Any, kind: type) -> Any:
    if value is None:
        return None
    try:
        if isinstance(value, (tuple, list)) and len(value) == 2:  # an unparsed (num, den)
            value = value[0] / value[1] if value[1] else None
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not np.isfinite(number):
        return None
    return kind(round(number)) if kind is int else kind(number)


def exif_from_tiff(handle: IO[bytes], ifd0_offset: int, byteorder: str) -> bytes | None:
    """EXIF bytes gathered from a TIFF file's IFD0 camera tags and its Exif/GPS sub-IFDs.

    Parameters
    ----------
    handle : binary file object of the TIFF, open for reading (seekable).
    ifd0_offset : file offset of the image's IFD.
    byteorder : ``"<"`` (II) or ``">"`` (MM), as the TIFF header says.

    Returns ``None`` when the file holds none of those tags. The image-structure tags of
    IFD0 (strips, sample format, ...) are not EXIF and are left out.
    """
    source = PILImage.Exif()
    source.endian = byteorder
    try:
        source.load_from_fp(handle, ifd0_offset)
        ifd0 = {t: source[t] for t in (*TIFF_IFD0_TAGS, TAG_DATETIME, TAG_SOFTWARE,
                                         TAG_IMAGE_DESCRIPTION, TAG_ORIENTATION) if t in source}
        subs = {t: source.get_ifd(t) for t in (TAG_EXIF_IFD, TAG_GPS_IFD) if t in source}
    except (SyntaxError, ValueError, struct.error, EOFError, OSError, KeyError):
        return None
    if not ifd0 and not any(subs.values()):
        return None
    out = PILImage.Exif()
    for tag, value in ifd0.items():
        out[tag] = value
    for tag, values in subs.items():
        kept = {t: v for t, v in values.items() if t not in _TIFF_DROPPED_SUB_TAGS}
        if kept:
            out[tag] = kept
    return _serialise(out)


_EXIF_DATETIME = re.compile(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}")


def tiff_ifd0_tags(exif: bytes | None) -> tuple[list[tuple[int, Any, int, Any, bool]], str | None]:
    """tifffile ``extratags`` for the EXIF camera tags of IFD0, and the EXIF DateTime.

    Returns ``(extratags, datetime)``. ``extratags`` holds ASCII tags from
    :data:`TIFF_IFD0_TAGS` plus, for each Exif/GPS sub-IFD, a zero LONG placeholder under
    a stand-in tag code (tifffile refuses to write the pointer tags themselves) that
    :func:`append_tiff_sub_ifds` turns into the real pointer after the file is written.
    ``datetime`` is the EXIF DateTime (tag 306) for tifffile's ``datetime``, or ``None``.
    """
    parsed = load_exif(exif)
    tags: list[tuple[int, Any, int, Any, bool]] = []
    for tag in TIFF_IFD0_TAGS:
        text = _text(parsed.get(tag))
        if text:
            # ASCII by the TIFF spec; non-ASCII names are written as UTF-8, as cameras do.
            tags.append((tag, "s", 0, text.encode("utf-8") + b"\x00", True))
    for tag, stand_in in _TIFF_POINTER_STAND_INS.items():
        if _sub_ifd_for_tiff(parsed, tag):
            tags.append((stand_in, 4, 1, 0, True))
    when = _text(parsed.get(TAG_DATETIME))
    # tifffile refuses any other form; a damaged date is dropped, not the file
    return tags, when if when and _EXIF_DATETIME.fullmatch(when) else None


def _sub_ifd_for_tiff(parsed: PILImage.Exif, tag: int) -> dict[int, Any]:
    if tag not in parsed:
        return {}
    values = parsed.get_ifd(tag)
    return {
        t: v for t, v in values.items()
        if t not in _TIFF_DROPPED_SUB_TAGS and not isinstance(v, dict) and _serialises(t, v, tag)
    }


def append_tiff_sub_ifds(path: str | Path, exif: bytes | None) -> None:
    """Append the Exif and GPS sub-IFDs of ``exif`` to a TIFF and point IFD0 at them.

    ``path`` is a TIFF (classic or BigTIFF) just written with the extratags of
    :func:`tiff_ifd0_tags` for the same ``exif``. Each stand-in entry (tag code one below
    the real pointer's, so the entries stay sorted) is rewritten in place as the real
    pointer to the appended IFD (in a BigTIFF an IFD8, whose offset may pass 4 GB).
    Nothing happens when the file holds no stand-ins.
    """
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        entries = {
            tag: int(tags[stand_in].offset)
            for tag, stand_in in _TIFF_POINTER_STAND_INS.items()
            if stand_in in tags and int(tags[stand_in].value) == 0
        }
        order = "<" if tif.byteorder == "<" else ">"
        bigtiff = bool(tif.is_bigtiff)
    if not entries:
        return
    parsed = load_exif(exif)
    # The header tells Pillow the file's layout (BigTIFF: 8-byte counts and offsets), the
    # prefix its byte order (Pillow reads the kind from the little-endian form only).
    header = b"II\x2b\x00\x08\x00\x00\x00" + bytes(8) if bigtiff else b"II\x2a\x00\x08\x00\x00\x00"
    prefix = b"II" if order == "<" else b"MM"
    if bigtiff and not _writes_bigtiff_ifds(header):
        return  # an old Pillow would write classic IFDs: keep the file valid, without them
    # IFD entry: code (2), type (2), count (4 | 8), value (4 | 8); LONG (4) or IFD8 (18).
    entry_format, pointer_type = (order + "HHQQ", 18) if bigtiff else (order + "HHII", 4)
    with open(path, "r+b") as handle:
        for tag, entry in entries.items():
            ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh=header, prefix=prefix, group=tag)
            for sub_tag, value in _sub_ifd_for_tiff(parsed, tag).items():
                ifd[sub_tag] = value
            handle.seek(0, io.SEEK_END)
            position = handle.tell()
            if position % 2:  # IFDs start on a word boundary
                handle.write(b"\x00")
                position += 1
            handle.write(ifd.tobytes(position))
            handle.seek(entry)
            handle.write(struct.pack(entry_format, tag, pointer_type, 1, position))


def _writes_bigtiff_ifds(header: bytes) -> bool:
    """Whether this Pillow writes BigTIFF IFDs (8-byte entries); older ones write classic IFDs."""
    try:
        return bool(getattr(TiffImagePlugin.ImageFileDirectory_v2(ifh=header), "_bigtiff", False))
    except SyntaxError:  # a Pillow that does not know BigTIFF headers at all
        return False
