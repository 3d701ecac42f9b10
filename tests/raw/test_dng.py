"""DNG writer: everything written must come back through rawpy (LibRaw) and tifffile."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from nnip.core.errors import OutputError
from nnip.raw.dng import write_dng
from nnip.simulate.color import (
    XYZ_FROM_LINEAR_SRGB,
    camera_matrices,
    camera_neutral,
    linear_to_srgb,
    scene_to_camera,
    srgb_to_linear,
)
from nnip.simulate.sensor import PATTERNS, mosaic_bayer, quantize

MATRIX = camera_matrices()["Nikon D850"]
NEUTRAL = camera_neutral(MATRIX)
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)

# sRGB (8-bit) values of the 24 ColorChecker patches, the usual published approximation
CHART = np.array([
    [115, 82, 68], [194, 150, 130], [98, 122, 157], [87, 108, 67], [133, 128, 177], [103, 189, 170],
    [214, 126, 44], [80, 91, 166], [193, 90, 99], [94, 60, 108], [157, 188, 64], [224, 163, 46],
    [56, 61, 150], [70, 148, 73], [175, 54, 60], [231, 199, 31], [187, 86, 149], [8, 133, 161],
    [243, 243, 242], [200, 200, 200], [160, 160, 160], [122, 122, 121], [85, 85, 85], [52, 52, 52],
]) / 255.0


def _write(path: Path, mosaic: np.ndarray, pattern: str = "RGGB", **overrides) -> Path:
    kwargs = dict(
        pattern=pattern, black_level=512, white_level=16383, color_matrix1=MATRIX, as_shot_neutral=NEUTRAL,
        noise_profile=(2.5e-4, 3e-7), make="nnip", model="test body", iso=1600, fnumber=4.0,
        focal_length=35.0, exposure_time=1 / 250, lens_model="nnip 35mm F4 test", datetime=WHEN,
    )
    kwargs.update(overrides)
    write_dng(path, mosaic, **kwargs)
    return path


def _pattern_of(raw: rawpy.RawPy) -> str:
    desc = raw.color_desc.decode()
    return "".join(desc[i] for i in raw.raw_pattern.ravel())


@pytest.mark.parametrize("pattern", PATTERNS)
def test_rawpy_reads_back_pixels_pattern_levels_and_wb(tmp_path, pattern):
    mosaic = np.random.default_rng(0).integers(400, 16000, size=(32, 48)).astype(np.uint16)
    path = _write(tmp_path / "a.dng", mosaic, pattern)
    with rawpy.imread(str(path)) as raw:
        assert _pattern_of(raw) == pattern
        np.testing.assert_array_equal(raw.raw_image_visible, mosaic)
        assert list(raw.black_level_per_channel) == [512] * 4
        assert raw.white_level == 16383
        wb = np.array(raw.camera_whitebalance[:3])
        np.testing.assert_allclose(wb / wb[1], 1.0 / NEUTRAL, rtol=1e-5)


def test_rawpy_derives_the_colour_matrix_from_color_matrix1(tmp_path):
    path = _write(tmp_path / "m.dng", np.full((32, 32), 2000, np.uint16))
    # LibRaw: cam_rgb = ColorMatrix1 @ xyz_from_srgb, rows normalised to sum 1, then inverted
    cam_rgb = MATRIX @ XYZ_FROM_LINEAR_SRGB
    cam_rgb /= cam_rgb.sum(axis=1, keepdims=True)
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_allclose(raw.color_matrix[:, :3], np.linalg.inv(cam_rgb), atol=1e-4)


def test_rawpy_reads_back_the_exif_fields(tmp_path):
    path = _write(tmp_path / "e.dng", np.full((32, 32), 2000, np.uint16))
    with rawpy.imread(str(path)) as raw:
        other = raw.other
        assert other.iso_speed == 1600
        assert other.aperture == pytest.approx(4.0)
        assert other.focal_length == pytest.approx(35.0)
        assert other.shutter_speed == pytest.approx(1 / 250)
        assert other.timestamp == WHEN
        assert raw.lens.model == "nnip 35mm F4 test"


def test_tags_for_other_readers(tmp_path):
    path = _write(tmp_path / "t.dng", np.full((32, 32), 2000, np.uint16), "GBRG",
                  noise_profile=((1e-4, 1e-7), (2e-4, 2e-7), (3e-4, 3e-7)), orientation=6)
    with tifffile.TiffFile(path) as tif:
        tags = {tag.code: tag.value for tag in tif.pages[0].tags}
    assert tags[50706] == b"\x01\x04\x00\x00"  # DNGVersion 1.4
    assert tags[262] == 32803  # CFA
    assert tags[33422] == bytes([1, 2, 0, 1])  # GBRG as colour indices
    np.testing.assert_allclose(tags[51041], [1e-4, 1e-7, 2e-4, 2e-7, 3e-4, 3e-7])
    matrix = np.array(tags[50721], dtype=np.float64)
    np.testing.assert_allclose((matrix[0::2] / matrix[1::2]).reshape(3, 3), MATRIX, atol=1e-6)
    assert tags[50778] == 21 and tags[274] == 6
    assert tags[34665]["ISOSpeedRatings"] == 1600  # a real Exif IFD
    assert tags[34665]["LensModel"] == "nnip 35mm F4 test"
    assert tags[50708] == "nnip test body"


def test_pixel_pitch_comes_back_as_the_focal_plane_resolution(tmp_path):
    from nnip.develop.optics import optics_for_frame
    from nnip.raw.frame import read_raw

    mosaic = np.random.default_rng(0).integers(400, 16000, size=(32, 48)).astype(np.uint16)
    frame = read_raw(_write(tmp_path / "p.dng", mosaic, pixel_pitch_um=4.0))
    assert frame.focal_plane_x_resolution == pytest.approx(2500.0)  # pixels per cm
    assert frame.focal_plane_resolution_unit == 3
    optics = optics_for_frame(frame)
    assert optics.pixel_pitch_um == pytest.approx(4.0)
    assert optics.pitch_source == "focal-plane resolution"
    assert read_raw(_write(tmp_path / "q.dng", mosaic)).focal_plane_x_resolution is None


def test_per_position_black_levels(tmp_path):
    mosaic = np.full((32, 32), 3000, np.uint16)
    path = _write(tmp_path / "b.dng", mosaic, "GRBG", black_level=(500, 510, 520, 530))
    with rawpy.imread(str(path)) as raw:
        # rawpy lists them by colour index R, G, B, G2; GRBG's cell is G R / B G
        assert list(raw.black_level_per_channel) == [510, 500, 520, 530]


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_postprocess_of_a_colour_chart_gives_its_srgb_colours(tmp_path, pattern):
    patch = 16
    chart = np.zeros((4 * patch, 6 * patch, 3), np.float32)
    for i, colour in enumerate(CHART):
        r, c = divmod(i, 6)
        chart[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = colour
    exposure = 0.8  # below clipping in every camera channel
    camera = scene_to_camera(srgb_to_linear(chart), MATRIX) * exposure
    raw_values = quantize(mosaic_bayer(camera, pattern), 14, 512, 16383)
    path = _write(tmp_path / "chart.dng", raw_values, pattern)
    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(
            use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92), output_bps=16, user_flip=0,
            adjust_maximum_thr=0.0, output_color=rawpy.ColorSpace.sRGB,
        ).astype(np.float64) * (255.0 / 65535.0)
    expected = linear_to_srgb(srgb_to_linear(CHART) * exposure) * 255.0
    for i in range(24):
        r, c = divmod(i, 6)
        inner = out[r * patch + 4 : (r + 1) * patch - 4, c * patch + 4 : (c + 1) * patch - 4]
        got = inner.reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(got, expected[i], atol=2.0, err_msg=f"patch {i}")


def test_invalid_inputs_are_refused(tmp_path):
    good = np.full((32, 32), 1000, np.uint16)
    with pytest.raises(ValueError, match="uint16"):
        _write(tmp_path / "x.dng", good.astype(np.float32))
    with pytest.raises(ValueError, match="RGGB, BGGR, GRBG, GBRG"):
        _write(tmp_path / "x.dng", good, "RGBX")
    with pytest.raises(ValueError, match="black level"):
        _write(tmp_path / "x.dng", good, black_level=20000)
    with pytest.raises(ValueError, match="as_shot_neutral"):
        _write(tmp_path / "x.dng", good, as_shot_neutral=(0.5, 0.0, 1.0))
    with pytest.raises(ValueError, match="noise_profile"):
        _write(tmp_path / "x.dng", good, noise_profile=(1e-4,))
    with pytest.raises(OutputError, match="cannot write DNG"):
        _write(tmp_path / "missing-dir" / "x.dng", good)
