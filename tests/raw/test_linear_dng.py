"""Linear DNG writer: what it writes must come back through rawpy (LibRaw), tifffile and
our own RAW reader, and render to the right colours in LibRaw's own pipeline."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile

from nnip.core.errors import OutputError
from nnip.raw.dng import write_linear_dng
from nnip.raw.frame import read_raw
from nnip.simulate.color import camera_matrices, camera_neutral, linear_to_srgb, scene_to_camera
from nnip.simulate.color import srgb_to_linear

MATRIX = camera_matrices()["Nikon D850"]
NEUTRAL = camera_neutral(MATRIX)
WHEN = dt.datetime(2024, 5, 6, 7, 8, 9)
# An illuminant-A matrix and a forward matrix: values only need to come back as written.
MATRIX_A = MATRIX * np.array([[1.2], [1.0], [0.7]])
FORWARD = np.array([[0.7, 0.2, 0.07], [0.25, 0.8, -0.05], [0.02, -0.1, 0.9]])

# sRGB (8-bit) values of the 24 ColorChecker patches, the usual published approximation
CHART = np.array([
    [115, 82, 68], [194, 150, 130], [98, 122, 157], [87, 108, 67], [133, 128, 177], [103, 189, 170],
    [214, 126, 44], [80, 91, 166], [193, 90, 99], [94, 60, 108], [157, 188, 64], [224, 163, 46],
    [56, 61, 150], [70, 148, 73], [175, 54, 60], [231, 199, 31], [187, 86, 149], [8, 133, 161],
    [243, 243, 242], [200, 200, 200], [160, 160, 160], [122, 122, 121], [85, 85, 85], [52, 52, 52],
]) / 255.0


def _write(path: Path, rgb: np.ndarray, **overrides) -> Path:
    kwargs = dict(
        color_matrix1=MATRIX, as_shot_neutral=NEUTRAL, noise_profile=(2.5e-4, 3e-7),
        make="nnip", model="test body", iso=1600, fnumber=4.0, focal_length=35.0,
        exposure_time=1 / 250, lens_model="nnip 35mm F4 test", datetime=WHEN,
    )
    kwargs.update(overrides)
    write_linear_dng(path, rgb, **kwargs)
    return path


def _random_rgb(height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, (height, width, 3)).astype(np.uint16)


def _tags(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return {tag.code: tag.value for tag in tif.pages[0].tags}


def _ratios(flat) -> np.ndarray:
    values = np.asarray(flat, dtype=np.float64)
    return values[0::2] / values[1::2]


def test_rawpy_reads_back_three_samples_levels_and_wb(tmp_path):
    rgb = _random_rgb()
    path = _write(tmp_path / "a.dng", rgb)
    with rawpy.imread(str(path)) as raw:
        assert raw.raw_type == rawpy.RawType.Stack  # no mosaic: nothing to demosaic
        assert raw.raw_pattern is None and raw.num_colors == 3
        assert raw.color_desc == b"RGBG"
        # LibRaw keeps 4 planes for RGB-type images; the fourth is unused (zero)
        np.testing.assert_array_equal(raw.raw_image_visible[..., :3], rgb)
        assert not raw.raw_image_visible[..., 3].any()
        assert list(raw.black_level_per_channel) == [0, 0, 0, 0]
        assert raw.white_level == 65535
        wb = np.array(raw.camera_whitebalance[:3])
        np.testing.assert_allclose(wb / wb[1], 1.0 / NEUTRAL, rtol=1e-5)


def test_rawpy_reads_back_the_exif_fields(tmp_path):
    path = _write(tmp_path / "e.dng", _random_rgb(), orientation=8)
    with rawpy.imread(str(path)) as raw:
        other = raw.other
        assert other.iso_speed == 1600
        assert other.aperture == pytest.approx(4.0)
        assert other.focal_length == pytest.approx(35.0)
        assert other.shutter_speed == pytest.approx(1 / 250)
        assert other.timestamp == WHEN
        assert raw.lens.model == "nnip 35mm F4 test"
        assert raw.sizes.flip == 5  # dcraw's code for EXIF orientation 8


def test_tags_for_other_raw_developers(tmp_path):
    path = _write(tmp_path / "t.dng", _random_rgb(), orientation=6, white_level=60000,
                  color_matrix2=MATRIX_A, calibration_illuminant2=17, forward_matrix1=FORWARD,
                  baseline_exposure=-0.5, noise_profile=((1e-4, 1e-7), (2e-4, 2e-7), (3e-4, 3e-7)),
                  original_raw_file_name="IMG_0001.CR3", software="nnip 9.9")
    tags = _tags(path)
    assert tags[262] == 34892  # LinearRaw
    assert tags[277] == 3 and tags[258] == (16, 16, 16) and tags[284] == 1 and tags[259] == 1
    assert tags[50706] == b"\x01\x04\x00\x00"  # DNGVersion 1.4
    assert 33421 not in tags and 33422 not in tags  # no CFA tags
    assert tags[50713] == (1, 1) and tags[50714] == (0, 0, 0)
    assert tags[50717] == (60000, 60000, 60000)
    np.testing.assert_allclose(_ratios(tags[50721]).reshape(3, 3), MATRIX, atol=1e-6)
    np.testing.assert_allclose(_ratios(tags[50722]).reshape(3, 3), MATRIX_A, atol=1e-6)
    np.testing.assert_allclose(_ratios(tags[50964]).reshape(3, 3), FORWARD, atol=1e-6)
    assert 50965 not in tags
    assert (tags[50778], tags[50779]) == (21, 17)
    np.testing.assert_allclose(_ratios(tags[50728]), NEUTRAL, rtol=1e-5)
    assert _ratios(tags[50730])[0] == -0.5
    np.testing.assert_allclose(tags[51041], [1e-4, 1e-7, 2e-4, 2e-7, 3e-4, 3e-7])
    assert tags[274] == 6 and tags[305] == "nnip 9.9" and tags[50827] == "IMG_0001.CR3"
    assert (tags[271], tags[272], tags[50708]) == ("nnip", "test body", "nnip test body")
    exif = tags[34665]  # a real Exif IFD
    assert exif["ISOSpeedRatings"] == 1600 and exif["LensModel"] == "nnip 35mm F4 test"
    assert exif["DateTimeOriginal"] == "2024:05:06 07:08:09"


def test_unknown_capture_time_is_not_invented(tmp_path):
    path = _write(tmp_path / "n.dng", _random_rgb(), datetime=None)
    exif = _tags(path)[34665]
    assert "DateTimeOriginal" not in exif and exif["ExifVersion"] == "0231"


def test_non_ascii_names_are_replaced_not_refused(tmp_path):
    path = _write(tmp_path / "u.dng", _random_rgb(), make="Läica", lens_model="Summilux 50 ƒ/1.4")
    tags = _tags(path)
    assert tags[271] == "L?ica" and tags[34665]["LensModel"] == "Summilux 50 ?/1.4"


def test_our_raw_reader_gets_data_and_metadata_back(tmp_path):
    rgb = _random_rgb()
    path = _write(tmp_path / "r.dng", rgb, orientation=3)
    frame = read_raw(path)
    assert not frame.is_bayer and frame.pattern == ""
    np.testing.assert_array_equal(frame.mosaic[..., :3], rgb)
    np.testing.assert_allclose(frame.cam_from_xyz, MATRIX, atol=1e-6)
    assert frame.noise_profile == pytest.approx((2.5e-4, 3e-7))
    assert (frame.make, frame.model, frame.lens) == ("nnip", "test body", "nnip 35mm F4 test")
    assert frame.iso == 1600 and frame.orientation == 3 and frame.capture_time == WHEN


def test_libraw_renders_a_linear_chart_to_its_srgb_colours(tmp_path):
    patch = 16
    chart = np.zeros((4 * patch, 6 * patch, 3), np.float32)
    for i, colour in enumerate(CHART):
        r, c = divmod(i, 6)
        chart[r * patch : (r + 1) * patch, c * patch : (c + 1) * patch] = colour
    exposure = 0.8  # below clipping in every camera channel
    camera = scene_to_camera(srgb_to_linear(chart), MATRIX) * exposure
    rgb = np.round(np.clip(camera, 0.0, 1.0) * 65535).astype(np.uint16)
    path = _write(tmp_path / "chart.dng", rgb)
    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(
            use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92), output_bps=16, user_flip=0,
            adjust_maximum_thr=0.0, output_color=rawpy.ColorSpace.sRGB,
        ).astype(np.float64) * (255.0 / 65535.0)
    expected = linear_to_srgb(srgb_to_linear(CHART) * exposure) * 255.0
    got = out.reshape(4, patch, 6, patch, 3)[:, 4:-4, :, 4:-4].mean(axis=(1, 3)).reshape(24, 3)
    np.testing.assert_allclose(got, expected, atol=1.0)


def test_invalid_inputs_are_refused(tmp_path):
    good = _random_rgb()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint16"):
        _write(tmp_path / "x.dng", good.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint16"):
        _write(tmp_path / "x.dng", good[..., 0])
    with pytest.raises(ValueError, match="white level"):
        _write(tmp_path / "x.dng", good, white_level=0)
    with pytest.raises(ValueError, match="color_matrix1 must be a finite 3x3"):
        _write(tmp_path / "x.dng", good, color_matrix1=np.eye(4))
    with pytest.raises(ValueError, match="go together"):
        _write(tmp_path / "x.dng", good, color_matrix2=MATRIX)
    with pytest.raises(ValueError, match="as_shot_neutral"):
        _write(tmp_path / "x.dng", good, as_shot_neutral=(0.5, np.nan, 1.0))
    with pytest.raises(ValueError, match="orientation"):
        _write(tmp_path / "x.dng", good, orientation=9)
    assert not (tmp_path / "x.dng").exists()
    with pytest.raises(OutputError, match="cannot write DNG"):
        _write(tmp_path / "missing-dir" / "x.dng", good)
