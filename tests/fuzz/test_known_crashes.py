"""Crashes the fuzzing found in the image readers and metadata code, kept as regression tests.

Each test is the smallest input found for one crash, run in a child process (a 2 GiB
address-space limit turns a runaway allocation into a quick ``MemoryError``). The wanted
behaviour is asserted: one clear error, no crash (see also the fuzzing section of
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import io
import struct
from typing import Iterator

import pytest

from fuzz.reader_worker import ReaderWorker
from robustness.bad_files import jpeg_bytes, png_bytes, tiff_bytes, with_jpeg_size, with_png_size, with_tiff_size

_SIZE_FIX = (
    "imageio allocates the claimed size before it finds the data missing: refuse a header "
    "whose pixel count the file's bytes cannot hold (Huffman JPEG >= 1 bit per 8x8 block, "
    "deflate <= 1032:1, uncompressed TIFF strips must cover the image)"
)


@pytest.fixture(scope="module")
def worker() -> Iterator[ReaderWorker]:
    child = ReaderWorker()
    yield child
    child.close()


def _refused(answer: dict) -> None:
    assert answer["status"] == "error", answer
    assert "\n" not in answer["message"]


@pytest.mark.parametrize("make, ext", [
    (lambda: with_jpeg_size(jpeg_bytes(), 30_000, 30_000), ".jpg"),
    (lambda: with_png_size(png_bytes(), 30_000, 30_000), ".png"),
    (lambda: with_tiff_size(tiff_bytes(), 30_000, 30_000), ".tif"),
], ids=["jpeg", "png", "tiff"])
def test_a_tiny_file_claiming_900_megapixels_is_refused_before_allocating(
    worker: ReaderWorker, make, ext: str
) -> None:
    _refused(worker.run("image", make(), ext, timeout=20))


def _tiff_entry(data: bytes, tag: int) -> int:
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd:ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if struct.unpack("<H", data[entry:entry + 2])[0] == tag:
            return entry
    raise AssertionError(f"no tag {tag}")


def test_a_tiff_with_a_zero_bits_per_sample_is_refused(worker: ReaderWorker) -> None:
    data = bytearray(tiff_bytes())
    entry = _tiff_entry(bytes(data), 258)  # BitsPerSample: 3 SHORTs at an offset
    (offset,) = struct.unpack("<I", data[entry + 8:entry + 12])
    data[offset + 2:offset + 4] = struct.pack("<H", 0)  # (8, 0, 8)
    _refused(worker.run("image", bytes(data), ".tif"))


def test_a_tiff_with_two_widths_is_refused(worker: ReaderWorker) -> None:
    data = bytearray(tiff_bytes())
    entry = _tiff_entry(bytes(data), 256)
    data[entry + 2:entry + 12] = struct.pack("<HIHH", 3, 2, 48, 48)  # SHORT x 2: (48, 48)
    _refused(worker.run("image", bytes(data), ".tif"))


def test_a_png_chunk_name_with_a_newline_gives_a_one_line_message(worker: ReaderWorker) -> None:
    data = png_bytes()[:33] + struct.pack(">I", 1000) + b"a\nbc" + b"cut"
    _refused(worker.run("image", data, ".png"))


def _exif_with_rational_model() -> bytes:
    """EXIF whose Model (an ASCII tag) is stored as a RATIONAL, as a damaged camera file has."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0110, 5, 1, 26) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<II", 1, 2)


def test_update_exif_never_raises_on_a_mistyped_tag() -> None:
    from nnip.core import metadata

    updated = metadata.update_exif(_exif_with_rational_model(), width=4, height=4)
    assert updated is None or metadata.read_orientation(updated) == 1


def test_exif_from_tiff_never_raises_on_a_mistyped_tag() -> None:
    from nnip.core import metadata

    sub_offset, rational_offset = 38, 56
    ifd0 = (struct.pack("<H", 2) + struct.pack("<HHII", 0x0110, 5, 1, rational_offset)
            + struct.pack("<HHII", 0x8769, 4, 1, sub_offset) + struct.pack("<I", 0))
    sub = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x8827, 3, 1, 400, 0) + struct.pack("<I", 0)
    data = b"II*\x00" + struct.pack("<I", 8) + ifd0 + sub + struct.pack("<II", 1, 2)
    assert len(b"II*\x00") + 4 + len(ifd0) == sub_offset and sub_offset + len(sub) == rational_offset
    metadata.exif_from_tiff(io.BytesIO(data), 8, "<")
