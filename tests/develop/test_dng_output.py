"""``--format dng``: a linear DNG of camera RGB that other raw developers render as we do.

The reference is our own sRGB develop of the same source; LibRaw (rawpy's postprocess with
the camera white balance and an sRGB curve) plays the other raw developer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rawpy
import tifffile
from click.testing import CliRunner

from dev_scenes import CAM_FROM_XYZ, camera_mosaic, chart_linear_srgb, patch_means, write_chart_dng
from nnip.cli import cli
from nnip.core.imageio import read_image
from nnip.develop import DevelopOptions, process_file
from nnip.develop.colour import kelvin_multipliers, normalise_multipliers
from nnip.develop.process import develop_camera_rgb
from nnip.raw.frame import read_raw

NOISE = (3e-4, 2e-7)


@pytest.fixture(scope="module")
def chart_dng(tmp_path_factory) -> Path:
    return write_chart_dng(tmp_path_factory.mktemp("src") / "chart.dng", "GRBG",
                           noise_profile=NOISE)


def _tags(path: Path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return {tag.code: tag.value for tag in tif.pages[0].tags}


def _ratios(flat) -> np.ndarray:
    values = np.asarray(flat, dtype=np.float64)
    return values[0::2] / values[1::2]


def _libraw_srgb(path: Path) -> np.ndarray:
    """What LibRaw renders of a DNG: as-shot WB, its matrix, sRGB curve; float [0, 1]."""
    with rawpy.imread(str(path)) as raw:
        out = raw.postprocess(use_camera_wb=True, no_auto_bright=True, gamma=(2.4, 12.92),
                              output_bps=16, adjust_maximum_thr=0.0,
                              output_color=rawpy.ColorSpace.sRGB)
    return out.astype(np.float32) / 65535.0


def _our_srgb(src: Path, tmp_path: Path, **settings) -> np.ndarray:
    out = tmp_path / "ours.tif"
    process_file(src, out, DevelopOptions(format="tiff", bits=16, colorspace="srgb", **settings))
    return read_image(out).pixels


@pytest.mark.parametrize("method", ["bilinear", "ahd", "nn"])
def test_libraw_renders_our_dng_as_we_render_the_raw(
    tmp_path: Path, chart_dng: Path, demosaic_registry, method: str
) -> None:
    from nnip.core.engine import Engine

    engine = Engine("cpu", registry=demosaic_registry) if method == "nn" else None
    dng = tmp_path / "linear.dng"
    record = process_file(chart_dng, dng, None, engine, registry=demosaic_registry, format="dng",
                          demosaic=method)
    assert (record["format"], record["bits"], record["colorspace"]) == ("dng", 16, "camera")
    assert (record["width"], record["height"]) == (144, 96)
    theirs = _libraw_srgb(dng)
    ours = tmp_path / "ours.tif"
    process_file(chart_dng, ours, None, engine, registry=demosaic_registry, format="tiff", bits=16,
                 colorspace="srgb", demosaic=method)
    ours = read_image(ours).pixels
    assert theirs.shape == ours.shape == (96, 144, 3)
    assert np.abs(patch_means(theirs) - patch_means(ours)).mean() < 2 / 255
    assert np.abs(patch_means(theirs) - patch_means(ours)).max() < 4 / 255
    assert np.abs(theirs - ours).mean() < 2 / 255


def _camera_truth() -> np.ndarray:
    """Unbalanced camera RGB of the D65 chart, 1 = white level (as ``camera_mosaic`` makes it)."""
    from nnip.develop.colour import colour_space, xy_to_xyz

    camera_from_srgb = CAM_FROM_XYZ @ colour_space("srgb").xyz_from_rgb
    neutral = CAM_FROM_XYZ @ xy_to_xyz((0.3127, 0.3290))
    return chart_linear_srgb() @ camera_from_srgb.T / neutral.max()


def test_dng_holds_unbalanced_camera_rgb_scaled_to_65535(tmp_path: Path, chart_dng: Path) -> None:
    dng = tmp_path / "linear.dng"
    process_file(chart_dng, dng, DevelopOptions(format="dng", demosaic="bilinear"))
    stored = tifffile.imread(dng)
    assert stored.dtype == np.uint16 and stored.shape == (96, 144, 3)
    rgb, meta = develop_camera_rgb(read_raw(chart_dng), DevelopOptions(demosaic="bilinear"))
    np.testing.assert_array_equal(stored, np.round(np.clip(rgb, 0, 1) * 65535))
    np.testing.assert_allclose(patch_means(stored / 65535.0), patch_means(_camera_truth()),
                               atol=2e-3)
    # Neutral greys are not neutral in the file; 1 / AsShotNeutral makes them so.
    neutral = _ratios(_tags(dng)[50728])
    _, source_neutral = camera_mosaic(chart_linear_srgb(), "GRBG")
    np.testing.assert_allclose(neutral, source_neutral, rtol=1e-4)
    greys = patch_means(stored / 65535.0)[[19, 20, 22]]  # 200, 160, 85 on each channel
    assert np.abs(greys[:, 0] - greys[:, 1]).min() > 0.05
    balanced = greys / neutral
    np.testing.assert_allclose(balanced / balanced[:, 1:2], 1.0, atol=3e-3)
    assert meta["multipliers"].min() == pytest.approx(1.0)


def test_camera_metadata_is_carried(tmp_path: Path, chart_dng: Path) -> None:
    dng = tmp_path / "meta.dng"
    process_file(chart_dng, dng, DevelopOptions(format="dng", demosaic="ahd", exposure=0.5))
    tags = _tags(dng)
    assert tags[262] == 34892 and tags[277] == 3 and tags[258] == (16, 16, 16)
    assert tags[50714] == (0, 0, 0) and tags[50717] == (65535, 65535, 65535)
    np.testing.assert_allclose(_ratios(tags[50721]).reshape(3, 3), CAM_FROM_XYZ, atol=1e-6)
    assert tags[50778] == 21
    assert _ratios(tags[50730])[0] == 0.5  # --exposure becomes BaselineExposure
    np.testing.assert_allclose(tags[51041], NOISE)
    assert (tags[271], tags[272], tags[50708]) == ("Testmake", "Chart 1", "Testmake Chart 1")
    assert tags[305].startswith("nnip ") and tags[50827] == "chart.dng"
    exif = tags[34665]
    assert exif["ISOSpeedRatings"] == 200 and exif["LensModel"] == "Test 50mm"
    assert _ratios(exif["FNumber"])[0] == pytest.approx(5.6, abs=1e-3)
    assert _ratios(exif["ExposureTime"])[0] == pytest.approx(1 / 125)
    assert _ratios(exif["FocalLength"])[0] == pytest.approx(50.0)
    again = read_raw(dng)  # and our own reader agrees
    assert (again.make, again.model, again.lens, again.iso) == ("Testmake", "Chart 1",
                                                                "Test 50mm", 200)


def test_orientation_is_tagged_not_applied(tmp_path: Path) -> None:
    src = write_chart_dng(tmp_path / "turned.dng", "RGGB", orientation=6)
    dng = tmp_path / "out" / "turned.dng"
    dng.parent.mkdir()
    record = process_file(src, dng, DevelopOptions(format="dng", demosaic="bilinear"))
    assert _tags(dng)[274] == 6
    assert tifffile.imread(dng).shape == (96, 144, 3)  # sensor orientation
    assert (record["width"], record["height"]) == (144, 96)
    theirs = _libraw_srgb(dng)  # LibRaw turns it for display, as our TIFF is turned
    ours = _our_srgb(src, tmp_path, demosaic="bilinear")
    assert theirs.shape == ours.shape == (144, 96, 3)
    assert np.abs(theirs - ours).mean() < 2 / 255


def test_white_balance_choice_becomes_as_shot_neutral(tmp_path: Path, chart_dng: Path) -> None:
    dng = tmp_path / "k.dng"
    record = process_file(chart_dng, dng, format="dng", demosaic="bilinear", wb=3200,
                          colorspace="prophoto", highlights="reconstruct")
    expected = normalise_multipliers(kelvin_multipliers(3200, CAM_FROM_XYZ))
    neutral = _ratios(_tags(dng)[50728])
    np.testing.assert_allclose(neutral / neutral[1], expected[1] / expected, rtol=1e-4)
    assert record["white_balance"]["mode"] == "3200K"
    assert any(n.startswith("colorspace prophoto: not used for DNG") for n in record["notices"])
    assert any(n.startswith("highlights reconstruct: not used") for n in record["notices"])


def test_nnip_develops_its_own_linear_dng(tmp_path: Path, chart_dng: Path) -> None:
    """Round trip: RAW -> linear DNG -> nnip again gives the direct develop's colours."""
    dng = tmp_path / "linear.dng"
    process_file(chart_dng, dng, DevelopOptions(format="dng", demosaic="ahd"))
    again = _our_srgb(dng, tmp_path, demosaic="ahd")
    direct = _our_srgb(chart_dng, tmp_path, demosaic="ahd")
    assert np.abs(patch_means(again) - patch_means(direct)).max() < 1 / 255


def test_cli_writes_a_dng(tmp_path: Path, chart_dng: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["develop", str(chart_dng), "--format", "dng",
                                      "--demosaic", "bilinear", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["output"] == str(out / "chart.dng") and record["format"] == "dng"
    with rawpy.imread(record["output"]) as raw:
        assert raw.raw_image_visible.shape[:2] == (96, 144)
    assert sorted(p.name for p in out.iterdir()) == ["chart.dng"]


def test_denoised_dng_drops_the_noise_profile(tmp_path: Path) -> None:
    """The linear DNG holds the denoised data; the RAW's NoiseProfile no longer describes it."""
    from nnip.core.engine import Engine
    from nnip.simulate.pairs import simulate_dng
    from onnx_builders import install
    from test_denoise import lee_net

    packed = dict(channels=4, layout="bayer_packed", transfer="linear")
    contract = {"inputs": [dict(name="mosaic", **packed),
                           dict(name="noise_sigma", channels=4, layout="noise_sigma")],
                "outputs": [dict(name="denoised", **packed)]}
    registry = install(tmp_path / "models", {"denoise-lee": lee_net()}, task="denoise",
                       overrides={"denoise-lee": contract})
    engine = Engine("cpu", threads=1, registry=registry)
    src = tmp_path / "noisy.dng"
    simulate_dng(np.full((64, 64, 3), 0.5, np.float32), src, iso=6400, optics=False)
    plain, denoised = tmp_path / "plain.dng", tmp_path / "denoised.dng"
    process_file(src, plain, None, engine, registry=registry, format="dng", demosaic="bilinear",
                 denoise="off")
    record = process_file(src, denoised, None, engine, registry=registry, format="dng",
                          demosaic="bilinear", denoise="auto")
    assert 51041 in _tags(plain) and 51041 not in _tags(denoised)
    assert record["noise"]["source"] == "dng-noiseprofile"
    flat = (slice(8, -8), slice(8, -8))
    noise = [tifffile.imread(path)[flat].astype(np.float64).std(axis=(0, 1)) for path in
             (plain, denoised)]
    assert np.all(noise[1] < 0.5 * noise[0])
