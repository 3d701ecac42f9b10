"""Lateral CA on the mosaic: measured shifts, the correction, the stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dev_scenes import BLACK, CAM_FROM_XYZ, WHITE
from nnip.develop.pipeline import DevelopFrame, Normalise
from nnip.develop.tca import (
    LateralCA,
    RadialWarp,
    correct_mosaic,
    estimate_mosaic_tca,
    half_rgb,
    profile_at,
    profile_warp,
)
from nnip.raw.dng import write_dng
from nnip.raw.frame import read_raw
from nnip.simulate.optics import Field, lateral_ca
from nnip.simulate.sensor import mosaic_bayer

RED_PX, BLUE_PX = 1.0, -0.8  # displacement at the frame corner, + = outwards


def _scene(height: int = 512, width: int = 768, seed: int = 0) -> np.ndarray:
    """Linear RGB: grey and coloured rectangles and discs on a mid background (edges in
    every direction, all over the frame)."""
    rng = np.random.default_rng(seed)
    scene = np.full((height, width, 3), 0.3, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(220):
        tint = rng.uniform(0.7, 1.0, 3) if rng.random() < 0.3 else np.ones(3)
        value = (rng.uniform(0.05, 0.9) * tint).astype(np.float32)
        y, x, size = rng.integers(0, height), rng.integers(0, width), rng.integers(6, 40)
        if rng.random() < 0.5:
            scene[y:y + size, x:x + size] = value
        else:
            scene[(yy - y) ** 2 + (xx - x) ** 2 < size ** 2 / 4] = value
    return scene


def _mosaic(pattern: str, red_px: float = RED_PX, blue_px: float = BLUE_PX) -> np.ndarray:
    """The scene through a lens with lateral CA, a little blur, and the colour filters."""
    scene = _scene()
    field = Field.of_image(*scene.shape[:2])
    shifted = lateral_ca(scene, 1 + red_px / field.r_corner, 1 + blue_px / field.r_corner, field)
    return mosaic_bayer(ndimage.gaussian_filter(shifted, (0.8, 0.8, 0)), pattern)


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG"])
def test_a_known_lateral_ca_is_measured(pattern: str) -> None:
    fit = estimate_mosaic_tca(_mosaic(pattern), pattern)
    assert fit.needed and min(fit.blocks) >= 60
    r = np.linspace(0.1, 0.9, 9)  # the profile is linear here: d = shift at corner * r
    np.testing.assert_allclose(profile_at(fit.red, r), RED_PX * r, atol=0.12)
    np.testing.assert_allclose(profile_at(fit.blue, r), BLUE_PX * r, atol=0.12)
    assert fit.describe().startswith("lateral CA at the corner: red +1.0")


def test_no_lateral_ca_is_left_alone() -> None:
    fit = estimate_mosaic_tca(_mosaic("RGGB", 0.0, 0.0), "RGGB")
    assert not fit.needed and fit.red is None and fit.blue is None
    assert fit.largest_px(0) == 0.0 and "red none, blue none" in fit.describe()


def test_coloured_edges_are_not_taken_for_a_fringe() -> None:
    # Saturated objects: their red and green edges differ, but not the same way on every
    # side of the frame.
    rng = np.random.default_rng(5)
    scene = _scene() * rng.uniform(0.2, 1.0, size=(1, 1, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:512, 0:768]
    for _ in range(60):
        y, x, size = rng.integers(0, 512), rng.integers(0, 768), rng.integers(10, 60)
        scene[(yy - y) ** 2 + (xx - x) ** 2 < size ** 2 / 4] = rng.uniform(0.02, 0.9, 3)
    mosaic = mosaic_bayer(ndimage.gaussian_filter(scene, (0.8, 0.8, 0)), "RGGB")
    assert not estimate_mosaic_tca(mosaic, "RGGB").needed


def test_the_correction_realigns_and_leaves_green() -> None:
    mosaic = _mosaic("BGGR")
    corrected = correct_mosaic(mosaic, "BGGR", RadialWarp.from_fit(estimate_mosaic_tca(mosaic, "BGGR")))
    assert corrected.dtype == np.float32 and corrected.shape == mosaic.shape
    np.testing.assert_array_equal(corrected[0::2, 1::2], mosaic[0::2, 1::2])  # greens
    np.testing.assert_array_equal(corrected[1::2, 0::2], mosaic[1::2, 0::2])
    assert not np.array_equal(corrected[0::2, 0::2], mosaic[0::2, 0::2])  # blue moved
    after = estimate_mosaic_tca(corrected, "BGGR")
    assert after.largest_px(0) < 0.1 and after.largest_px(2) < 0.1 and not after.needed


def test_half_rgb_puts_every_colour_at_the_cell_centre() -> None:
    flat = mosaic_bayer(np.broadcast_to(np.float32([0.2, 0.5, 0.7]), (8, 10, 3)), "GRBG")
    np.testing.assert_allclose(half_rgb(flat, "GRBG"), np.broadcast_to([0.2, 0.5, 0.7], (4, 5, 3)),
                               atol=1e-6)
    # A horizontal ramp: in GRBG red sits half a pixel right of the cell centre, where the
    # mean of the two greens lies; moved there, it reads what green reads.
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[None, :, None], (8, 10, 3))
    half = half_rgb(mosaic_bayer(np.ascontiguousarray(ramp), "GRBG"), "GRBG")
    np.testing.assert_allclose(half[:, 1:-1, 0], half[:, 1:-1, 1], atol=1e-5)
    with pytest.raises(ValueError, match="Bayer"):
        half_rgb(flat, "RGBG")


def _dng(tmp_path: Path, mosaic: np.ndarray, pattern: str, **kwargs) -> Path:
    raw = np.round(BLACK + np.clip(mosaic, 0, 1) * (WHITE - BLACK)).astype(np.uint16)
    path = tmp_path / f"ca-{pattern}.dng"
    write_dng(path, raw, pattern=pattern, black_level=BLACK, white_level=WHITE,
              color_matrix1=CAM_FROM_XYZ, as_shot_neutral=(0.5, 1.0, 0.7), **kwargs)
    return path


def test_the_stage_follows_the_lens_option(tmp_path: Path) -> None:
    frame = read_raw(_dng(tmp_path, _mosaic("RGGB"), "RGGB"))
    mosaic = Normalise().apply(DevelopFrame.from_raw(frame))
    assert not LateralCA("off").enabled and LateralCA().describe() == "lateral-ca: off"
    measured = LateralCA("deblur").apply(mosaic)
    np.testing.assert_array_equal(measured.pixels[0::2, 1::2], mosaic.pixels[0::2, 1::2])
    assert not np.array_equal(measured.pixels[0::2, 0::2], mosaic.pixels[0::2, 0::2])
    assert measured.lateral_ca.startswith("measured: lateral CA at the corner: red +")
    # A profile is wanted but none matches this camera: nothing is measured either.
    assert LateralCA("profile").apply(mosaic) is mosaic
    assert LateralCA("auto").apply(mosaic) is mosaic
    with pytest.raises(RuntimeError, match="mosaic"):
        LateralCA("deblur").apply(mosaic.replace(space="camera"))
    rgb = mosaic.replace(pixels=np.zeros((4, 6, 3), np.float32))
    assert LateralCA("deblur").apply(rgb) is rgb  # not a single-plane Bayer mosaic


def test_a_lensfun_profile_gives_the_warp(tmp_path: Path) -> None:
    pytest.importorskip("lensfunpy")
    mosaic = _mosaic("RGGB", 0.0, 0.0)
    frame = read_raw(_dng(tmp_path, mosaic, "RGGB", make="Canon", model="Canon EOS 5D Mark III",
                          lens_model="Canon EF 24-70mm f/2.8L II USM", focal_length=24.0,
                          fnumber=2.8))
    warp, reason = profile_warp(frame, mosaic.shape)
    assert warp is not None and reason == ""
    # lensfun's poly3 TCA of this lens at 24 mm: red scaled by 1.00021, blue by 1.00005.
    assert float(warp.red(np.array([0.0]))[0]) == pytest.approx(1.00021, abs=2e-5)
    assert float(warp.blue(np.array([0.0]))[0]) == pytest.approx(1.00005, abs=2e-5)
    work = Normalise().apply(DevelopFrame.from_raw(frame))
    corrected = LateralCA("profile").apply(work)
    assert corrected.lateral_ca.startswith("lateral CA: lensfun profile of Canon EF 24-70mm")
    assert not np.array_equal(corrected.pixels[0::2, 0::2], work.pixels[0::2, 0::2])
    unknown, why = profile_warp(read_raw(_dng(tmp_path, mosaic, "RGGB")), mosaic.shape)
    assert unknown is None and "lensfun" in why
