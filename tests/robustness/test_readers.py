"""Bad files straight into the readers: an NnipError with one line that does not name the file.

``read_image`` (JPEG, PNG, TIFF) and ``read_raw`` (LibRaw) on truncated, bit-flipped,
absurdly sized, zero-size, empty, mislabelled files and on odd paths. Every case here is
refused before any large allocation, so it runs in the test process; inputs that are not
(and crash reports) are the fuzz tests' business, in a child process.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

import pytest

from nnip.core.errors import (
    ImageReadError,
    InputError,
    NnipError,
    RawDecodeError,
    UnsupportedFormatError,
)
from nnip.core.imageio import read_image
from nnip.raw.frame import read_raw
from robustness.bad_files import (
    dng_bytes,
    flip_bit,
    jpeg_bytes,
    png_bytes,
    tiff_bytes,
    truncated,
    with_jpeg_size,
    with_png_size,
    with_tag_type,
    with_tiff_size,
)

Maker = Callable[[Path], bytes]

# name: (bytes maker, file extension, expected error class, pattern of the message)
IMAGE_CASES: dict[str, tuple[Maker, str, type[NnipError], str]] = {
    "empty": (lambda d: b"", ".jpg", InputError, r"^empty file \(0 bytes\)$"),
    "jpeg cut in half": (lambda d: truncated(jpeg_bytes(), 0.5), ".jpg", ImageReadError,
                         r"truncated JPEG"),
    "jpeg cut in its header": (lambda d: jpeg_bytes()[:100], ".jpg", ImageReadError,
                               r"truncated JPEG"),
    "png cut in half": (lambda d: truncated(png_bytes(), 0.5), ".png", ImageReadError,
                        r"^truncated PNG \(the IDAT chunk is cut short\)$"),
    "png without end": (lambda d: png_bytes()[:-12], ".png", ImageReadError,
                        r"^truncated PNG \(no end marker\)$"),
    "tiff cut in half": (lambda d: truncated(tiff_bytes(), 0.5), ".tif", ImageReadError,
                         r"^truncated TIFF \(image data runs \d+ bytes past the end\)$"),
    "tiff cut in its header": (lambda d: tiff_bytes()[:6], ".tif", ImageReadError,
                               r"corrupt or truncated TIFF"),
    "png bit flip in the header": (lambda d: flip_bit(png_bytes(), 17), ".png", ImageReadError,
                                   r"^corrupt PNG \(checksum error in the IHDR chunk\)$"),
    "png bit flip in the pixels": (lambda d: flip_bit(png_bytes(), 100, 3), ".png",
                                   ImageReadError, r"checksum error in the IDAT chunk"),
    "tiff bit flip in the magic": (lambda d: flip_bit(tiff_bytes(), 0), ".tif",
                                   UnsupportedFormatError, r"^not a TIFF \(unknown binary data\)$"),
    "tiff claiming 100000x100000": (lambda d: with_tiff_size(tiff_bytes(), 100_000, 100_000),
                                    ".tif", UnsupportedFormatError,
                                    r"^image too large: 100000x100000 = 10000 megapixels"),
    "png claiming 100000x100000": (lambda d: with_png_size(png_bytes(), 100_000, 100_000),
                                   ".png", UnsupportedFormatError, r"^image too large: 100000x100000"),
    "jpeg claiming 65535x65535": (lambda d: with_jpeg_size(jpeg_bytes(), 65_535, 65_535),
                                  ".jpg", UnsupportedFormatError, r"^image too large: 65535x65535"),
    "tiff of height 0": (lambda d: with_tiff_size(tiff_bytes(), 48, 0), ".tif", ImageReadError,
                         r"^invalid image size 48x0$"),
    "tiff of width 0": (lambda d: with_tiff_size(tiff_bytes(), 0, 32), ".tif", ImageReadError,
                        r"^invalid image size 0x32$"),
    "png of width 0": (lambda d: with_png_size(png_bytes(), 0, 32), ".png", ImageReadError,
                       r"^invalid image size 0x32$"),
    "jpeg of height 0": (lambda d: with_jpeg_size(jpeg_bytes(), 48, 0), ".jpg", ImageReadError,
                         r"corrupt or truncated JPEG"),
    "dng named .jpg": (dng_bytes, ".jpg", UnsupportedFormatError,
                       r"a camera RAW file \(DNG\): use nnip develop"),
    "text named .png": (lambda d: b"just some words\n", ".png", UnsupportedFormatError,
                        r"^not a PNG \(looks like text\)$"),
    "zeros named .tif": (lambda d: bytes(4096), ".tif", UnsupportedFormatError,
                         r"^not a TIFF \(unknown binary data\)$"),
}

RAW_CASES: dict[str, tuple[Maker, str, type[NnipError], str]] = {
    "empty": (lambda d: b"", ".CR3", InputError, r"^empty file \(0 bytes\)$"),
    "dng cut in half": (lambda d: truncated(dng_bytes(d), 0.5), ".dng", RawDecodeError,
                        r"truncated or corrupt RAW data"),
    "dng cut in its header": (lambda d: dng_bytes(d)[:200], ".dng", RawDecodeError,
                              r"truncated or corrupt RAW data"),
    "dng claiming 100000x100000": (lambda d: with_tiff_size(dng_bytes(d), 100_000, 100_000),
                                   ".dng", RawDecodeError, r"RAW"),
    "dng of height 0": (lambda d: with_tiff_size(dng_bytes(d), 48, 0), ".dng", RawDecodeError,
                        r"RAW"),
    # LibRaw would allocate and scan 12 MP of nothing (173 MP took > 10 s in the fuzzing)
    "dng of 4 kB claiming 4000x3000": (lambda d: with_tiff_size(dng_bytes(d), 4000, 3000),
                                       ".dng", RawDecodeError,
                                       r"^truncated or corrupt RAW data \(the header says "
                                       r"4000x3000 pixels, too many for a file of \d+ bytes\)$"),
    "dng bit flip in the magic": (lambda d: flip_bit(dng_bytes(d), 0), ".dng", RawDecodeError,
                                  r"unsupported RAW format"),
    "jpeg named .CR3": (lambda d: jpeg_bytes(), ".CR3", RawDecodeError,
                        r"^not a RAW file \(looks like a JPEG image\)$"),
    "png named .NEF": (lambda d: png_bytes(), ".NEF", RawDecodeError,
                       r"^not a RAW file \(looks like a PNG image\)$"),
    "text named .ARW": (lambda d: b"not a photo\n", ".ARW", RawDecodeError,
                        r"^not a RAW file \(looks like text\)$"),
    "zeros named .CR2": (lambda d: bytes(5000), ".CR2", RawDecodeError,
                         r"^unsupported RAW format or codec$"),
}


def _assert_one_clean_line(exc: NnipError, path: Path, pattern: str) -> None:
    message = str(exc)
    assert "\n" not in message and message.strip() == message and message
    assert path.name not in message and str(path) not in message, message
    assert re.search(pattern, message), message


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_read_image_refuses_with_one_line(tmp_path: Path, case: str) -> None:
    make, ext, error, pattern = IMAGE_CASES[case]
    path = tmp_path / f"photo{ext}"
    path.write_bytes(make(tmp_path))
    with pytest.raises(error) as caught:
        read_image(path)
    _assert_one_clean_line(caught.value, path, pattern)


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_read_raw_refuses_with_one_line(
    tmp_path: Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    make, ext, error, pattern = RAW_CASES[case]
    path = tmp_path / f"IMG_0001{ext}"
    path.write_bytes(make(tmp_path))
    with pytest.raises(error) as caught:
        read_raw(path)
    _assert_one_clean_line(caught.value, path, pattern)
    assert capfd.readouterr().err == ""  # LibRaw's own complaints are folded into the message


@pytest.mark.parametrize("tag", [50721, 50778], ids=["ColorMatrix1", "CalibrationIlluminant1"])
def test_a_dng_whose_colour_tags_hold_text_is_read(tmp_path: Path, tag: int) -> None:
    # Found by fuzzing: the DNG's colour tags read as text made read_raw raise ValueError.
    path = tmp_path / "IMG_0001.dng"
    path.write_bytes(with_tag_type(dng_bytes(tmp_path), tag, 2))  # 2: ASCII
    frame = read_raw(path)
    assert frame.mosaic.shape == (32, 48) and frame.pattern == "RGGB"


def test_a_png_named_jpg_is_read_with_a_notice(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(png_bytes())
    image = read_image(path)
    assert image.pixels.shape == (32, 48, 3) and image.meta.format == "png"
    assert image.meta.notices == ("the file is a PNG, not a JPEG as its name says",)


def test_a_dng_without_extension_is_read(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001"
    path.write_bytes(dng_bytes(tmp_path))
    assert read_raw(path).mosaic.shape == (32, 48)


def test_non_utf8_file_names_are_read(tmp_path: Path) -> None:
    name = b"caf\xe9-\xff\xfe.png"  # Latin-1 and invalid bytes: not UTF-8
    raw_name = b"IMG_\xe9t\xe9.dng"
    with open(os.path.join(os.fsencode(tmp_path), name), "wb") as handle:
        handle.write(png_bytes())
    with open(os.path.join(os.fsencode(tmp_path), raw_name), "wb") as handle:
        handle.write(dng_bytes(tmp_path))
    assert read_image(tmp_path / os.fsdecode(name)).pixels.shape == (32, 48, 3)
    assert read_raw(tmp_path / os.fsdecode(raw_name)).mosaic.shape == (32, 48)
    bad = tmp_path / os.fsdecode(b"\xff\xfe.jpg")
    bad.write_bytes(b"")
    with pytest.raises(InputError, match=r"^empty file"):
        read_image(bad)


def _deep_path(root: Path, length: int) -> Path:
    """A directory under ``root`` whose path is ``length`` bytes long (components of 200)."""
    path = root
    while len(os.fsencode(path)) + 201 < length:
        path = path / ("d" * 200)
    rest = length - len(os.fsencode(path)) - 1
    path = path / ("e" * rest)
    path.mkdir(parents=True)
    return path


def test_a_4000_byte_path_and_a_255_byte_name_are_read(tmp_path: Path) -> None:
    directory = _deep_path(tmp_path, 4000 - 256)
    image = directory / ("n" * 251 + ".png")  # 255 bytes, the usual NAME_MAX
    image.write_bytes(png_bytes())
    assert len(os.fsencode(image)) == 4000 and len(os.fsencode(image.name)) == 255
    assert read_image(image).pixels.shape == (32, 48, 3)
    raw = directory / ("r" * 251 + ".dng")
    raw.write_bytes(dng_bytes(tmp_path))
    assert read_raw(raw).mosaic.shape == (32, 48)


@pytest.mark.parametrize("reader", [read_image, read_raw])
def test_a_name_over_255_bytes_is_an_input_error(tmp_path: Path, reader: Callable) -> None:
    path = tmp_path / ("n" * 300 + ".jpg")
    with pytest.raises(InputError) as caught:
        reader(path)
    assert "\n" not in str(caught.value) and "n" * 300 not in str(caught.value)
