"""Colour maths against published values: matrices, adaptation, curves, CIEDE2000, WB."""

from __future__ import annotations

import numpy as np
import pytest

from nnip.develop import colour
from nnip.develop.colour import (
    COLOUR_SPACES,
    TRANSFERS,
    WhiteBalance,
    bradford,
    camera_to_xyz_matrix,
    daylight_multipliers,
    decode_transfer,
    delta_e_2000,
    encode_transfer,
    grey_world_multipliers,
    kelvin_multipliers,
    parse_white_balance,
    planckian_xy,
    xy_to_xyz,
)

D65 = xy_to_xyz((0.3127, 0.3290))
D50 = xy_to_xyz((0.3457, 0.3585))
CAM = np.array([[6722, -635, -963], [-4287, 12460, 2028], [-908, 2162, 5668]]) / 1e4


def test_srgb_matrix_matches_iec_61966() -> None:
    expected = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                         [0.0193, 0.1192, 0.9505]])
    np.testing.assert_allclose(COLOUR_SPACES["srgb"].xyz_from_rgb, expected, atol=2e-4)


def test_adobe_rgb_matrix_matches_specification() -> None:
    expected = np.array([[0.57667, 0.18556, 0.18823], [0.29734, 0.62736, 0.07529],
                         [0.02703, 0.07069, 0.99134]])
    np.testing.assert_allclose(COLOUR_SPACES["adobe-rgb"].xyz_from_rgb, expected, atol=2e-4)


def test_bradford_d65_to_d50_matches_lindbloom() -> None:
    expected = np.array([[1.0478112, 0.0228866, -0.0501270], [0.0295424, 0.9904844, -0.0170491],
                         [-0.0092345, 0.0150436, 0.7521316]])
    np.testing.assert_allclose(bradford(D65, D50), expected, atol=5e-4)


@pytest.mark.parametrize("name", list(COLOUR_SPACES))
def test_every_space_maps_d65_white_to_rgb_white(name: str) -> None:
    # ProPhoto's white is D50: the Bradford adaptation is part of rgb_from_xyz_d65.
    rgb = COLOUR_SPACES[name].rgb_from_xyz_d65() @ D65
    np.testing.assert_allclose(rgb, [1, 1, 1], atol=1e-9)


@pytest.mark.parametrize("name", list(COLOUR_SPACES))
def test_every_space_round_trips(name: str) -> None:
    space = COLOUR_SPACES[name]
    rng = np.random.default_rng(3)
    encoded = rng.uniform(0, 1, (50, 3)).astype(np.float32)
    linear = decode_transfer(encoded, space.transfer)
    xyz = linear @ np.linalg.inv(space.rgb_from_xyz_d65()).T
    back = encode_transfer(xyz @ space.rgb_from_xyz_d65().T, space.transfer)
    np.testing.assert_allclose(back, encoded, atol=2e-5)


@pytest.mark.parametrize("transfer", TRANSFERS)
def test_transfer_round_trip_and_signs(transfer: str) -> None:
    values = np.linspace(-0.5, 1.5, 401, dtype=np.float32)
    np.testing.assert_allclose(decode_transfer(encode_transfer(values, transfer), transfer),
                               values, atol=2e-6)
    assert encode_transfer(np.float32(1.0), transfer) == pytest.approx(1.0, abs=1e-6)
    assert encode_transfer(np.float32(0.0), transfer) == 0.0


def test_transfer_known_values() -> None:
    assert encode_transfer(np.float32(0.5), "srgb") == pytest.approx(0.735357, abs=1e-5)
    assert encode_transfer(np.float32(0.002), "srgb") == pytest.approx(0.02584, abs=1e-6)
    assert encode_transfer(np.float32(0.5), "adobe") == pytest.approx(0.5 ** (256 / 563), abs=1e-6)
    # ProPhoto (ROMM): linear 16x below 1/512, gamma 1.8 above; continuous at the break.
    assert encode_transfer(np.float32(0.001), "prophoto") == pytest.approx(0.016, abs=1e-6)
    assert encode_transfer(np.float32(0.5), "prophoto") == pytest.approx(0.5 ** (1 / 1.8), abs=1e-6)
    assert float(encode_transfer(np.float32(1 / 512), "prophoto")) == pytest.approx(1 / 32, abs=1e-6)


def test_display_p3_uses_srgb_curve_and_p3_primaries() -> None:
    p3 = COLOUR_SPACES["display-p3"]
    assert p3.transfer == "srgb"
    red_xyz = p3.xyz_from_rgb[:, 0]
    assert red_xyz[0] / red_xyz.sum() == pytest.approx(0.680, abs=1e-9)


# Sharma, Wu & Dalal (2005) test pairs.
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
]


@pytest.mark.parametrize("lab1, lab2, expected", SHARMA)
def test_delta_e_2000_sharma_pairs(lab1, lab2, expected) -> None:
    assert float(delta_e_2000(np.array(lab1), np.array(lab2))) == pytest.approx(expected, abs=1e-4)


def test_xyz_to_lab_of_white_and_grey() -> None:
    np.testing.assert_allclose(colour.xyz_to_lab(D65), [100, 0, 0], atol=1e-9)
    assert colour.xyz_to_lab(D65 * 0.18)[0] == pytest.approx(49.496, abs=1e-3)


def test_planckian_locus_known_points() -> None:
    assert planckian_xy(2856) == pytest.approx((0.44757, 0.40745), abs=1e-3)  # illuminant A
    assert planckian_xy(6504) == pytest.approx((0.3135, 0.3237), abs=1e-3)
    with pytest.raises(ValueError, match="outside"):
        planckian_xy(1000)


def test_camera_matrix_maps_balanced_white_to_d65() -> None:
    xyz_from_cam = camera_to_xyz_matrix(CAM)
    np.testing.assert_allclose(xyz_from_cam @ np.ones(3), D65, atol=1e-12)
    # Daylight multipliers are what balance a D65 grey to (1, 1, 1) * const.
    m = daylight_multipliers(CAM)
    balanced = m * (CAM @ (0.5 * D65))
    np.testing.assert_allclose(balanced / balanced[0], [1, 1, 1], atol=1e-12)
    assert m.min() == pytest.approx(1.0)


def test_kelvin_multipliers_neutralise_that_black_body() -> None:
    for kelvin in (2856, 4000, 6500, 9000):
        grey = CAM @ xy_to_xyz(planckian_xy(kelvin), 0.3)
        balanced = kelvin_multipliers(kelvin, CAM) * grey
        np.testing.assert_allclose(balanced / balanced.mean(), [1, 1, 1], atol=1e-9)
    # Lower temperature: redder light, so red gets a smaller multiplier than at 6500 K.
    warm, cool = kelvin_multipliers(2856, CAM), kelvin_multipliers(6500, CAM)
    assert warm[0] / warm[2] < cool[0] / cool[2]


def test_grey_world_ignores_clipped_and_finds_the_cast() -> None:
    rng = np.random.default_rng(0)
    grey = rng.uniform(0.05, 0.5, (64, 64, 1)) * np.array([0.5, 1.0, 0.8])
    scene = grey.copy()
    scene[:8] = [1.0, 1.0, 1.0]  # clipped sky must not count
    m = grey_world_multipliers(scene.astype(np.float32))
    np.testing.assert_allclose(m, [2.0, 1.0, 1.25], rtol=1e-3)
    assert list(grey_world_multipliers(np.zeros((4, 4, 3), np.float32))) == [1, 1, 1]


@pytest.mark.parametrize("text, expected", [
    ("camera", WhiteBalance("camera")),
    ("AUTO", WhiteBalance("auto")),
    ("daylight", WhiteBalance("daylight", preset="daylight")),
    ("tungsten", WhiteBalance("kelvin", kelvin=2850.0, preset="tungsten")),
    ("5500K", WhiteBalance("kelvin", kelvin=5500.0)),
    ("3200", WhiteBalance("kelvin", kelvin=3200.0)),
    (4300, WhiteBalance("kelvin", kelvin=4300.0)),
    ("2,1,1.5", WhiteBalance("multipliers", multipliers=(2.0, 1.0, 1.5))),
    ((1.0, 0.5, 0.5), WhiteBalance("multipliers", multipliers=(2.0, 1.0, 1.0))),
])
def test_parse_white_balance(text, expected) -> None:
    assert parse_white_balance(text) == expected


@pytest.mark.parametrize("bad", ["sunny", "100K", "1,2", "1,0,1", "a,b,c", ""])
def test_parse_white_balance_rejects(bad) -> None:
    with pytest.raises(ValueError):
        parse_white_balance(bad)


def test_channel_max_is_the_largest_channel_in_a_new_array() -> None:
    from nnip.develop.colour import channel_max

    rng = np.random.default_rng(3)
    for shape in ((5, 7, 3), (11, 4), (2, 3, 1)):
        pixels = rng.standard_normal(shape).astype(np.float32)
        largest = channel_max(pixels)
        assert largest.dtype == np.float32 and largest.shape == shape[:-1]
        assert np.array_equal(largest, pixels.max(axis=-1))
        assert not np.shares_memory(largest, pixels)
