"""process_file: every output format and depth, ICC, EXIF, orientation, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from dev_scenes import needs_shared, patch_means, write_chart_dng
from nnip.core import metadata
from nnip.core.errors import InputError, RawDecodeError
from nnip.core.imageio import read_image
from nnip.develop import DevelopOptions, process_file
from nnip.develop.icc import icc_profile
from nnip.develop.pipeline import develop
from nnip.raw.frame import read_raw

CASES = [("tiff", 8), ("tiff", 16), ("tiff", 32), ("png", 8), ("png", 16), ("jpeg", 8)]
EXTENSION = {"tiff": "tif", "png": "png", "jpeg": "jpg"}


@pytest.fixture(scope="module")
def chart_dng(tmp_path_factory) -> Path:
    return write_chart_dng(tmp_path_factory.mktemp("src") / "chart.dng", "GRBG")


@pytest.mark.parametrize("fmt, bits", CASES)
def test_every_format_and_depth(tmp_path: Path, chart_dng: Path, fmt: str, bits: int) -> None:
    out = tmp_path / f"out.{EXTENSION[fmt]}"
    options = DevelopOptions(format=fmt, bits=bits, demosaic="bilinear", colorspace="display-p3")
    record = process_file(chart_dng, out, options)
    image = read_image(out)
    assert image.meta.format == fmt and image.meta.bit_depth == bits
    assert image.pixels.shape == (96, 144, 3)
    assert image.meta.icc == icc_profile("display-p3")
    camera = metadata.camera_info(image.meta.exif)
    assert (camera.make, camera.model, camera.lens_model) == ("Testmake", "Chart 1", "Test 50mm")
    assert camera.iso == 200 and camera.f_number == pytest.approx(5.6)
    assert camera.exposure_time == pytest.approx(1 / 125)
    assert camera.focal_length == pytest.approx(50.0)
    expected, _ = develop(read_raw(chart_dng), options)
    tolerance = {8: 1.5 / 255, 16: 1e-4, 32: 1e-6}[bits] + (0.01 if fmt == "jpeg" else 0.0)
    np.testing.assert_allclose(patch_means(image.pixels), patch_means(np.clip(expected, 0, 1)),
                               atol=tolerance)
    assert record["width"] == 144 and record["height"] == 96
    assert (record["format"], record["bits"], record["colorspace"]) == (fmt, bits, "display-p3")
    assert record["camera"] == "Testmake Chart 1"
    json.dumps(record)


def test_orientation_is_applied_to_pixels_and_tag_is_1(tmp_path: Path) -> None:
    src = write_chart_dng(tmp_path / "turned.dng", "RGGB", orientation=6)  # 90 deg clockwise
    out = tmp_path / "turned.png"
    record = process_file(src, out, DevelopOptions(format="png", demosaic="bilinear"))
    with PILImage.open(out) as picture:
        assert picture.size == (96, 144)  # width, height: turned
        assert picture.getexif().get(metadata.TAG_ORIENTATION) == 1
    upright = read_image(out).pixels
    stored, _ = develop(read_raw(src), DevelopOptions(demosaic="bilinear"))
    # The sensor's top-left patch (dark skin) is now at the top right.
    np.testing.assert_allclose(upright[5:19, -19:-5].mean(axis=(0, 1)),
                               np.clip(stored[5:19, 5:19], 0, 1).mean(axis=(0, 1)), atol=2 / 255)
    assert (record["width"], record["height"]) == (96, 144)


def test_cli_style_settings(tmp_path: Path, chart_dng: Path) -> None:
    """The CLI passes its settings as keywords (bits None, wb as kelvin int)."""
    out = tmp_path / "cli.png"
    record = process_file(
        chart_dng, out, engine=None, registry=None, format="png", bits=None,
        colorspace="prophoto", demosaic="ahd", wb=5500, exposure=0.5, denoise="off", lens="profile",
        tile=None, verbose=True)
    image = read_image(out)
    assert image.meta.bit_depth == 16 and image.meta.icc == icc_profile("prophoto")
    assert record["white_balance"]["mode"] == "5500K"
    assert [n for n in record["notices"] if n.startswith("lens")], record["notices"]
    assert len(record["pipeline"]) == 11 and "demosaic" in record["timings"]


def test_unknown_setting_is_a_bug(tmp_path: Path, chart_dng: Path) -> None:
    with pytest.raises(TypeError, match="sharpen"):
        process_file(chart_dng, tmp_path / "x.tif", sharpen=True)


def test_bad_inputs_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.CR3"
    empty.write_bytes(b"")
    text = tmp_path / "notes.NEF"
    text.write_text("not a raw file, just notes\n")
    with pytest.raises(InputError, match="empty file"):
        process_file(empty, tmp_path / "a.tif", DevelopOptions(demosaic="bilinear"))
    with pytest.raises(RawDecodeError, match="looks like text"):
        process_file(text, tmp_path / "b.tif", DevelopOptions(demosaic="bilinear"))
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "b.tif").exists()


def test_shared_truncated_file_through_process_file(tmp_path: Path) -> None:
    src = needs_shared("truncated", "exiftool__CanonRaw.cr3")
    with pytest.raises(RawDecodeError, match="truncated or corrupt"):
        process_file(src, tmp_path / "x.tif", DevelopOptions(demosaic="bilinear"))


def test_real_kodak_dc50_to_jpeg(tmp_path: Path) -> None:
    src = needs_shared("real", "RAW_KODAK_DC50.KDC")
    out = tmp_path / "kodak.jpg"
    record = process_file(src, out, DevelopOptions(format="jpeg", demosaic="ahd"))
    image = read_image(out)
    assert image.pixels.shape == (512, 768, 3)
    assert 0.1 < float(image.pixels.mean()) < 0.9
    assert record["camera"] == "Kodak DC50"
    assert "no colour matrix known for this camera" in record["notices"][0]
    assert metadata.camera_info(image.meta.exif).model == "DC50"
