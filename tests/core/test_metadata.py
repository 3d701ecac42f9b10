"""EXIF / XMP / orientation helpers, checked against Pillow's own reading of the results."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

from nnip.core import metadata as md


def _exif(orientation: int = 6, *, width: int | None = None) -> bytes:
    """Camera-like EXIF: IFD0 fields, an Exif IFD with exposure data, a GPS IFD."""
    exif = PILImage.Exif()
    exif[md.TAG_MAKE] = "Canon"
    exif[md.TAG_MODEL] = "EOS R5"
    exif[md.TAG_ORIENTATION] = orientation
    exif[md.TAG_DATETIME] = "2024:05:06 07:08:09"
    if width is not None:
        exif[md.TAG_IMAGE_WIDTH] = width
    sub = exif.get_ifd(md.TAG_EXIF_IFD)
    sub.update({md.TAG_ISO: 800, md.TAG_EXPOSURE_TIME: 0.004, md.TAG_F_NUMBER: 2.8,
                md.TAG_FOCAL_LENGTH: 50.0, md.TAG_DATETIME_ORIGINAL: "2024:05:06 07:08:09",
                md.TAG_LENS_MODEL: "RF50mm F1.8 STM", md.TAG_PIXEL_X_DIMENSION: 8192})
    exif[md.TAG_EXIF_IFD] = sub
    exif[md.TAG_GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.5)}
    return exif.tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("channels", [None, 3])
def test_apply_orientation_matches_pillow_exif_transpose(orientation: int, channels: int | None) -> None:
    rng = np.random.default_rng(orientation)
    shape = (5, 7) if channels is None else (5, 7, channels)
    stored = rng.integers(0, 256, shape, dtype=np.uint8)
    picture = PILImage.fromarray(stored)
    picture.info["exif"] = _exif(orientation)
    expected = np.asarray(ImageOps.exif_transpose(picture))
    result = md.apply_orientation(stored, orientation)
    np.testing.assert_array_equal(result, expected)
    assert result.flags.c_contiguous
    assert md.orientation_swaps_axes(orientation) == (result.shape[:2] == (7, 5))


def test_read_orientation_defaults_to_1() -> None:
    assert md.read_orientation(_exif(8)) == 8
    assert md.read_orientation(None) == 1
    assert md.read_orientation(b"Exif\x00\x00garbage") == 1
    bad = PILImage.Exif()
    bad[md.TAG_ORIENTATION] = 9
    assert md.read_orientation(bad.tobytes()) == 1
    np.testing.assert_array_equal(md.apply_orientation(np.eye(3), 42), np.eye(3))


def test_update_exif_sets_size_orientation_software_and_keeps_camera_fields() -> None:
    updated = md.update_exif(_exif(6, width=8192), width=640, height=480, software="nnip 9")
    parsed = md.load_exif(updated)
    assert parsed[md.TAG_ORIENTATION] == 1
    assert parsed[md.TAG_SOFTWARE] == "nnip 9"
    assert parsed[md.TAG_IMAGE_WIDTH] == 640 and md.TAG_IMAGE_LENGTH not in parsed
    sub = parsed.get_ifd(md.TAG_EXIF_IFD)
    assert (sub[md.TAG_PIXEL_X_DIMENSION], sub[md.TAG_PIXEL_Y_DIMENSION]) == (640, 480)
    assert (parsed[md.TAG_MAKE], parsed[md.TAG_MODEL], sub[md.TAG_ISO]) == ("Canon", "EOS R5", 800)
    assert parsed.get_ifd(md.TAG_GPS_IFD)[1] == "N"


def test_update_exif_without_input_makes_a_minimal_block() -> None:
    parsed = md.load_exif(md.update_exif(None, width=3, height=2, software="nnip"))
    assert parsed[md.TAG_SOFTWARE] == "nnip" and parsed[md.TAG_ORIENTATION] == 1
    assert parsed.get_ifd(md.TAG_EXIF_IFD)[md.TAG_PIXEL_Y_DIMENSION] == 2


def test_update_xmp_rewrites_orientation_and_size_in_both_forms() -> None:
    xmp = (b'<rdf:Description tiff:Orientation="6" exif:PixelXDimension=\'4000\' '
           b'dc:title="6"><tiff:ImageLength> 3000 </tiff:ImageLength></rdf:Description>')
    out = md.update_xmp(xmp, width=200, height=100)
    assert out == (b'<rdf:Description tiff:Orientation="1" exif:PixelXDimension=\'200\' '
                   b'dc:title="6"><tiff:ImageLength>100</tiff:ImageLength></rdf:Description>')
    assert md.update_xmp(None, width=1, height=1) is None


def test_camera_info_reads_the_usual_fields() -> None:
    info = md.camera_info(_exif())
    assert info == md.CameraInfo(
        make="Canon", model="EOS R5", lens_model="RF50mm F1.8 STM", body_serial=None, iso=800,
        exposure_time=pytest.approx(0.004), f_number=pytest.approx(2.8),
        focal_length=pytest.approx(50.0), datetime_original="2024:05:06 07:08:09",
    )
    assert md.camera_info(None) == md.CameraInfo()


def test_camera_info_from_a_real_jpeg_exif() -> None:
    buffer = io.BytesIO()
    PILImage.new("RGB", (4, 4)).save(buffer, "JPEG", exif=_exif())
    buffer.seek(0)
    assert md.camera_info(PILImage.open(buffer).info["exif"]).iso == 800


def test_tiff_sub_ifds_are_appended_and_readable(tmp_path: Path) -> None:
    path = tmp_path / "exif.tif"
    exif = _exif()
    extratags, datetime = md.tiff_ifd0_tags(exif)
    assert datetime == "2024:05:06 07:08:09"
    tifffile.imwrite(path, np.zeros((4, 6, 3), np.uint8), extratags=extratags, metadata=None)
    md.append_tiff_sub_ifds(path, exif)
    with PILImage.open(path) as picture:
        read = picture.getexif()
        assert (read[md.TAG_MAKE], read[md.TAG_MODEL]) == ("Canon", "EOS R5")
        assert read.get_ifd(md.TAG_EXIF_IFD)[md.TAG_ISO] == 800
        assert read.get_ifd(md.TAG_GPS_IFD)[1] == "N"
    with tifffile.TiffFile(path) as tif:  # tifffile agrees and the IFD0 entries stay sorted
        tags = tif.pages.first.tags
        assert tags["ExifTag"].value["ISOSpeedRatings"] == 800
        codes = [tag.code for tag in tags]
        assert codes == sorted(codes)


def test_exif_from_tiff_reads_what_pillow_wrote(tmp_path: Path) -> None:
    path = tmp_path / "pillow.tif"
    PILImage.new("RGB", (4, 4)).save(path, exif=_exif())
    with tifffile.TiffFile(path) as tif:
        offset, order = tif.pages.first.offset, tif.byteorder
    with open(path, "rb") as handle:
        exif = md.exif_from_tiff(handle, offset, order)
    info = md.camera_info(exif)
    assert (info.make, info.iso, info.lens_model) == ("Canon", 800, "RF50mm F1.8 STM")
    # Image-structure tags of IFD0 are not EXIF.
    assert 273 not in md.load_exif(exif) and 258 not in md.load_exif(exif)


def test_exif_from_tiff_without_camera_tags_is_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8), metadata=None, software="")
    with tifffile.TiffFile(path) as tif:
        offset, order = tif.pages.first.offset, tif.byteorder
    with open(path, "rb") as handle:
        assert md.exif_from_tiff(handle, offset, order) is None


def test_fit_exif_drops_a_huge_maker_note_first() -> None:
    exif = PILImage.Exif()
    exif[md.TAG_MAKE] = "Canon"
    exif[md.TAG_EXIF_IFD] = {md.TAG_ISO: 100, md.TAG_MAKER_NOTE: b"\x00" * 70000}
    data = exif.tobytes()
    fitted = md.fit_exif(data, 65533)
    assert fitted is not None and len(fitted) < 1000
    parsed = md.load_exif(fitted)
    assert parsed[md.TAG_MAKE] == "Canon" and md.TAG_MAKER_NOTE not in parsed.get_ifd(md.TAG_EXIF_IFD)
    assert md.fit_exif(data, len(data)) == data
    assert md.fit_exif(fitted, 10) is None
