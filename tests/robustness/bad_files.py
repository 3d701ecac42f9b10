"""Small good files and the ways the bad-input suite breaks them, made on the fly.

Good files: :func:`jpeg_bytes`, :func:`png_bytes`, :func:`tiff_bytes` (random pixels, so a
codec cannot shrink them to nothing) and :func:`dng_bytes` (a random 48 x 32 RGGB mosaic
from the project's DNG writer: LibRaw decodes it).

Breakers: :func:`truncated`, :func:`flip_bit`, and header edits that keep the rest of the
file intact: :func:`with_tiff_size` (also a DNG's raw IFD), :func:`with_tag_type` (a TIFF
tag of the wrong type), :func:`with_png_size` (the CRC recomputed, so the size is what a
reader must judge), :func:`with_jpeg_size`, and :func:`with_png_crcs_fixed` (damage
that a PNG's checksums would otherwise catch first).
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "CAM_FROM_XYZ",
    "jpeg_bytes",
    "png_bytes",
    "tiff_bytes",
    "dng_bytes",
    "truncated",
    "flip_bit",
    "with_tiff_size",
    "with_png_size",
    "with_jpeg_size",
    "with_tag_type",
    "with_png_crcs_fixed",
]

#: Adobe's ColorMatrix2 (D65) of a Canon EOS 5D Mark III: XYZ -> camera.
CAM_FROM_XYZ = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4


def _pixels(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def jpeg_bytes(height: int = 32, width: int = 48, seed: int = 0) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(_pixels(height, width, seed)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(height: int = 32, width: int = 48, seed: int = 0) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(_pixels(height, width, seed)).save(buffer, "PNG")
    return buffer.getvalue()


def tiff_bytes(height: int = 32, width: int = 48, seed: int = 0) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    tifffile.imwrite(buffer, _pixels(height, width, seed), photometric="rgb")
    return buffer.getvalue()


def dng_bytes(directory: Path, seed: int = 0) -> bytes:
    """A 48 x 32 RGGB DNG of random raw values (written in ``directory``, returned as bytes)."""
    import datetime as dt

    from nnip.raw.dng import write_dng

    mosaic = np.random.default_rng(seed).integers(1000, 9000, (32, 48)).astype(np.uint16)
    path = Path(directory) / f".seed-{seed}.dng"
    write_dng(path, mosaic, pattern="RGGB", black_level=512, white_level=16383,
              color_matrix1=CAM_FROM_XYZ, as_shot_neutral=(0.5, 1.0, 0.7),
              datetime=dt.datetime(2024, 5, 6, 7, 8, 9))
    data = path.read_bytes()
    path.unlink()
    return data


def truncated(data: bytes, keep: float) -> bytes:
    """The first ``keep`` (0..1) of ``data``."""
    return data[: int(len(data) * keep)]


def flip_bit(data: bytes, position: int, bit: int = 0) -> bytes:
    out = bytearray(data)
    out[position] ^= 1 << bit
    return bytes(out)


def with_tiff_size(data: bytes, width: int, height: int) -> bytes:
    """A TIFF (or DNG) whose first IFD says ``width`` x ``height`` (as LONG values)."""
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    out = bytearray(data)
    found = 0
    for k in range(count):
        entry = ifd + 2 + 12 * k
        (tag,) = struct.unpack(order + "H", data[entry : entry + 2])
        if tag in (256, 257):
            out[entry + 2 : entry + 12] = struct.pack(order + "HII", 4, 1, width if tag == 256 else height)
            found += 1
    assert found == 2, "no ImageWidth / ImageLength in the first IFD"
    return bytes(out)


def with_png_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR says ``width`` x ``height``, with a correct CRC."""
    assert data[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    """A JPEG whose start-of-frame segment says ``width`` x ``height``."""
    position = 2
    while data[position] == 0xFF:
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            out = bytearray(data)
            out[position + 5 : position + 9] = struct.pack(">HH", height, width)
            return bytes(out)
        position += 2 + length
    raise AssertionError("no start-of-frame segment")


def with_tag_type(data: bytes, tag: int, kind: int) -> bytes:
    """A little-endian TIFF (or DNG) whose first-IFD entry ``tag`` has type field ``kind``."""
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == tag:
            return data[: entry + 2] + struct.pack("<H", kind) + data[entry + 4 :]
    raise AssertionError(f"no tag {tag} in the first IFD")


def with_png_crcs_fixed(data: bytes) -> bytes:
    """``data`` with the CRC of every whole PNG chunk recomputed."""
    out = bytearray(data)
    position = 8
    while position + 12 <= len(out):
        (length,) = struct.unpack(">I", out[position : position + 4])
        end = position + 12 + length
        if end > len(out):
            break
        out[end - 4 : end] = struct.pack(">I", zlib.crc32(bytes(out[position + 4 : end - 4])))
        position = end
    return bytes(out)
