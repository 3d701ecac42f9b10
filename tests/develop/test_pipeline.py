"""The develop pipeline: order, colour accuracy on a synthetic chart, WB, highlights, EV."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from dev_scenes import (
    CAM_FROM_XYZ,
    chart_linear_srgb,
    lab_of_linear_srgb,
    needs_shared,
    patch_means,
    write_chart_dng,
)
from nnip.core.engine import Engine
from nnip.core.errors import ModelNotFoundError, UnsupportedFormatError
from nnip.core.models import Registry
from nnip.develop import colour
from nnip.develop.pipeline import (
    STAGE_ORDER,
    DevelopOptions,
    build_pipeline,
    describe_pipeline,
    develop,
)
from nnip.raw.frame import BAYER_PATTERNS, read_raw

ILLUMINANT_A = (0.44757, 0.40745)
GREYS = slice(18, 24)  # the neutral row of the chart


def chart_delta_e(rgb: np.ndarray, space: str = "srgb", scene=None) -> np.ndarray:
    """CIEDE2000 of each chart patch: developed (encoded in ``space``) vs the scene."""
    cs = colour.colour_space(space)
    linear = colour.decode_transfer(rgb, cs.transfer).astype(np.float64)
    xyz = patch_means(linear) @ np.linalg.inv(cs.rgb_from_xyz_d65()).T
    expected = patch_means(chart_linear_srgb() if scene is None else scene)
    return colour.delta_e_2000(colour.xyz_to_lab(xyz), lab_of_linear_srgb(expected))


def grey_chroma(rgb: np.ndarray) -> np.ndarray:
    """|a*|, |b*| of the grey patches of a developed sRGB chart, against the scene's own
    (the chart's greys are not all exactly neutral)."""
    lab = lab_of_linear_srgb(patch_means(colour.decode_transfer(rgb, "srgb")))[GREYS]
    scene = lab_of_linear_srgb(patch_means(chart_linear_srgb()))[GREYS]
    return np.abs(lab[:, 1:] - scene[:, 1:])


@pytest.fixture(scope="module")
def chart_frames(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("charts")
    return {p: read_raw(write_chart_dng(folder / f"{p}.dng", p)) for p in BAYER_PATTERNS}


def test_stage_list_is_the_one_order() -> None:
    stages = build_pipeline(DevelopOptions(demosaic="ahd"))
    assert tuple(s.name for s in stages) == STAGE_ORDER == (
        "normalise", "denoise", "lateral-ca", "demosaic", "lens", "white-balance",
        "camera-matrix", "output-space", "highlights", "exposure", "transfer")
    lines = describe_pipeline(stages)
    assert len(lines) == 11 and lines[0].startswith("1. normalise")
    off = [line for line in lines if line.endswith("[off]")]
    # only 0 EV: denoise, lateral CA and lens are on by default (auto)
    assert [line.split(".")[0] for line in off] == ["10"]
    quiet = describe_pipeline(build_pipeline(DevelopOptions(denoise="off", lens="off")))
    assert [line.split(".")[0] for line in quiet if line.endswith("[off]")] == ["2", "3", "5", "10"]
    assert "ahd (LibRaw)" in lines[3]
    lensed = describe_pipeline(build_pipeline(DevelopOptions(lens="deblur")))
    assert lensed[2] == "3. lateral-ca: measured in the image, on the mosaic"


@pytest.mark.parametrize("method", ["bilinear", "ahd"])
@pytest.mark.parametrize("pattern", BAYER_PATTERNS)
def test_chart_colour_accuracy(chart_frames, method: str, pattern: str) -> None:
    rgb, meta = develop(chart_frames[pattern], DevelopOptions(demosaic=method))
    delta = chart_delta_e(rgb)
    assert delta.mean() < 1.0 and delta.max() < 1.5, delta.round(2)
    assert rgb.dtype == np.float32 and rgb.shape == (96, 144, 3)
    assert meta["transfer"] == "srgb" and meta["notices"] == []
    json.dumps(meta)  # JSON-ready


@pytest.mark.parametrize("space", list(colour.COLOUR_SPACES))
def test_chart_accuracy_in_every_output_space(chart_frames, space: str) -> None:
    rgb, meta = develop(chart_frames["GRBG"], DevelopOptions(demosaic="bilinear", colorspace=space))
    assert meta["transfer"] == colour.colour_space(space).transfer
    assert chart_delta_e(rgb, space).mean() < 1.0


def test_chart_through_the_network(chart_frames, demosaic_registry) -> None:
    engine = Engine("cpu", threads=1, registry=demosaic_registry)
    rgb, meta = develop(chart_frames["BGGR"], DevelopOptions(demosaic="nn"), engine,
                        demosaic_registry)
    assert chart_delta_e(rgb).mean() < 1.0
    assert "nn" in meta["pipeline"][3]


def test_nn_without_a_model_names_the_task(chart_frames, tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "models": []}')
    with pytest.raises(ModelNotFoundError, match="no model for task 'demosaic' installed"):
        develop(chart_frames["RGGB"], DevelopOptions(demosaic="nn"), Engine("cpu"),
                Registry(tmp_path))


# --------------------------------------------------------------------------- white balance


def test_camera_wb_neutralises_greys_under_tungsten(tmp_path: Path) -> None:
    frame = read_raw(write_chart_dng(tmp_path / "a.dng", illuminant_xy=ILLUMINANT_A))
    rgb, meta = develop(frame, DevelopOptions(demosaic="bilinear", wb="camera"))
    assert grey_chroma(rgb).max() < 0.5
    neutral = CAM_FROM_XYZ @ colour.xy_to_xyz(ILLUMINANT_A)
    np.testing.assert_allclose(meta["white_balance"]["multipliers"],
                               colour.normalise_multipliers(1 / neutral), rtol=1e-4)


def test_daylight_wb_is_wrong_under_tungsten_and_right_in_daylight(tmp_path: Path, chart_frames) -> None:
    tungsten = read_raw(write_chart_dng(tmp_path / "a.dng", illuminant_xy=ILLUMINANT_A))
    rgb, _ = develop(tungsten, DevelopOptions(demosaic="bilinear", wb="daylight"))
    assert grey_chroma(rgb)[:, 1].min() > 10  # strongly yellow: the light really was warm
    rgb, meta = develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", wb="daylight"))
    assert chart_delta_e(rgb).mean() < 1.0
    np.testing.assert_allclose(meta["white_balance"]["multipliers"],
                               colour.daylight_multipliers(CAM_FROM_XYZ), rtol=1e-6)


@pytest.mark.parametrize("kelvin", [3200, 4500])
def test_kelvin_wb_neutralises_that_light(tmp_path: Path, kelvin: int) -> None:
    xy = colour.planckian_xy(kelvin)
    frame = read_raw(write_chart_dng(tmp_path / "k.dng", illuminant_xy=xy))
    rgb, meta = develop(frame, DevelopOptions(demosaic="bilinear", wb=f"{kelvin}K"))
    assert grey_chroma(rgb).max() < 0.5
    assert meta["white_balance"]["mode"] == f"{kelvin}K"


def test_auto_wb_on_a_grey_scene(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    levels = rng.uniform(0.03, 0.6, (4, 6))
    scene = np.repeat(np.repeat(levels, 24, axis=0), 24, axis=1)[..., None] * np.ones(3)
    frame = read_raw(write_chart_dng(tmp_path / "g.dng", scene=scene, illuminant_xy=ILLUMINANT_A,
                                     as_shot_neutral=(1.0, 1.0, 1.0)))  # a wrong as-shot WB
    wrong, _ = develop(frame, DevelopOptions(demosaic="bilinear", wb="camera"))
    right, _ = develop(frame, DevelopOptions(demosaic="bilinear", wb="auto"))
    lab = lambda rgb: lab_of_linear_srgb(patch_means(colour.decode_transfer(rgb, "srgb")))  # noqa: E731
    assert np.abs(lab(wrong)[:, 1:]).max() > 5
    assert np.abs(lab(right)[:, 1:]).max() < 1.0


def test_multiplier_wb_is_used_as_given(chart_frames) -> None:
    _, meta = develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", wb="3,1.5,2"))
    assert meta["white_balance"] == {"mode": "2,1,1.33333", "multipliers": [2.0, 1.0, 1.333333]}


def test_missing_as_shot_wb_falls_back_to_daylight_with_notice(chart_frames) -> None:
    frame = dataclasses.replace(chart_frames["RGGB"], camera_whitebalance=None)
    rgb, meta = develop(frame, DevelopOptions(demosaic="bilinear"))
    assert meta["notices"] == ["no as-shot white balance in this file: daylight used"]
    assert chart_delta_e(rgb).mean() < 1.0


def test_missing_matrix_falls_back_to_srgb_with_notice(chart_frames) -> None:
    frame = dataclasses.replace(chart_frames["RGGB"], cam_from_xyz=None)
    rgb, meta = develop(frame, DevelopOptions(demosaic="bilinear"))
    assert "no colour matrix known for this camera" in meta["notices"][0]
    assert rgb.shape == (96, 144, 3) and np.isfinite(rgb).all()


# --------------------------------------------------------------------------- highlights, EV


def overexposed_frame(tmp_path: Path):
    # Gain 3: the white and light patches saturate in some or all raw channels.
    return read_raw(write_chart_dng(tmp_path / "over.dng", gain=3.0))


def test_clip_makes_saturated_white_neutral_white(tmp_path: Path) -> None:
    frame = overexposed_frame(tmp_path)
    assert frame.mosaic.max() == 16383  # really clipped in the raw
    rgb, _ = develop(frame, DevelopOptions(demosaic="bilinear", highlights="clip"))
    white = patch_means(rgb)[18]
    np.testing.assert_allclose(white, [1.0, 1.0, 1.0], atol=1e-4)  # not pink


def test_reconstruct_keeps_brightness_above_white(tmp_path: Path) -> None:
    frame = overexposed_frame(tmp_path)
    options = dict(demosaic="bilinear", colorspace="linear-srgb", exposure=-2.0)
    clipped, _ = develop(frame, DevelopOptions(highlights="clip", **options))
    rebuilt, _ = develop(frame, DevelopOptions(highlights="reconstruct", **options))
    white_c, white_r = patch_means(clipped)[18], patch_means(rebuilt)[18]
    np.testing.assert_allclose(white_c, 0.25, atol=1e-4)
    assert white_r.min() > 0.3  # brighter than clipped white, -2 EV shows it
    assert np.ptp(white_r) / white_r.mean() < 0.02  # and still neutral
    # Patches that never went above white are the same in both modes.
    dark = slice(21, 24)
    np.testing.assert_allclose(patch_means(clipped)[dark], patch_means(rebuilt)[dark], atol=1e-6)


def test_exposure_doubles_linear_light(chart_frames) -> None:
    options = dict(demosaic="bilinear", colorspace="linear-srgb")
    base, _ = develop(chart_frames["RGGB"], DevelopOptions(**options))
    plus, meta = develop(chart_frames["RGGB"], DevelopOptions(exposure=1.0, **options))
    dark = slice(21, 24)
    np.testing.assert_allclose(patch_means(plus)[dark], 2 * patch_means(base)[dark], rtol=1e-5)
    assert "exposure" in meta["timings"]


# --------------------------------------------------------------------------- fallbacks, options


def test_classical_method_without_a_file_uses_numpy_bilinear(chart_frames) -> None:
    frame = dataclasses.replace(chart_frames["GBRG"], path=None)
    rgb, meta = develop(frame, DevelopOptions(demosaic="ahd"))
    assert meta["notices"] == ["demosaic ahd: no RAW file behind this mosaic, bilinear used"]
    reference, _ = develop(frame, DevelopOptions(demosaic="bilinear"))
    np.testing.assert_array_equal(rgb, reference)
    assert chart_delta_e(rgb).mean() < 1.0


def test_non_bayer_takes_libraws_own_path_with_notice(chart_frames) -> None:
    frame = dataclasses.replace(chart_frames["RGGB"], is_bayer=False)
    rgb, meta = develop(frame, DevelopOptions(demosaic="nn"), Engine("cpu"))
    assert "LibRaw's own ahd path instead of the network" in meta["notices"][0]
    assert chart_delta_e(rgb).mean() < 1.0


def test_cmyg_sensor_is_refused(chart_frames) -> None:
    frame = dataclasses.replace(chart_frames["RGGB"], num_colors=4, color_desc="CMYG")
    with pytest.raises(UnsupportedFormatError, match="CMYG"):
        develop(frame, DevelopOptions(demosaic="bilinear"))


def test_lens_auto_without_profile_or_model_changes_nothing(chart_frames, tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"models": []}')
    registry = Registry(tmp_path)
    off, _ = develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", lens="off"),
                     registry=registry)
    auto, meta = develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", lens="auto"),
                         registry=registry)
    assert np.array_equal(off, auto)
    assert not any(notice.startswith("lens") for notice in meta["notices"]), meta["notices"]


def test_lens_deblur_without_a_model_is_one_clear_error(chart_frames, tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"models": []}')
    with pytest.raises(ModelNotFoundError, match="no model for task 'lens' installed"):
        develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", lens="deblur"),
                registry=Registry(tmp_path))


def test_denoise_without_a_model_is_one_clear_error(chart_frames, tmp_path) -> None:
    (tmp_path / "manifest.json").write_text('{"models": []}')
    with pytest.raises(ModelNotFoundError, match="no model for task 'denoise' installed"):
        develop(chart_frames["RGGB"], DevelopOptions(demosaic="bilinear", denoise="1.5"),
                registry=Registry(tmp_path))


@pytest.mark.parametrize("kwargs, message", [
    (dict(format="gif"), "format"),
    (dict(format="jpeg", bits=16), "jpeg holds 8"),
    (dict(bits=12), "tiff holds"),
    (dict(colorspace="rec2020"), "unknown colour space"),
    (dict(demosaic="amaze"), "demosaic"),
    (dict(wb="sunny"), "white balance"),
    (dict(highlights="magic"), "highlights"),
    (dict(denoise="strong"), "denoise"),
    (dict(exposure=float("nan")), "exposure"),
])
def test_invalid_options(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        DevelopOptions(**kwargs)


def test_option_defaults() -> None:
    options = DevelopOptions()
    assert (options.format, options.bits, options.colorspace, options.demosaic) == (
        "tiff", 16, "srgb", "nn")
    assert DevelopOptions(format="jpg").bits == 8 and DevelopOptions(format="png").bits == 16
    assert options.wb == colour.WhiteBalance("camera") and options.highlights == "clip"


# --------------------------------------------------------------------------- a real camera


def test_real_d30_matches_libraws_own_colour_rendering() -> None:
    import rawpy

    path = needs_shared("real", "Canon_EOS_D30.CRW")
    frame = read_raw(path)
    rgb, meta = develop(frame, DevelopOptions(demosaic="ahd", colorspace="linear-srgb"))
    assert meta["notices"] == ["no as-shot white balance in this file: daylight used"]
    m = meta["white_balance"]["multipliers"]
    with rawpy.imread(str(path)) as raw:
        reference = raw.postprocess(
            demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD, use_camera_wb=False,
            user_wb=[m[0], m[1], m[2], m[1]], no_auto_bright=True, user_flip=0, gamma=(1, 1),
            output_bps=16, output_color=rawpy.ColorSpace.sRGB, adjust_maximum_thr=0.0,
        ).astype(np.float32) / 65535.0
    assert rgb.shape == reference.shape
    usable = (reference.max(axis=-1) < 0.9) & (reference.min(axis=-1) > 0.01)
    ratio = np.median(np.clip(rgb, 0, 1)[usable] / reference[usable], axis=0)
    np.testing.assert_allclose(ratio, 1.0, atol=0.01)
