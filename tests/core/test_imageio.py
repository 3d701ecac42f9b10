"""Image I/O: round trips per format / depth / channels, metadata carried, conversions on
read, and every bad input turned into the right NnipError with a one-line message."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageCms, JpegImagePlugin

from nnip.core import metadata as md
from nnip.core.errors import ImageReadError, InputError, OutputError, UnsupportedFormatError
from nnip.core.imageio import (
    FORMAT_EXTENSIONS,
    IMAGE_EXTENSIONS,
    Image,
    ImageMeta,
    read_image,
    sniff_format,
    write_image,
)

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Photo-like float32 content in [0, 1] (JPEG-friendly: smooth with mild texture)."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = 0.5 + 0.3 * np.sin(x / 5.0 + y / 7.0)
    planes = [base + 0.1 * np.cos(c + x / 3.0) for c in range(shape[2])]
    return np.clip(np.stack(planes, -1) + 0.02 * rng.random(shape), 0, 1).astype(np.float32)


def _camera_exif(orientation: int = 1) -> bytes:
    exif = PILImage.Exif()
    exif.update({md.TAG_MAKE: "Canon", md.TAG_MODEL: "EOS R5", md.TAG_ORIENTATION: orientation,
                 md.TAG_DATETIME: "2024:05:06 07:08:09"})
    exif[md.TAG_EXIF_IFD] = {md.TAG_ISO: 800, md.TAG_PIXEL_X_DIMENSION: 9999}
    exif[md.TAG_GPS_IFD] = {1: "N"}
    return exif.tobytes()


def _image(pixels: np.ndarray, alpha: np.ndarray | None = None, fmt: str = "png", bits: int = 8,
           **meta: object) -> Image:
    mode = "grey" if pixels.shape[2] == 1 else "rgb"
    return Image(pixels, alpha, ImageMeta(format=fmt, bit_depth=bits, mode=mode,
                                          has_alpha=alpha is not None, **meta))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- round trips

CASES = [
    (fmt, bits, channels, alpha)
    for fmt, depths in (("jpeg", (8,)), ("png", (8, 16)), ("tiff", (8, 16, 32)))
    for bits in depths
    for channels in (1, 3)
    for alpha in ((False,) if fmt == "jpeg" else (False, True))  # JPEG: see the alpha test
]


@pytest.mark.parametrize("fmt,bits,channels,alpha", CASES)
def test_round_trip_keeps_pixels_alpha_and_depth(tmp_path: Path, rng, fmt: str, bits: int,
                                                 channels: int, alpha: bool) -> None:
    pixels = _smooth(rng, (24, 40, channels))
    a = rng.random((24, 40)).astype(np.float32) if alpha else None
    path = tmp_path / f"out{FORMAT_EXTENSIONS[fmt]}"
    write_image(path, _image(pixels, a, fmt, bits))
    back = read_image(path)
    tolerance = {8: 0.5 / 255, 16: 0.5 / 65535, 32: 0.0}[bits] + 1e-6
    if fmt == "jpeg":
        tolerance = 10 / 255  # lossy; at q95 4:4:4 the error is a few levels
        assert np.abs(back.pixels - pixels).mean() < 1.5 / 255
    assert back.pixels.shape == pixels.shape and back.pixels.dtype == np.float32
    assert np.abs(back.pixels - pixels).max() <= tolerance
    assert (back.meta.format, back.meta.bit_depth, back.meta.has_alpha) == (fmt, bits, alpha)
    assert back.meta.mode == ("grey" if channels == 1 else "rgb")
    if alpha:
        assert np.abs(back.alpha - a).max() <= tolerance


def test_integer_output_rounds_and_clips(tmp_path: Path) -> None:
    values = np.array([[-0.5, 0.4 / 255, 0.6 / 255, 254.5 / 255 + 1e-4, 1.7, np.nan]], np.float32)
    write_image(tmp_path / "r.png", _image(values[:, :, None]))
    stored = np.asarray(PILImage.open(tmp_path / "r.png"))
    np.testing.assert_array_equal(stored, [[0, 0, 1, 255, 255, 0]])


def test_float_tiff_keeps_values_outside_0_1_and_16_bit_clips_them(tmp_path: Path) -> None:
    values = np.array([[[-0.25], [0.5], [3.0]]], np.float32)
    write_image(tmp_path / "f.tif", _image(values, bits=32))
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif").pixels, values)
    write_image(tmp_path / "i.tif", _image(values, bits=32), bits=16)
    back = read_image(tmp_path / "i.tif")
    assert back.meta.bit_depth == 16
    np.testing.assert_allclose(back.pixels[0, :, 0], [0.0, 0.5, 1.0], atol=1e-5)


@pytest.mark.parametrize("compression,code", [("deflate", 8), ("lzw", 5), ("none", 1)])
def test_tiff_compressions(tmp_path: Path, rng, compression: str, code: int) -> None:
    pixels = _smooth(rng, (16, 16, 3))
    write_image(tmp_path / "c.tif", _image(pixels, bits=16), compression=compression)
    with tifffile.TiffFile(tmp_path / "c.tif") as tif:
        assert int(tif.pages.first.compression) == code
    assert np.abs(read_image(tmp_path / "c.tif").pixels - pixels).max() < 1e-4


def test_format_comes_from_extension_then_meta_then_argument(tmp_path: Path, rng) -> None:
    image = _image(_smooth(rng, (8, 8, 3)), fmt="tiff")
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "b.out", image)
    write_image(tmp_path / "c.png", image, format="jpeg")
    assert [sniff_format(tmp_path / n) for n in ("a.png", "b.out", "c.png")] == ["png", "tiff", "jpeg"]


def test_jpeg_chroma_subsampling_follows_quality(tmp_path: Path, rng) -> None:
    image = _image(_smooth(rng, (16, 16, 3)), fmt="jpeg")
    for quality, sampling in ((95, 0), (90, 0), (80, 2)):  # 0: 4:4:4, 2: 4:2:0
        write_image(tmp_path / f"q{quality}.jpg", image, quality=quality)
        with PILImage.open(tmp_path / f"q{quality}.jpg") as picture:
            assert JpegImagePlugin.get_sampling(picture) == sampling


def test_jpeg_refuses_transparency_and_16_bits(tmp_path: Path, rng) -> None:
    pixels = _smooth(rng, (8, 8, 3))
    with pytest.raises(OutputError, match="JPEG cannot store transparency"):
        write_image(tmp_path / "a.jpg", _image(pixels, np.full((8, 8), 0.5, np.float32)))
    with pytest.raises(OutputError, match="JPEG stores 8 bits per channel, not 16"):
        write_image(tmp_path / "b.jpg", _image(pixels), bits=16)
    # An opaque alpha is simply dropped, and 16-bit sources become 8-bit JPEG.
    write_image(tmp_path / "c.jpg", _image(pixels, np.ones((8, 8), np.float32), bits=16))
    assert read_image(tmp_path / "c.jpg").meta.bit_depth == 8


def test_jpeg_with_oversized_exif_is_still_written(tmp_path: Path, rng) -> None:
    exif = PILImage.Exif()
    exif[md.TAG_MAKE] = "Canon"
    exif[md.TAG_EXIF_IFD] = {md.TAG_MAKER_NOTE: b"\x01" * 70000}
    write_image(tmp_path / "big.jpg", _image(_smooth(rng, (8, 8, 3)), exif=exif.tobytes()))
    assert md.camera_info(read_image(tmp_path / "big.jpg").meta.exif).make == "Canon"


def test_write_to_a_missing_directory_is_an_output_error(tmp_path: Path, rng) -> None:
    with pytest.raises(OutputError, match="cannot write the file"):
        write_image(tmp_path / "no" / "such" / "x.png", _image(_smooth(rng, (4, 4, 1))))


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize("fmt", ["jpeg", "png", "tiff"])
def test_metadata_is_carried(tmp_path: Path, rng, fmt: str) -> None:
    pixels = _smooth(rng, (12, 20, 3))
    image = _image(pixels, fmt=fmt, exif=_camera_exif(orientation=6), icc=SRGB_ICC, xmp=XMP,
                   orientation=6, dpi=(300.0, 240.0))
    path = tmp_path / f"m{FORMAT_EXTENSIONS[fmt]}"
    write_image(path, image, software="nnip-test 1.0")
    back = read_image(path)
    exif = md.load_exif(back.meta.exif)
    assert exif[md.TAG_ORIENTATION] == 1 and back.meta.orientation == 1
    assert exif[md.TAG_SOFTWARE] == "nnip-test 1.0"
    assert (exif[md.TAG_MAKE], exif[md.TAG_MODEL]) == ("Canon", "EOS R5")
    sub = exif.get_ifd(md.TAG_EXIF_IFD)
    assert sub[md.TAG_ISO] == 800
    assert (sub[md.TAG_PIXEL_X_DIMENSION], sub[md.TAG_PIXEL_Y_DIMENSION]) == (20, 12)
    assert exif.get_ifd(md.TAG_GPS_IFD)[1] == "N"
    assert back.meta.icc == SRGB_ICC
    assert back.meta.xmp == XMP.replace(b'Orientation="6"', b'Orientation="1"')
    assert back.meta.dpi == (300.0, 240.0)


def test_tiff_tags_written(tmp_path: Path, rng) -> None:
    image = _image(_smooth(rng, (8, 8, 3)), fmt="tiff", exif=_camera_exif(), icc=SRGB_ICC, xmp=XMP)
    write_image(tmp_path / "t.tif", image, software="nnip 0.1")
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        tags = tif.pages.first.tags
        assert tags["Software"].value == "nnip 0.1"
        assert (tags["Make"].value, tags["Model"].value) == ("Canon", "EOS R5")
        assert tags["DateTime"].value == "2024:05:06 07:08:09"
        assert int(tags["Orientation"].value) == 1
        assert bytes(tags[34675].value) == SRGB_ICC and bytes(tags[700].value).startswith(b"<x:xmpmeta")
        assert "ImageDescription" not in tags  # no tifffile JSON shape metadata
    with PILImage.open(tmp_path / "t.tif") as picture:  # another reader finds the Exif IFD
        assert picture.getexif().get_ifd(md.TAG_EXIF_IFD)[md.TAG_ISO] == 800


def test_grey_png_does_not_get_an_rgb_profile(tmp_path: Path, rng) -> None:
    write_image(tmp_path / "g.png", _image(_smooth(rng, (4, 4, 1)), icc=SRGB_ICC))
    assert read_image(tmp_path / "g.png").meta.icc is None


# --------------------------------------------------------------------------- orientation


def test_jpeg_exif_orientation_is_applied_and_remembered(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white as stored
    PILImage.fromarray(stored).save(tmp_path / "o.jpg", exif=_camera_exif(orientation=6), quality=95)
    image = read_image(tmp_path / "o.jpg")
    assert image.meta.orientation == 6 and image.pixels.shape == (40, 20, 3)
    # Turned 90 degrees clockwise: the stored left half is now on top.
    assert image.pixels[:20].mean() > 0.95 and image.pixels[20:].mean() < 0.05


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_tag_is_applied(tmp_path: Path, rng, orientation: int) -> None:
    stored = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "o.tif", stored, extratags=[(274, "H", 1, orientation, True)])
    image = read_image(tmp_path / "o.tif")
    expected = md.apply_orientation(stored, orientation).astype(np.float32) / 255
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert image.meta.orientation == orientation


def test_png_exif_orientation_is_applied(tmp_path: Path, rng) -> None:
    stored = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    PILImage.fromarray(stored).save(tmp_path / "o.png", exif=_camera_exif(orientation=8))
    image = read_image(tmp_path / "o.png")
    np.testing.assert_allclose(image.pixels * 255, np.rot90(stored), atol=1e-3)


# --------------------------------------------------------------------------- conversions


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_16bit_rgb(values: np.ndarray) -> bytes:
    """A 16-bit RGB PNG assembled by hand (filter 0), independent of any encoder."""
    height, width, _ = values.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def test_16_bit_rgb_png_keeps_all_16_bits(tmp_path: Path, rng) -> None:
    values = rng.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    (tmp_path / "d.png").write_bytes(_png_16bit_rgb(values))
    image = read_image(tmp_path / "d.png")
    assert image.meta.bit_depth == 16
    np.testing.assert_array_equal(np.rint(image.pixels * 65535).astype(np.uint16), values)


def test_16_bit_grey_png_from_pillow(tmp_path: Path, rng) -> None:
    values = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    PILImage.fromarray(values).save(tmp_path / "g.png")
    image = read_image(tmp_path / "g.png")
    assert (image.meta.bit_depth, image.meta.mode) == (16, "grey")
    np.testing.assert_array_equal(np.rint(image.pixels[:, :, 0] * 65535).astype(np.uint16), values)


def test_palette_png_becomes_rgb_with_alpha_and_a_notice(tmp_path: Path) -> None:
    picture = PILImage.new("P", (4, 2))
    picture.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    picture.putpixel((1, 0), 1)
    picture.save(tmp_path / "p.png", transparency=0)
    image = read_image(tmp_path / "p.png")
    assert image.meta.mode == "rgb" and image.meta.has_alpha
    np.testing.assert_array_equal(image.pixels[0, 1], [0, 0, 1])
    assert image.alpha[0, 0] == 0.0 and image.alpha[0, 1] == 1.0
    assert image.meta.notices == ("converted palette PNG to RGB",)


def test_cmyk_jpeg_becomes_rgb_with_a_notice(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8] = (200, 40, 10)
    PILImage.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    image = read_image(tmp_path / "c.jpg")
    assert image.meta.mode == "rgb" and image.meta.icc is None
    assert np.abs(image.pixels[2, 2] * 255 - (200, 40, 10)).max() < 4
    assert "converted CMYK to RGB" in image.meta.notices[0]


def test_cmyk_jpeg_with_an_unusable_profile_falls_back_to_the_formula(tmp_path: Path) -> None:
    PILImage.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=b"junk" * 40)
    image = read_image(tmp_path / "c.jpg")
    assert np.abs(image.pixels[4, 4] - (1, 0, 0)).max() < 0.02 and image.meta.icc is None


def test_cmyk_tiff_uses_the_plain_formula(tmp_path: Path) -> None:
    cmyk = np.array([[[0, 255, 255, 0], [0, 0, 0, 128], [255, 255, 255, 255]]], np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", cmyk, photometric="separated")
    image = read_image(tmp_path / "c.tif")
    np.testing.assert_allclose(image.pixels[0], [[1, 0, 0], [127 / 255] * 3, [0, 0, 0]], atol=1e-6)


def test_tiff_miniswhite_is_inverted(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "w.tif", np.array([[0, 255]], np.uint8), photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "w.tif").pixels[0, :, 0], [1.0, 0.0])


def test_tiff_associated_alpha_is_unpremultiplied(tmp_path: Path) -> None:
    data = np.array([[[100, 50, 0, 200], [0, 0, 0, 0]]], np.uint8)  # premultiplied colour
    tifffile.imwrite(tmp_path / "a.tif", data, photometric="rgb", extrasamples=[1])
    image = read_image(tmp_path / "a.tif")
    np.testing.assert_allclose(image.pixels[0, 0], [0.5, 0.25, 0.0], atol=1e-6)
    np.testing.assert_array_equal(image.pixels[0, 1], [0, 0, 0])
    np.testing.assert_allclose(image.alpha[0], [200 / 255, 0.0], atol=1e-6)


def test_tiff_thumbnail_pages_are_ignored(tmp_path: Path, rng) -> None:
    with tifffile.TiffWriter(tmp_path / "t.tif") as tif:
        tif.write(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        tif.write(np.zeros((4, 4, 3), np.uint8), subfiletype=1)  # reduced-resolution
    assert read_image(tmp_path / "t.tif").pixels.shape == (16, 16, 3)


def test_content_decides_the_format_and_a_mismatch_is_noticed(tmp_path: Path, rng) -> None:
    PILImage.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(tmp_path / "x.jpg", "PNG")
    image = read_image(tmp_path / "x.jpg")
    assert image.meta.format == "png"
    assert image.meta.notices == ("the file is a PNG, not a JPEG as its name says",)


def test_image_extensions_cover_every_format() -> None:
    assert set(FORMAT_EXTENSIONS.values()) <= set(IMAGE_EXTENSIONS)
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- bad inputs


def test_missing_directory_fifo_and_empty_are_input_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo.png")
    for name, message in (("missing.png", "file not found"), (".", "is a directory, not an image file"),
                          ("fifo.png", "not a regular file"), ("empty.png", "empty file (0 bytes)")):
        with pytest.raises(InputError) as caught:
            read_image(tmp_path / name)
        assert str(caught.value) == message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    path.chmod(0)
    with pytest.raises(InputError, match="permission denied"):
        read_image(path)


@pytest.mark.parametrize("name,content,message", [
    ("notes.jpg", b"hello, this is text\n", "not a JPEG (looks like text)"),
    ("page.png", b"<!DOCTYPE html><html><body>404</body></html>", "not a PNG (looks like an HTML page)"),
    ("data.bin", b"\x00\x01\x02\x03binary", "not an image file (unknown binary data); JPEG, PNG and TIFF are supported"),
    ("anim.gif", b"GIF89a\x01\x00\x01\x00", "not an image file (a GIF image); JPEG, PNG and TIFF are supported"),
    ("pic.jpg", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "not a JPEG (a WebP image)"),
    ("pic.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "not an image file (a HEIF/HEIC image); JPEG, PNG and TIFF are supported"),
    ("IMG_1.CR3", b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01", "not an image file (a camera RAW file (Canon CR3): use nnip develop)"),
    ("IMG_1.CR2", b"II*\x00\x10\x00\x00\x00CR\x02\x00", "not an image file (a camera RAW file (Canon CR2): use nnip develop)"),
])
def test_unsupported_content_says_what_it_looks_like(tmp_path: Path, name: str, content: bytes,
                                                     message: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnsupportedFormatError) as caught:
        read_image(tmp_path / name)
    assert str(caught.value) == message


def _jpeg(rng: np.random.Generator) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.95, -1])
def test_truncated_jpeg_is_an_error_not_grey_fill(tmp_path: Path, rng, keep: float) -> None:
    data = _jpeg(rng)
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    (tmp_path / "cut.jpg").write_bytes(data[:cut])
    with pytest.raises(ImageReadError, match="corrupt or truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


@pytest.mark.parametrize("cut,message", [
    (20, "truncated PNG (the IHDR chunk is cut short)"),
    (0.5, "truncated PNG (the IDAT chunk is cut short)"),
    (-12, "truncated PNG (no end marker)"),
])
def test_truncated_png_is_an_error(tmp_path: Path, rng, cut: float, message: str) -> None:
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    end = int(len(data) * cut) if 0 < cut < 1 else (cut if cut > 0 else len(data) + int(cut))
    (tmp_path / "cut.png").write_bytes(data[:end])
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "cut.png")
    assert str(caught.value) == message


def test_corrupt_png_data_is_an_error(tmp_path: Path, rng) -> None:
    buffer = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"corrupt PNG \(checksum error in the IDAT chunk\)"):
        read_image(tmp_path / "bad.png")


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_tiff_is_an_error(tmp_path: Path, rng, compression: str | None) -> None:
    tifffile.imwrite(tmp_path / "t.tif", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8),
                     compression=compression)
    data = (tmp_path / "t.tif").read_bytes()
    for cut, pattern in ((len(data) - 1, "truncated TIFF"), (len(data) // 2, "truncated TIFF"),
                         (100, "corrupt or truncated TIFF"), (6, "corrupt or truncated TIFF")):
        (tmp_path / "cut.tif").write_bytes(data[:cut])
        with pytest.raises(ImageReadError, match=pattern):
            read_image(tmp_path / "cut.tif")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _png_chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(UnsupportedFormatError,
                       match=r"image too large: 50000x50000 = 2500 megapixels \(the limit is 1000\)"):
        read_image(tmp_path / "bomb.png")
    PILImage.new("RGB", (20, 10)).save(tmp_path / "small.jpg")
    with pytest.raises(UnsupportedFormatError, match="image too large"):
        read_image(tmp_path / "small.jpg", max_pixels=199)
    assert read_image(tmp_path / "small.jpg", max_pixels=200).pixels.shape == (10, 20, 3)


def test_multi_page_tiff_and_animated_png_are_refused(tmp_path: Path, rng) -> None:
    frames = rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "pages.tif", frames)
    with pytest.raises(UnsupportedFormatError, match=r"multi-page TIFF \(3 pages\) is not supported"):
        read_image(tmp_path / "pages.tif")
    first, *rest = (PILImage.fromarray(f) for f in frames)
    first.save(tmp_path / "anim.png", save_all=True, append_images=rest)
    with pytest.raises(UnsupportedFormatError, match=r"animated PNG \(3 frames\) is not supported"):
        read_image(tmp_path / "anim.png")


def test_tiff_raw_containers_are_refused(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "fake.dng", np.zeros((8, 8), np.uint16),
                     extratags=[(50706, "B", 4, b"\x01\x04\x00\x00", True)])
    with pytest.raises(UnsupportedFormatError, match=r"camera RAW file \(DNG\): use nnip develop"):
        read_image(tmp_path / "fake.dng")


RAW_DIR = SHARED / "data" / "raw"


@pytest.mark.skipif(not RAW_DIR.is_dir(), reason="shared RAW samples (../shared/data/raw) absent")
def test_real_raw_files_are_refused_with_a_clear_message() -> None:
    names = ["real/Canon_EOS_D30.CRW", "truncated/exiftool__CanonRaw.cr2", "truncated/nomexif__canon-r6.cr3",
             "truncated/exiftool__Nikon.nef", "truncated/filetype__Leica-M10.dng",
             "truncated/filetype__sony-zv-e10.arw", "unsupported/Hero8.GPR"]
    for name in names:
        if not (RAW_DIR / name).is_file():
            continue
        with pytest.raises(UnsupportedFormatError, match="camera RAW file"):
            read_image(RAW_DIR / name)


@pytest.mark.parametrize(("fmt", "bits", "alpha"), [("png", 16, True), ("tiff", 8, True), ("tiff", 32, False), ("jpeg", 8, False)])
def test_write_image_bands_writes_what_write_image_writes(tmp_path: Path, fmt: str, bits: int, alpha: bool) -> None:
    from nnip.core.imageio import ImageBand, write_image_bands

    rng = np.random.default_rng(3)
    pixels = rng.random((37, 23, 3), dtype=np.float32) * 1.2 - 0.1  # some out of range
    alpha_plane = rng.random((37, 23), dtype=np.float32) if alpha else None
    image = Image(pixels=pixels, alpha=alpha_plane, meta=ImageMeta(format="png", bit_depth=8, mode="rgb"))
    whole, banded = tmp_path / f"whole.{fmt}", tmp_path / f"banded.{fmt}"
    write_image(whole, image, format=fmt, bits=bits)
    bands = [ImageBand(r, pixels[r : r + 10], None if alpha_plane is None else alpha_plane[r : r + 10])
             for r in range(0, 37, 10)]
    write_image_bands(banded, bands, meta=image.meta, shape=pixels.shape, alpha=alpha, format=fmt, bits=bits)
    a, b = read_image(whole), read_image(banded)
    assert np.array_equal(a.pixels, b.pixels)
    assert (a.alpha is None) == (b.alpha is None) and (a.alpha is None or np.array_equal(a.alpha, b.alpha))


def test_write_image_bands_refuses_transparency_in_jpeg(tmp_path: Path) -> None:
    from nnip.core.imageio import ImageBand, write_image_bands

    pixels = np.zeros((4, 4, 3), np.float32)
    band = ImageBand(0, pixels, np.full((4, 4), 0.5, np.float32))
    with pytest.raises(OutputError, match="JPEG cannot store transparency"):
        write_image_bands(tmp_path / "x.jpg", [band], meta=ImageMeta(format="png", bit_depth=8, mode="rgb"),
                          shape=(4, 4, 3), alpha=True)
