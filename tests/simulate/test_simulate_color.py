"""Colour simulation: transfer curves, daylight locus, camera matrices, white balance."""

from __future__ import annotations

import numpy as np
import pytest

from nnip.simulate.color import (
    ADOBE_COLOR_MATRIX_D65,
    D65_XY,
    LINEAR_SRGB_FROM_XYZ,
    XYZ_FROM_LINEAR_SRGB,
    camera_matrices,
    camera_neutral,
    cct_to_xy,
    illuminant_wb,
    linear_to_srgb,
    random_camera_matrix,
    random_exposure,
    scene_to_camera,
    srgb_to_linear,
    xy_to_xyz,
)


def test_srgb_curve_known_values_and_round_trip():
    np.testing.assert_allclose(srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])),
                               [0.0, 0.04045 / 12.92, 0.21404114, 1.0], rtol=1e-6)
    x = np.linspace(-0.2, 3.0, 500)  # extended range: light sources above white survive
    np.testing.assert_allclose(srgb_to_linear(linear_to_srgb(x)), x, atol=1e-6)
    assert srgb_to_linear(np.float32([0.5])).dtype == np.float32


def test_srgb_white_is_d65():
    white = XYZ_FROM_LINEAR_SRGB @ np.ones(3)
    np.testing.assert_allclose(white / white.sum(), [*D65_XY, 1 - sum(D65_XY)], atol=2e-4)
    np.testing.assert_allclose(LINEAR_SRGB_FROM_XYZ @ XYZ_FROM_LINEAR_SRGB, np.eye(3), atol=1e-12)


def test_cct_locus_hits_standard_illuminants():
    np.testing.assert_allclose(cct_to_xy(6504), D65_XY, atol=2e-4)  # D65 on the daylight locus
    np.testing.assert_allclose(cct_to_xy(2856), (0.44757, 0.40745), atol=1e-3)  # illuminant A
    with pytest.raises(ValueError, match="1667..25000"):
        cct_to_xy(1000)


def test_camera_matrices_are_real_and_normalised():
    mats = camera_matrices()
    assert len(mats) >= 5
    first_row = ADOBE_COLOR_MATRIX_D65["Canon EOS 5D Mark III"][:3]
    np.testing.assert_allclose(first_row, [0.6722, -0.0635, -0.0963])
    for name, m in mats.items():
        neutral = m @ xy_to_xyz(D65_XY)
        assert neutral.max() == pytest.approx(1.0), name
        assert np.argmax(neutral) == 1, name  # green is the most sensitive channel
        raw = np.array(ADOBE_COLOR_MATRIX_D65[name]).reshape(3, 3)
        np.testing.assert_allclose(m / m[1, 1], raw / raw[1, 1])  # only the scale changed
    mats["Canon EOS R"][0, 0] = 99.0  # a fresh copy each call
    assert camera_matrices()["Canon EOS R"][0, 0] != 99.0


def test_random_camera_keeps_a_real_neutral_but_changes_colour():
    real = {name: camera_neutral(m) for name, m in camera_matrices().items()}
    a = random_camera_matrix(np.random.default_rng(7))
    b = random_camera_matrix(np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    neutral = camera_neutral(a)
    closest = min(real, key=lambda n: np.abs(real[n] - neutral).max())
    np.testing.assert_allclose(neutral, real[closest], atol=1e-9)
    assert np.abs(a - camera_matrices()[closest]).max() > 1e-3


def test_white_under_an_illuminant_is_neutral_after_its_wb_gains():
    m = camera_matrices()["Nikon D850"]
    for kelvin in (2856, 4000, 6504, 9000):
        raw = scene_to_camera(np.ones((1, 1, 3), np.float32), m, illuminant=kelvin)[0, 0]
        balanced = raw * illuminant_wb(kelvin, m)
        np.testing.assert_allclose(balanced / balanced[1], [1, 1, 1], atol=2e-3, err_msg=str(kelvin))
    gains_tungsten, gains_daylight = illuminant_wb(2856, m), illuminant_wb(6504, m)
    assert gains_tungsten[2] > gains_daylight[2] and gains_tungsten[0] < gains_daylight[0]


def test_scene_white_maps_to_the_camera_neutral():
    m = camera_matrices()["Sony ILCE-7M3"]
    raw = scene_to_camera(np.ones((2, 2, 3), np.float32), m)
    assert raw.dtype == np.float32
    np.testing.assert_allclose(raw[0, 0], m @ xy_to_xyz(D65_XY), rtol=1e-3)
    np.testing.assert_allclose(illuminant_wb(D65_XY, m) * camera_neutral(m), 1.0)


def test_random_exposure_range_and_seed():
    values = [random_exposure(np.random.default_rng(s), (-2.0, 0.5)) for s in range(200)]
    assert 2**-2 <= min(values) and max(values) <= 2**0.5
    assert random_exposure(np.random.default_rng(3)) == random_exposure(np.random.default_rng(3))
